#!/usr/bin/env bash
# Builds (or reuses) the guest boot files under <repo>/.vm/ and prints their paths:
#   KERNEL=<.vm/vmlinux-VER>  INITRD=<.vm/initramfs-VER.cpio>  KVER=<VER>
# The kernel is Debian's stock one (package linux-image-amd64): its vmlinuz is unpacked
# once into an ELF vmlinux (qemu boots it through the PVH entry; decompressing under
# emulation would cost ~4 s per boot). The initramfs holds only static busybox, the guest
# init and the virtio/9p modules needed to mount the host's /usr; every other module
# comes from the host's /usr/lib/modules over 9p at run time.
# Rebuilt when the kernel package version, busybox or the init script change.
# Concurrent callers are serialised with flock on .vm/lock.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir="$repo/.vm"
mkdir -p "$vmdir"

die() { echo "vm: $*" >&2; exit 1; }

# The newest installed kernel that has its modules in /usr/lib/modules (the guest loads
# modules from there, so the two must match).
pick_kernel() {
  local v best=''
  for f in /boot/vmlinuz-*; do
    [ -e "$f" ] || continue
    v=${f#/boot/vmlinuz-}
    [ -f "/usr/lib/modules/$v/modules.dep" ] || continue
    best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n1)
  done
  [ -n "$best" ] || die "no /boot/vmlinuz-* with matching /usr/lib/modules found (apt-get install linux-image-amd64)"
  echo "$best"
}

kver=${STRAND_VM_KERNEL:-$(pick_kernel)}
vmlinuz=/boot/vmlinuz-$kver
moddir=/usr/lib/modules/$kver
[ -f "$vmlinuz" ] || die "missing $vmlinuz"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found (apt-get install busybox-static)"
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static (apt-get install busybox-static)"
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"

# Modules for the guest's first seconds, in load order (dependencies first).
MODULES=(
  drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio
  net/9p/9pnet net/9p/9pnet_virtio fs/netfs/netfs fs/fscache/fscache fs/9p/9p
  drivers/char/virtio_console
)

pkgver=$(dpkg-query -W -f='${Version}' "linux-image-$kver" 2>/dev/null || stat -c '%s-%Y' "$vmlinuz")
stamp_want=$(
  {
    echo "kernel $kver $pkgver $(stat -c '%s %Y' "$vmlinuz")"
    echo "busybox $(stat -L -c '%s %Y' "$busybox")"
    echo "modules ${MODULES[*]}"
    sha256sum "$here/init.sh" "$here/build-image.sh"
  } | sha256sum | cut -c1-16
)
kernel="$vmdir/vmlinux-$kver"
initrd="$vmdir/initramfs-$kver.cpio"
stampf="$vmdir/stamp-$kver"

emit() { printf 'KERNEL=%s\nINITRD=%s\nKVER=%s\n' "$kernel" "$initrd" "$kver"; }

up_to_date() { [ -f "$kernel" ] && [ -f "$initrd" ] && [ "$(cat "$stampf" 2>/dev/null)" = "$stamp_want" ]; }

if up_to_date; then emit; exit 0; fi

exec {lockfd}>"$vmdir/lock"
flock "$lockfd"
if up_to_date; then emit; exit 0; fi

echo "vm: building guest kernel and initramfs for $kver (package $pkgver)" >&2
tmp=$(mktemp -d "$vmdir/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# vmlinux: find the xz stream inside the bzImage and unpack it (Debian builds with
# CONFIG_KERNEL_XZ; zstd and gzip handled too in case that changes).
unpack_kernel() {
  local magic off
  for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    local kind=${magic%%:*} pat=${magic#*:}
    while read -r off; do
      [ -n "$off" ] || continue
      case $kind in
        xz) tail -c +$((off + 1)) "$vmlinuz" | xz -dcq --single-stream >"$tmp/vmlinux" 2>/dev/null || true ;;
        zstd) tail -c +$((off + 1)) "$vmlinuz" | zstd -dcq >"$tmp/vmlinux" 2>/dev/null || true ;;
        gzip) tail -c +$((off + 1)) "$vmlinuz" | gzip -dcq >"$tmp/vmlinux" 2>/dev/null || true ;;
      esac
      if [ "$(head -c 4 "$tmp/vmlinux" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then return 0; fi
    done < <(LC_ALL=C grep -obUaP "$pat" "$vmlinuz" | cut -d: -f1 | head -n 5)
  done
  return 1
}
unpack_kernel || die "could not unpack an ELF vmlinux from $vmlinuz"

# initramfs (uncompressed: the guest unpacks it faster than it could decompress it).
root="$tmp/root"
mkdir -p "$root"/{.vm/bin,.vm/modules,proc,sys,dev,run,tmp,root,mnt,var}
cp "$busybox" "$root/.vm/bin/busybox"
for a in sh mount umount mkdir insmod cat echo sleep ln ls dd sync poweroff reboot hostname ip grep sed printf stty; do
  ln -s busybox "$root/.vm/bin/$a"
done
i=0
for m in "${MODULES[@]}"; do
  src="$moddir/kernel/$m.ko"
  [ -f "$src" ] || die "module missing: $src"
  cp "$src" "$root/.vm/modules/$(printf '%02d' $i)-$(basename "$m").ko"
  i=$((i + 1))
done
# Merged /usr like Debian 12: these resolve once the host's /usr is mounted over 9p.
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
mkdir -p "$root/usr" "$root/etc"
install -m 0755 "$here/init.sh" "$root/init"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$tmp/initramfs.cpio"

mv -f "$tmp/vmlinux" "$kernel"
mv -f "$tmp/initramfs.cpio" "$initrd"
echo "$stamp_want" >"$stampf"
# Drop files of kernels that are no longer installed.
for f in "$vmdir"/vmlinux-* "$vmdir"/initramfs-*.cpio "$vmdir"/stamp-*; do
  [ -e "$f" ] || continue
  case $f in *"$kver"*) ;; *) rm -f "$f" ;; esac
done
echo "vm: built $(du -h "$initrd" | cut -f1) initramfs, $(du -h "$kernel" | cut -f1) vmlinux" >&2
emit
