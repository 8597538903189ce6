#!/.vm/bin/sh
# strand guest init: PID 1 inside the qemu guest started by scripts/vm/run.sh.
# Runs from the initramfs with static busybox in /.vm/bin. It mounts the host's /usr and
# /etc read-only and the repo read-write over 9p, runs the command the host left in
# /.vm/ctl/cmd with stdout/stderr on two virtio serial ports, writes its exit status to
# /.vm/ctl/status and powers off through qemu's isa-debug-exit port.
export PATH=/.vm/bin
MARK='strand-vm:'

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
# The host waits for this line on the serial console before it trusts the boot.
read -r up _ </proc/uptime
echo "$MARK init started (uptime $up s)"

status_file=''
finish() {
  # $1: exit status for the host. Written to the control file, then qemu is stopped.
  if [ -n "$status_file" ]; then
    echo "$1" >"$status_file.tmp" && mv "$status_file.tmp" "$status_file"
  fi
  sync
  echo "$MARK exit $1"
  # isa-debug-exit at 0xf4: qemu exits with (0x2a << 1) | 1 = 85, "clean guest exit".
  printf '\052' | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
  poweroff -f
  sleep 5
  exit "$1" # PID 1 exiting panics the kernel; panic=-1 and -no-reboot end qemu anyway.
}
fail() {
  echo "$MARK guest setup failed: $*"
  finish 125
}

for m in /.vm/modules/*.ko; do
  insmod "$m" || fail "insmod $m"
done
read -r up _ </proc/uptime
echo "$MARK modules loaded (uptime $up s)"

p9() { # tag mountpoint options
  mkdir -p "$2"
  mount -t 9p -o "trans=virtio,version=9p2000.L,msize=${MSIZE:-262144},$3" "$1" "$2" || fail "mount 9p $1 on $2"
}
p9 ctl /.vm/ctl cache=none
status_file=/.vm/ctl/status
[ -f /.vm/ctl/config ] || fail "no /.vm/ctl/config"
. /.vm/ctl/config # REPO, REPO_CACHE, USR_CACHE

p9 usr /usr "ro,cache=$USR_CACHE"
p9 etc /etc "ro,cache=$USR_CACHE"

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/netns /run/lock
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /var
mkdir -p /var/tmp /var/lib /var/log /var/cache && chmod 1777 /var/tmp && ln -s ../run /var/run && ln -s ../run/lock /var/lock
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# The repo and the extra read-write shares (run.sh --share) come after the tmpfs mounts
# they may sit under (a clone in /tmp, as CI makes, would be hidden otherwise).
p9 repo "$REPO" "cache=$REPO_CACHE"
while read -r tag path; do
  [ -n "$tag" ] && p9 "$tag" "$path" cache=none
done </.vm/ctl/shares
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname strand-guest
ip link set lo up || fail "loopback up"

# stdout and stderr ports, found by the names run.sh gave them.
out=/dev/console
err=/dev/console
for p in /sys/class/virtio-ports/*; do
  [ -f "$p/name" ] || continue
  case $(cat "$p/name") in
    strand.out) out=/dev/${p##*/} ;;
    strand.err) err=/dev/${p##*/} ;;
  esac
done

read -r up _ </proc/uptime
echo "$MARK running command (uptime $up s)"
/usr/bin/env -i /usr/bin/bash /.vm/ctl/cmd </dev/null >"$out" 2>"$err"
finish $?
