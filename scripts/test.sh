#!/usr/bin/env bash
# The whole test suite, from a fresh clone, as root: installs what it needs (Debian
# packages, npm dependencies), builds the single executable, then runs
#   1. the type check,
#   2. unit and integration tests on this machine (vitest projects `unit`, `integration`),
#   3. the guest-only tests (ipvlan, bridge vlan filtering) inside a qemu guest booting
#      Debian's stock kernel, because this host's kernel lacks those features.
# Ends with one line "tests: N passed, N failed" summing all runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the integration tests create network namespaces and need root" >&2
  exit 1
fi

bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
bash scripts/build-test-tools.sh

echo "== type check" >&2
tsc --noEmit -p tsconfig.json

results=$(mktemp -d /tmp/strand-test-results.XXXXXX)
trap 'rm -rf "$results"' EXIT
status=0

echo "== unit and integration tests (host)" >&2
vitest run --project unit --project integration \
  --reporter=default --reporter=json --outputFile.json="$results/host.json" || status=1

echo "== guest tests (qemu, Debian stock kernel)" >&2
STRAND_VITEST_JSON="$results/guest.json" bash scripts/vm/run-guest-tests.sh || status=1

node scripts/test-summary.ts "$results"/*.json || status=1
exit $status
