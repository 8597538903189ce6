#!/usr/bin/env bash
# Builds the Go test tools into dist/test-tools/ (offline, against the libcni source that
# Debian's golang-github-appc-cni-dev installs under /usr/share/gocode):
#   dist/test-tools/cnitool   libcni-based driver used by test/integration/deploy
# Skips the build when the binary is newer than its sources. Atomic: builds to a temp
# name, then renames.
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist/test-tools
src=test/cnitool
mkdir -p "$out"

if [ -x "$out/cnitool" ] && [ -z "$(find "$src" -newer "$out/cnitool" -type f -print -quit)" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "build-test-tools: go not found (Debian package golang-go; run scripts/setup.sh)" >&2
  exit 1
fi
if [ ! -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]; then
  echo "build-test-tools: libcni source missing (Debian package golang-github-appc-cni-dev)" >&2
  exit 1
fi

gocache="${XDG_CACHE_HOME:-$HOME/.cache}/strand-go-build"
tmp="$out/.cnitool.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$src" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$gocache" GOFLAGS= CGO_ENABLED=0 \
  go build -trimpath -o "../../$tmp" .)
mv -f "$tmp" "$out/cnitool"
trap - EXIT
echo "build-test-tools: built $out/cnitool" >&2
