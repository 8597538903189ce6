#!/usr/bin/env bash
# Self-test of scripts/vm/run.sh (boots several guests, ~1-2 min): exit status and
# output plumbing, environment, timeout, boot-hang retry. Prints one line per check and
# exits non-zero if any fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
run=scripts/vm/run.sh
fails=0
tmp=$(mktemp -d /tmp/strand-vm-selftest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

check() { # name expected-status actual-status [extra condition result 0/1]
  if [ "$2" = "$3" ] && [ "${4:-0}" = 0 ]; then
    echo "ok   $1"
  else
    echo "FAIL $1 (status $3, wanted $2)"
    fails=$((fails + 1))
  fi
}

$run -- bash -c 'echo out-line; echo err-line >&2; exit 7' >"$tmp/o" 2>"$tmp/e"
check "exit status 7, stdout and stderr apart" 7 $? "$({ grep -qx out-line "$tmp/o" && grep -qx err-line "$tmp/e" && ! grep -q err-line "$tmp/o"; } && echo 0 || echo 1)"

echo before >"$tmp/append"
$run -- printf 'a\nb\n' >>"$tmp/append"
echo after >>"$tmp/append"
check "output appended to a redirected file in order" 0 $? "$([ "$(cat "$tmp/append")" = $'before\na\nb\nafter' ] && echo 0 || echo 1)"

n=$($run -- bash -c 'head -c 5000000 /dev/zero | base64 -w 100 | wc -c')
check "large output intact (6.6 MB)" 0 $? "$([ "$n" = 6733335 ] && echo 0 || echo 1)"
$run -- bash -c 'head -c 5000000 /dev/zero | base64 -w 100' | wc -c >"$tmp/n"
check "large output through a pipe (6.6 MB)" 0 $? "$([ "$(cat "$tmp/n")" = 6733335 ] && echo 0 || echo 1)"

$run --env FOO='a b$c' -- bash -c '[ "$FOO" = "a b\$c" ] && [ "$STRAND_IN_GUEST" = 1 ] && [ "$(id -u)" = 0 ] && [ "$PWD" = "$STRAND_REPO" ] && command -v vitest >/dev/null && [ -d /run/netns ] && [ "$(stat -f -c %T /tmp)" = tmpfs ] && [ "$(cat /sys/class/net/lo/operstate)" = unknown ]'
check "guest environment (env, root, cwd, PATH, /run/netns, /tmp, lo)" 0 $?

$run -- /nonexistent/cmd 2>/dev/null
check "missing command gives 127" 127 $?

$run -- bash -c 'kill -TERM $$'
check "command killed by SIGTERM gives 143" 143 $?

start=$SECONDS
$run --timeout 8 -- sleep 100 2>"$tmp/e"
check "timeout gives 124 and a message" 124 $? "$(grep -q 'timed out after 8s' "$tmp/e" && [ $((SECONDS - start)) -lt 30 ] && echo 0 || echo 1)"

STRAND_VM_BOOT_DEADLINE=0 $run -- true 2>"$tmp/e"
check "boot hang retried once, then 125" 125 $? "$([ "$(grep -c 'retrying the boot once' "$tmp/e")" = 1 ] && grep -q 'hung twice' "$tmp/e" && echo 0 || echo 1)"

STRAND_VM_QEMU=false $run -- true 2>"$tmp/e"
check "qemu failing to start gives 125" 125 $?

echo "selftest: $fails failed"
[ $fails = 0 ]
