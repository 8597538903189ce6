#!/usr/bin/env bash
# Builds (or reuses) a minimal Debian 12 root file system, `debootstrap --variant=minbase
# bookworm`, for the minimal-node test (test/integration/deploy/minimal-node.test.ts),
# and prints its path. It stands in for a slim node image such as kind's: glibc,
# libstdc++ and libgcc_s (apt needs them), no libatomic1.
#
#   scripts/minbase-rootfs.sh            prints <repo>/.vm/minbase-bookworm-amd64
#
# The Debian mirror is the first one this machine's apt sources name for bookworm
# (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources), or
# $STRAND_DEBIAN_MIRROR. The tree is built once per clone (CI: once per run) and kept
# read-only in use: the test mounts an overlay on it. A build that did not finish is
# redone (the stamp file is written last). Concurrent callers take turns (flock).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
arch=amd64
dir="$repo/.vm/minbase-$suite-$arch"
stamp="$dir.stamp"
key="debootstrap --variant=minbase --arch=$arch $suite"

die() {
  echo "minbase-rootfs: $*" >&2
  exit 1
}

mirror() {
  if [ -n "${STRAND_DEBIAN_MIRROR:-}" ]; then
    echo "$STRAND_DEBIAN_MIRROR"
    return
  fi
  local f
  # one-line format: deb [options] URI SUITE COMPONENTS...
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
  # deb822 format: stanzas with "URIs:" and "Suites:" fields
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      /^[ \t]*$/ { if (ok && uri != "") { print uri; exit } uri = ""; ok = 0; next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      END { if (ok && uri != "") print uri }' "$f"
  done
}

mkdir -p "$repo/.vm"
exec 9>"$repo/.vm/minbase.lock"
flock 9

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && [ -x "$dir/bin/sh" ]; then
  echo "$dir"
  exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap missing (Debian package debootstrap; scripts/setup.sh installs it)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
url=$(mirror | head -n 1)
[ -n "$url" ] || die "no Debian mirror for $suite in /etc/apt/sources.list*; set STRAND_DEBIAN_MIRROR"

rm -rf "$dir" "$stamp" "$dir.tmp"
echo "minbase-rootfs: debootstrap --variant=minbase $suite from $url (once per clone)" >&2
if ! debootstrap --variant=minbase --arch="$arch" "$suite" "$dir.tmp" "$url" >"$repo/.vm/minbase-debootstrap.log" 2>&1; then
  tail -n 30 "$repo/.vm/minbase-debootstrap.log" >&2
  rm -rf "$dir.tmp"
  die "debootstrap failed (log: .vm/minbase-debootstrap.log)"
fi
# apt's package lists are not part of a node's file system that matters here
rm -rf "$dir.tmp/var/cache/apt/archives/"*.deb
mv "$dir.tmp" "$dir"
printf '%s\n' "$key" >"$stamp"
echo "$dir"
