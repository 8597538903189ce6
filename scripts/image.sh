#!/usr/bin/env bash
# Writes a container image as a tarball without a Docker daemon or a registry (tar,
# gzip and sha256sum only). The tarball is an OCI image layout (oci-layout, index.json,
# blobs/sha256/) with a docker-archive manifest.json beside it naming the same blobs, the
# shape `docker save` writes since Docker 25, so every loader takes it:
#   ctr -n k8s.io images import FILE   kind load image-archive FILE   docker load -i FILE
# The layer is gzip-compressed (OCI media type tar+gzip; docker load and containerd
# decompress it and check its diff_id).
#
#   scripts/image.sh [--out FILE] [--name REF]           the strand image (installer + agent)
#   scripts/image.sh --pause [--out FILE] [--name REF]   a tiny pause image (tests)
#   scripts/image.sh --etcd [--out FILE] [--name REF]    Debian's etcd, to run manifests/etcd.yaml's
#                                                        pod in the containerd e2e test
#
# The strand image holds what the Dockerfile's image holds: /strand (dist/strand, the
# single executable) and /strand-lib/ (the libraries it loads through its RUNPATH,
# dist/strand-lib) with ENTRYPOINT ["/strand"] and CMD ["install", "--sleep"]. Where the
# Dockerfile starts FROM distroless/cc-debian12 for the C/C++ runtime, this script copies
# exactly the other shared libraries `ldd dist/strand` names from this Debian 12 host.
# The pause image is /bin/busybox from busybox-static sleeping forever. The etcd image is
# /usr/local/bin/etcd (Debian's etcd-server) with its loader and libraries, no entrypoint.
#
# Defaults: --out dist/strand-image.tar, --name docker.io/library/strand:<package.json version>
#           (--pause: dist/test-tools/pause-image.tar, localhost/strand-test/pause:1;
#            --etcd: dist/test-tools/etcd-image.tar, localhost/strand-test/etcd:debian)
# Deterministic: fixed mtimes and owners, gzip without name or time, so the same inputs
# give the same digests.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=strand
out=""
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pause) kind=pause ;;
    --etcd) kind=etcd ;;
    --out) out=$2; shift ;;
    --name) name=$2; shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "image.sh: $*" >&2; exit 1; }

# JSON string (the inputs here are paths and words; escape \ and " anyway).
js() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
# JSON array of strings.
ja() { local first=1; printf '['; for x in "$@"; do [ $first = 1 ] || printf ','; first=0; js "$x"; done; printf ']'; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/rootfs"
mkdir -p "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"

case $kind in
  strand)
    out=${out:-dist/strand-image.tar}
    version=$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' package.json)
    [ -n "$version" ] || die "no version in package.json"
    name=${name:-docker.io/library/strand:$version}
    [ -x dist/strand ] || die "dist/strand missing: run scripts/build.sh first"
    [ -d dist/strand-lib ] || die "dist/strand-lib missing: run scripts/build.sh first"
    cp dist/strand "$root/strand"
    cp -r dist/strand-lib "$root/strand-lib"
    # the dynamic loader and every other library it resolves (paths as on the host);
    # those it finds through the RUNPATH are in /strand-lib already
    while read -r lib; do
      case $lib in */strand-lib/*) continue ;; esac
      cp -L --parents "$lib" "$root/"
    done < <(ldd dist/strand | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "ldd did not name the dynamic loader"
    entrypoint=(/strand)
    cmd=(install --sleep)
    ;;
  pause)
    out=${out:-dist/test-tools/pause-image.tar}
    name=${name:-localhost/strand-test/pause:1}
    [ -x /bin/busybox ] || die "/bin/busybox missing (Debian package busybox-static)"
    file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || die "/bin/busybox is not static (install busybox-static)"
    mkdir -p "$root/bin"
    cp /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    ln -s busybox "$root/bin/sleep"
    # PID 1 ignores SIGTERM by default; StopPodSandbox then kills it.
    entrypoint=(/bin/busybox sleep 2147483647)
    cmd=()
    ;;
  etcd)
    out=${out:-dist/test-tools/etcd-image.tar}
    name=${name:-localhost/strand-test/etcd:debian}
    [ -x /usr/bin/etcd ] || die "/usr/bin/etcd missing (Debian package etcd-server)"
    mkdir -p "$root/usr/local/bin"
    cp /usr/bin/etcd "$root/usr/local/bin/etcd"
    while read -r lib; do
      cp -L --parents "$lib" "$root/"
    done < <(ldd /usr/bin/etcd | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    entrypoint=()
    cmd=(etcd)
    ;;
esac
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"

layout="$tmp/layout"
blobs="$layout/blobs/sha256"
mkdir -p "$blobs"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu -C "$root" -cf "$tmp/layer.tar" .
diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
gzip -n -6 "$tmp/layer.tar"
layer_digest=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$tmp/layer.tar.gz")
mv "$tmp/layer.tar.gz" "$blobs/$layer_digest"

# put a blob (from stdin) and print "<digest> <size>"
put() {
  cat > "$tmp/blob"
  local d s
  d=$(sha256sum "$tmp/blob" | cut -d' ' -f1)
  s=$(stat -c %s "$tmp/blob")
  mv "$tmp/blob" "$blobs/$d"
  echo "$d $s"
}

config=$(
  printf '{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux",'
  printf '"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
  [ ${#entrypoint[@]} -gt 0 ] && printf ',"Entrypoint":%s' "$(ja "${entrypoint[@]}")"
  [ ${#cmd[@]} -gt 0 ] && printf ',"Cmd":%s' "$(ja "${cmd[@]}")"
  printf ',"WorkingDir":"/"},'
  printf '"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},' "$diff_id"
  printf '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/image.sh %s"}]}' "$kind"
)
read -r config_digest config_size < <(printf '%s' "$config" | put)

manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size")
read -r manifest_digest manifest_size < <(printf '%s' "$manifest" | put)

tag=latest
last=${name##*/}
case $last in *:*) tag=${last##*:} ;; esac
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":%s,"org.opencontainers.image.ref.name":%s}}]}' \
  "$manifest_digest" "$manifest_size" "$(js "$name")" "$(js "$tag")" > "$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
# docker-archive: docker load reads this (config, layers and tags by path in the tar)
printf '[{"Config":"blobs/sha256/%s","RepoTags":[%s],"Layers":["blobs/sha256/%s"]}]' \
  "$config_digest" "$(js "$name")" "$layer_digest" > "$layout/manifest.json"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu -C "$layout" -cf "$out.tmp.$$" oci-layout index.json manifest.json blobs
mv -f "$out.tmp.$$" "$out"
echo "image.sh: wrote $out ($name, manifest sha256:$manifest_digest)" >&2
