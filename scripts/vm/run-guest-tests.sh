#!/usr/bin/env bash
# Runs the vitest project `guest` (test/guest/**: ipvlan, vlan, bridge vlan filtering)
# where the kernel has those features:
#   - inside a qemu guest booting Debian's stock kernel (scripts/vm/run.sh), or
#   - directly on this machine when its own kernel passes a probe (ipvlan, 802.1q,
#     bridge vlan filtering, created in a throwaway namespace).
# STRAND_GUEST_TESTS=vm|host|auto chooses (default auto: host only when the probe passes).
#
#   scripts/vm/run-guest-tests.sh [vitest args, e.g. a file filter]
#
# The guest sees this repository read-write at the same path, so it runs the binaries
# scripts/build.sh left in dist/ (and native/build/) on the host: build first, the guest
# never builds. STRAND_VITEST_JSON=<file> adds vitest's JSON reporter writing to that
# file (its directory is shared into the guest). Exits with vitest's status (124: the
# guest run timed out, STRAND_GUEST_TIMEOUT seconds, default 1800; 125: the guest failed).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

mode=${STRAND_GUEST_TESTS:-auto}
vitest_args=(run --project guest)
if [ -n "${STRAND_VITEST_JSON:-}" ]; then
  json_dir=$(dirname "$STRAND_VITEST_JSON")
  mkdir -p "$json_dir"
  json_dir=$(cd "$json_dir" && pwd)
  vitest_args+=(--reporter=default --reporter=json "--outputFile.json=$json_dir/$(basename "$STRAND_VITEST_JSON")")
fi
vitest_args+=("$@")

# True when this kernel has everything the guest tests need (root only; the probe runs
# in its own namespace and removes it).
host_has_features() {
  [ "$(id -u)" -eq 0 ] || return 1
  local ns="strand-probe-$$" ok=0
  ip netns add "$ns" 2>/dev/null || return 1
  {
    ip -n "$ns" link add d0 type dummy &&
      ip -n "$ns" link add iv0 link d0 type ipvlan mode l2 &&
      ip -n "$ns" link add link d0 name d0.5 type vlan id 5 &&
      ip -n "$ns" link add br0 type bridge vlan_filtering 1 &&
      ip -n "$ns" link set d0 master br0 &&
      bridge -n "$ns" vlan add dev d0 vid 5
  } >/dev/null 2>&1 && ok=1
  ip netns del "$ns" 2>/dev/null || true
  [ $ok = 1 ]
}

case $mode in
  auto) if host_has_features; then mode=host; else mode=vm; fi ;;
  vm | host) ;;
  *) echo "run-guest-tests: STRAND_GUEST_TESTS must be vm, host or auto" >&2; exit 2 ;;
esac

[ -x dist/bin/strand ] || echo "run-guest-tests: note: dist/bin/strand is not built; tests that run plugins will fail (scripts/build.sh)" >&2

if [ "$mode" = host ]; then
  echo "run-guest-tests: this kernel ($(uname -r)) has ipvlan, vlan and bridge vlan filtering; running the guest tests here" >&2
  exec "$repo/node_modules/.bin/vitest" "${vitest_args[@]}"
fi

echo "run-guest-tests: running the guest tests in qemu (host kernel $(uname -r) lacks ipvlan/vlan filtering)" >&2
vm_args=(--timeout "${STRAND_GUEST_TIMEOUT:-1800}")
case ${json_dir:-$repo}/ in
  "$repo"/*) ;; # already in the guest
  *) vm_args+=(--share "$json_dir") ;;
esac
exec "$repo/scripts/vm/run.sh" "${vm_args[@]}" -- "$repo/node_modules/.bin/vitest" "${vitest_args[@]}"
