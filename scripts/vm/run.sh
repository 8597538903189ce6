#!/usr/bin/env bash
# Runs one command inside a throwaway qemu guest that boots Debian's stock kernel, and
# exits with the command's status. See scripts/vm/README.md for the guest environment.
#
#   scripts/vm/run.sh [--timeout S] [--mem M] [--smp N] [--env K=V]... [--share DIR]...
#                     [--verbose] -- <command> [args...]
#
# --share DIR mounts a host directory read-write at the same path in the guest (the repo
# always is). --verbose prints the guest's serial console (kernel log) afterwards.
# Exit status: the command's own status; 124 when --timeout (default 600 s) expires;
# 125 when the guest cannot be built, booted or set up (the serial console log is printed).
# A boot that hangs before the guest's init starts is retried once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

timeout_s=${STRAND_VM_TIMEOUT:-600}
mem=${STRAND_VM_MEM:-3G}
smp=${STRAND_VM_SMP:-2}
# Seconds from qemu start to the guest init's first line before a boot counts as hung:
# 20 s on an idle host (a boot takes 3-5 s), stretched with the host's load average per
# CPU (the emulated CPUs share the host's cores with everything else), at most 120 s.
boot_deadline=${STRAND_VM_BOOT_DEADLINE:-$(awk -v n="$(nproc)" '{ d = 20 + 10 * $1 / n; if (d > 120) d = 120; printf "%d\n", d }' /proc/loadavg)}
verbose=${STRAND_VM_VERBOSE:-0}
extra_env=()
shares=()

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 125
}
die() {
  echo "vm: $*" >&2
  exit 125
}

while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --env) [[ ${2:-} == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE"; extra_env+=("$2"); shift 2 ;;
    --share) [ -d "${2:-}" ] || die "--share wants an existing directory"; shares+=("$(cd "$2" && pwd)"); shift 2 ;;
    --verbose | -v) verbose=1; shift ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
done
[ $# -gt 0 ] || usage
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"
[[ $mem =~ ^[0-9]+[MG]?$ ]] || die "--mem wants e.g. 3072, 3072M or 3G"
[[ $mem =~ [MG]$ ]] || mem="${mem}M"

qemu=${STRAND_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"

# Boot files (cached under .vm/, rebuilt when the kernel package changes).
eval "$("$here/build-image.sh")" || die "building the guest image failed"

# Accelerator: TCG unless a normal kvm_intel/kvm_amd module drives /dev/kvm (this host's
# /dev/kvm belongs to kvm_pvm, a nested paravirtual KVM that cannot run the guest).
accel=${STRAND_VM_ACCEL:-}
if [ -z "$accel" ]; then
  accel=tcg
  if { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    accel=kvm
  fi
fi

# The guest cannot calibrate its TSC on microvm (no PIT/HPET): hand it the host's rate,
# which is what TCG's emulated TSC runs at. Without it about 1 boot in 5 hung. Read from
# the kernel log (which forgets it once the ring buffer wraps) or /proc/cpuinfo, and kept
# in .vm/tsc-khz for the rest of this host boot.
host_tsc_khz() {
  local boot mhz cache="$repo/.vm/tsc-khz" cached
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  cached=$(cat "$cache" 2>/dev/null || true)
  if [ "${cached% *}" = "$boot" ] && [[ ${cached##* } =~ ^[0-9]+$ ]]; then
    echo "${cached##* }"
    return
  fi
  mhz=$(dmesg 2>/dev/null | sed -n -e 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/R \1/p' \
    -e 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/D \1/p' | sort -r | head -n1 | cut -d' ' -f2)
  [ -n "$mhz" ] || mhz=$(sed -n 's/^cpu MHz[[:space:]]*:[[:space:]]*\([0-9.]*\).*/\1/p' /proc/cpuinfo | head -n1)
  [ -n "$mhz" ] || return 1
  mhz=$(awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 + 0.5 }')
  echo "$boot $mhz" >"$cache.$$" && mv -f "$cache.$$" "$cache"
  echo "$mhz"
}

# Per-run directory: the 9p control share (config, cmd, status) and the console log.
run=$(mktemp -d /tmp/strand-vm.XXXXXX)
ctl="$run/ctl"
mkdir -m 0700 "$ctl"
qpid=''
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -KILL "$qpid" 2>/dev/null || true; fi
  [ -f "$run/console.log" ] && cp -f "$run/console.log" "$repo/.vm/last-console.log" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "vm: interrupted" >&2; exit 130' INT
trap 'echo "vm: terminated" >&2; exit 143' TERM

sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# Guest working directory: the caller's, when it is inside the repo; else the repo.
case $PWD/ in
  "$repo"/*) gcwd=$PWD ;;
  *) gcwd=$repo ;;
esac

{
  echo "REPO=$(sq "$repo")"
  echo "USR_CACHE=${STRAND_VM_USR_CACHE:-loose}"
  echo "REPO_CACHE=${STRAND_VM_REPO_CACHE:-loose}"
  echo "MSIZE=${STRAND_VM_MSIZE:-512000}"
} >"$ctl/config"

# The command as a bash script run by the guest's init under `env -i`: only the
# variables below exist in the guest.
gpath=$PATH
case :$gpath: in
  *":$repo/node_modules/.bin:"*) ;;
  *) gpath="$repo/node_modules/.bin:$gpath" ;;
esac
{
  printf 'cd -- %q || exit 125\n' "$gcwd"
  printf 'export %s=%q\n' PATH "$gpath" HOME /root USER root LOGNAME root SHELL /bin/bash \
    LANG C.UTF-8 STRAND_IN_GUEST 1 STRAND_REPO "$repo" STRAND_VM_ACCEL "$accel"
  while IFS='=' read -r -d '' name value; do
    case $name in
      STRAND_IN_GUEST | STRAND_REPO | STRAND_VM_*) ;;
      STRAND_* | CI | NO_COLOR | FORCE_COLOR | TZ) printf 'export %s=%q\n' "$name" "$value" ;;
    esac
  done < <(env -0)
  # The guest's stdout is a virtio port, never a terminal: colour follows ours.
  if [ -z "${NO_COLOR:-}${FORCE_COLOR:-}" ]; then
    if [ -t 1 ]; then echo 'export FORCE_COLOR=1'; else echo 'export NO_COLOR=1'; fi
  fi
  for kv in "${extra_env[@]}"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
  printf '%q ' "$@"
  echo
} >"$ctl/cmd"

esc() { printf '%s' "${1//,/,,}"; } # qemu option values double their commas

cmdline="console=ttyS0 quiet panic=-1 rdinit=/init mitigations=off random.trust_cpu=on tsc=reliable cryptomgr.notests"
args=(
  -nodefaults -no-user-config -display none -no-reboot
  -M microvm,x-option-roms=off,rtc=on
  -smp "$smp" -m "$mem"
  -kernel "$KERNEL" -initrd "$INITRD"
  -serial "file:$(esc "$run/console.log")"
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -device virtio-rng-device
)
if [ "$accel" = kvm ]; then
  args+=(-accel kvm -cpu host)
else
  tsc=$(host_tsc_khz) || die "cannot read the host TSC frequency (dmesg or /proc/cpuinfo)"
  args+=(-accel tcg,thread=multi -cpu "${STRAND_VM_CPU:-max}")
  cmdline+=" tsc_early_khz=$tsc"
fi
[ -n "${STRAND_VM_CMDLINE_EXTRA:-}" ] && cmdline+=" $STRAND_VM_CMDLINE_EXTRA" # debugging aid
args+=(-append "$cmdline")
share() { # tag host-path [readonly]
  args+=(-fsdev "local,id=fs_$1,path=$(esc "$2"),security_model=passthrough${3:+,readonly=on}"
    -device "virtio-9p-device,fsdev=fs_$1,mount_tag=$1")
}
share ctl "$ctl"
share usr /usr ro
share etc /etc ro
share repo "$repo"
: >"$ctl/shares" # "tag path" lines the guest's init mounts read-write
for i in "${!shares[@]}"; do
  [[ ${shares[$i]} != *$'\n'* ]] || die "--share path has a newline"
  share "x$i" "${shares[$i]}"
  printf 'x%s %s\n' "$i" "${shares[$i]}" >>"$ctl/shares"
done

# Command output: two virtio serial ports, each written by qemu into a fifo that a `cat`
# copies to our own stdout/stderr (qemu cannot share our file descriptions: reopening a
# regular file through /proc would write at its own offset and clobber the caller's).
mkfifo "$run/out" "$run/err"
args+=(
  -device virtio-serial-device,max_ports=3
  -chardev "file,id=gout,path=$(esc "$run/out")" -device virtserialport,chardev=gout,name=strand.out,nr=1
  -chardev "file,id=gerr,path=$(esc "$run/err")" -device virtserialport,chardev=gerr,name=strand.err,nr=2
)
relays=()
start_relays() {
  cat "$run/out" &
  relays=($!)
  cat "$run/err" >&2 &
  relays+=($!)
  # Hold a write end of each fifo while qemu runs, so the relays see EOF only after
  # we close ours (below) and qemu is gone, whether or not qemu ever opened them.
  exec {hold_out}>"$run/out" {hold_err}>"$run/err"
}
finish_relays() {
  exec {hold_out}>&- {hold_err}>&-
  wait "${relays[@]}" 2>/dev/null || true
  relays=()
}

exec {tick}<> <(:) # `read -t` on this fd is a sleep without a fork
nap() { read -r -t "$1" -u "$tick" || true; }

show_console() {
  echo "vm: ---- guest console (last 40 lines of $1) ----" >&2
  tail -n 40 "$run/console.log" >&2 || true
  [ -s "$run/qemu.err" ] && { echo "vm: ---- qemu stderr ----" >&2; cat "$run/qemu.err" >&2; }
  echo "vm: ----" >&2
}

stop_qemu() {
  kill -TERM "$qpid" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; nap 0.2; done
  kill -KILL "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  qpid=''
  finish_relays
}

# One boot. Sets boot_result: done | hang | timeout | died, and qrc.
boot_once() {
  : >"$run/console.log"
  rm -f "$ctl/status"
  local start=$SECONDS started=0
  start_relays
  "$qemu" "${args[@]}" </dev/null 2>"$run/qemu.err" {hold_out}>&- {hold_err}>&- &
  qpid=$!
  while kill -0 "$qpid" 2>/dev/null; do
    if [ $started = 0 ]; then
      if grep -q 'strand-vm: init started' "$run/console.log"; then
        started=1
      elif [ $((SECONDS - start)) -ge "$boot_deadline" ]; then
        stop_qemu
        boot_result=hang
        return
      fi
    fi
    if [ $((SECONDS - start)) -ge "$timeout_s" ]; then
      stop_qemu
      boot_result=timeout
      return
    fi
    nap 0.05
  done
  qrc=0
  wait "$qpid" || qrc=$?
  qpid=''
  finish_relays
  if [ $started = 0 ] && ! grep -q 'strand-vm: init started' "$run/console.log"; then
    boot_result=died
  else
    boot_result=done
  fi
}

for attempt in 1 2; do
  boot_once
  [ "$boot_result" = hang ] || break
  if [ "$attempt" = 1 ]; then
    echo "vm: guest hung before its init started (no marker within ${boot_deadline}s); retrying the boot once" >&2
  fi
done

case $boot_result in
  hang)
    show_console "the second hung boot"
    die "guest hung twice before its init started; giving up"
    ;;
  timeout)
    show_console "the timed-out run"
    echo "vm: command timed out after ${timeout_s}s (qemu killed)" >&2
    exit 124
    ;;
  died)
    show_console "a boot that ended before init"
    die "qemu exited with status $qrc before the guest's init started"
    ;;
esac

[ "$verbose" = 1 ] && { echo "vm: ---- guest console ----" >&2; cat "$run/console.log" >&2; }
if [ ! -f "$ctl/status" ]; then
  show_console "a guest that reported no status"
  die "guest ended (qemu status $qrc) without reporting the command's status"
fi
status=$(cat "$ctl/status")
[[ $status =~ ^[0-9]+$ ]] || die "unreadable status from the guest: $status"
if [ "$status" = 125 ] && grep -q 'strand-vm: guest setup failed' "$run/console.log"; then
  show_console "a failed guest setup"
fi
exit "$status"
