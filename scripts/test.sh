#!/usr/bin/env bash
# The whole test suite, from a fresh clone, as root: installs what it needs (Debian
# packages, npm dependencies), builds the single executable, then runs
#   1. the type check,
#   2. unit and integration tests on this machine (vitest projects `unit`, `integration`),
#      then the plugin suites a second time through the shim and `strand daemon`
#      (vitest project `daemon`: every call must be served by the daemon),
#   3. the guest-only tests (ipvlan, bridge vlan filtering) inside a qemu guest booting
#      Debian's stock kernel, because this host's kernel lacks those features; they run
#      in the background, alongside 2.
# The lint gate (biome ci, knip: `npm run lint`) runs before the type check.
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

echo "== lint: biome (format and lint rules), knip (unused files, exports, dependencies)" >&2
npm run --silent lint

echo "== type check" >&2
tsc --noEmit -p tsconfig.json

results=$(mktemp -d /tmp/strand-test-results.XXXXXX)
guest_pid=
cleanup() {
  # The guest run has its own process group (setsid): stop it and its qemu if we leave early.
  if [ -n "$guest_pid" ] && kill -0 "$guest_pid" 2>/dev/null; then kill -- -"$guest_pid" 2>/dev/null || true; fi
  rm -rf "$results"
}
trap cleanup EXIT
status=0

# The guest tests spend their time in a TCG-emulated CPU (one host core) while the host
# integration tests mostly wait on processes and the kernel: they run side by side, the
# guest's output is kept in a file and shown once the host tests are done.
echo "== guest tests (qemu, Debian stock kernel): started in the background" >&2
STRAND_VITEST_JSON="$results/guest.json" setsid bash scripts/vm/run-guest-tests.sh >"$results/guest.log" 2>&1 </dev/null &
guest_pid=$!

echo "== unit and integration tests (host)" >&2
vitest run --project unit --project integration \
  --reporter=default --reporter=json --outputFile.json="$results/host.json" || status=1

echo "== plugin suites through the shim and strand daemon (host)" >&2
vitest run --project daemon \
  --reporter=default --reporter=json --outputFile.json="$results/daemon.json" || status=1

echo "== guest tests (qemu, Debian stock kernel): waiting for them to finish" >&2
guest_status=0
wait "$guest_pid" || guest_status=$?
guest_pid=
cat "$results/guest.log" >&2
if [ "$guest_status" -ne 0 ]; then
  echo "== guest tests failed (exit status $guest_status)" >&2
  status=1
fi

node scripts/test-summary.ts "$results"/*.json || status=1
exit $status
