#!/usr/bin/env bash
# Installs everything strand needs on a fresh Debian 12 machine (run as root):
# Debian packages for tests and demos, npm dependencies, then builds dist/.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 iputils-ping iptables nftables procps
  etcd-server etcd-client
  containernetworking-plugins
  golang-go golang-github-appc-cni-dev
  qemu-system-x86 linux-image-amd64 busybox-static cpio
  containerd runc
  sockperf
  tshark
  strace
  musl-tools
)

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
  npm ci --no-audit --no-fund --loglevel=error
fi

npm run --silent build
