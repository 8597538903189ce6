#!/usr/bin/env bash
# strand demo: what a container runtime does on a node, with the built binaries.
#   - a "node" network namespace stands in for the Kubernetes node (so the demo never
#     touches this machine's own interfaces), two "pod" namespaces for two pods;
#   - strand-bridge ADD for each pod (strand-ipam as IPAM, embedded local store),
#     CHECK, pod-to-pod and pod-to-gateway ping, DEL (twice: DEL is idempotent);
#   - everything is removed at the end, also on failure.
# Run as root. Installs what it needs on first run (scripts/setup.sh --demo: the build
# and the demo's few packages, not the test suite's). Namespaces are named
# ${STRAND_TEST_PREFIX:-sd}<random>-*.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh creates network namespaces and needs root" >&2
  exit 1
fi
bash scripts/setup.sh --demo

tag="${STRAND_TEST_PREFIX:-sd}$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')"
node_ns="$tag-node"
work=$(mktemp -d /tmp/strand-demo.XXXXXX)
cleanup() {
  set +e
  for p in pod1 pod2; do ip netns del "$tag-$p" 2>/dev/null; done
  ip netns del "$node_ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Run a plugin the way a runtime does: CNI_* environment, config on stdin, JSON on stdout.
cni() { # cni VERB POD
  local verb=$1 pod=$2
  ip netns exec "$node_ns" env -i PATH="$PATH" \
    CNI_COMMAND="$verb" CNI_CONTAINERID="demo-$pod" CNI_NETNS="/run/netns/$tag-$pod" \
    CNI_IFNAME=eth0 CNI_PATH="$repo/dist/bin" \
    "$repo/dist/bin/strand-bridge" < "$work/$pod.json"
}

step "the single executable"
"$repo/dist/bin/strand" version
CNI_COMMAND=VERSION "$repo/dist/bin/strand-bridge"; echo

step "namespaces: node $node_ns, pods $tag-pod1 $tag-pod2"
ip netns add "$node_ns"
ip -n "$node_ns" link set lo up
for p in pod1 pod2; do ip netns add "$tag-$p"; done

conf() { # the network config a runtime sends, with prevResult for CHECK/DEL
  cat <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo-net",
  "type": "strand-bridge",
  "bridge": "$tag-br0",
  "isGateway": true,
  "isDefaultGateway": true,
  "ipMasq": false,
  "hairpinMode": true,
  "ipam": {
    "type": "strand-ipam",
    "ranges": [[{ "subnet": "10.99.0.0/24" }], [{ "subnet": "fd99::/64" }]],
    "dataDir": "$work/ipam"
  }${1:+,
  \"prevResult\": $1}
}
JSON
}

for p in pod1 pod2; do
  step "ADD $p"
  conf > "$work/$p.json"
  cni ADD "$p" | tee "$work/$p.result"; echo
  conf "$(cat "$work/$p.result")" > "$work/$p.json"
  step "CHECK $p"
  cni CHECK "$p" && echo "CHECK ok"
done

addr() { ip -n "$tag-$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
addr6() { ip -n "$tag-$1" -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d/ -f1; }
step "pod1 $(addr pod1) -> pod2 $(addr pod2), and to the gateway"
ip netns exec "$tag-pod1" ping -c 2 -W 2 "$(addr pod2)"
ip netns exec "$tag-pod1" ping -c 1 -W 2 10.99.0.1
step "IPv6: pod2 -> pod1 $(addr6 pod1)"
ip netns exec "$tag-pod2" ping -6 -c 2 -W 2 "$(addr6 pod1)"

step "IPAM records (strand ipam ls)"
"$repo/dist/bin/strand" ipam ls --data-dir "$work/ipam"

for p in pod1 pod2; do
  step "DEL $p (twice: DEL is idempotent)"
  cni DEL "$p" && cni DEL "$p" && echo "DEL ok"
done

step "nothing left: links in the node namespace, IPAM records"
ip -n "$node_ns" -br link
"$repo/dist/bin/strand" ipam ls --data-dir "$work/ipam"
echo
echo "demo finished; namespaces and temp files are removed on exit"
