#!/usr/bin/env bash
# A manual check (not part of the test command: it downloads ~150 MB of packages): runs
# `scripts/demo.sh` from a clean copy of HEAD on a truly fresh Debian 12, a chroot of
# the minbase tree of scripts/minbase-rootfs.sh (no Node, no npm, no compiler), as a new
# user would run it. The chroot writes to an overlay in a temp dir; nothing on this
# machine changes (the demo's namespaces live in the chroot's private mount namespace
# and are removed by the demo). Run as root:
#
#   scripts/check-fresh-machine.sh [--keep]     --keep leaves the temp dir for a look
#
# Prints the demo's output and what was installed; exits with the demo's status.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=0
[ "${1:-}" = --keep ] && keep=1
rootfs=$(bash "$repo/scripts/minbase-rootfs.sh")
work=$(mktemp -d /tmp/strand-fresh-machine.XXXXXX)
[ $keep = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{upper,work,root}
mkdir -p "$work/upper/src" "$work/upper/etc"
git -C "$repo" archive HEAD | tar -x -C "$work/upper/src"
cp -L /etc/resolv.conf "$work/upper/etc/resolv.conf"
# A machine whose HTTPS goes through an intercepting proxy trusts its CA through
# NODE_EXTRA_CA_CERTS (npm); the chroot gets the same file and variable.
extra_ca=
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  mkdir -p "$work/upper/etc/ssl"
  cp -L "$NODE_EXTRA_CA_CERTS" "$work/upper/etc/ssl/host-extra-ca.crt"
  extra_ca=/etc/ssl/host-extra-ca.crt
fi

# shellcheck disable=SC2016
unshare --mount --propagation private /bin/sh -c '
  set -e
  w=$1 lower=$2
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$w/upper,workdir=$w/work" "$w/root"
  mount -t proc proc "$w/root/proc"
  mount -t sysfs sysfs "$w/root/sys"
  mount --rbind /dev "$w/root/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$w/root/run"
  exec chroot "$w/root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root STRAND_TEST_PREFIX="${STRAND_TEST_PREFIX:-fm}" ${3:+NODE_EXTRA_CA_CERTS=$3} /bin/bash -c "
      set -e
      echo \"== before: \$(command -v node npm gcc || true)\"
      cd /src && bash scripts/demo.sh
      echo \"== installed: \$(dpkg-query -W -f=\"\\\${Package} \" nodejs npm g++ patchelf iproute2 qemu-system-x86 containerd golang-go etcd-server 2>/dev/null)\"
      echo \"== apt downloaded: \$(du -sh /var/cache/apt/archives | cut -f1)\""
' sh "$work" "$rootfs" "$extra_ca"
