#!/usr/bin/env bash
# Builds the Switchyard container image from a binary built on this host, without pulling any
# base image: the binary (debug info stripped) and the shared libraries `ldd` lists go into a
# `FROM scratch` image (contrib/docker/Dockerfile).
#
#   contrib/docker/build-image.sh [--binary target/release/switchyard] [--tag switchyard:latest]
#                                 [--config FILE] [--no-strip]
#
# --config replaces the default /etc/switchyard/switchyard.toml (contrib/docker/switchyard.toml).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$here/../../target/release/switchyard"
tag="switchyard:latest"
config="$here/switchyard.toml"
strip=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --no-strip) strip=0; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no executable at $binary (cargo build --release first)" >&2; exit 2; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/switchyard" "$ctx/state"
mkdir -m 1777 "$root/tmp"

cp "$binary" "$root/usr/local/bin/switchyard"
if [ "$strip" = 1 ] && command -v strip >/dev/null; then
  strip --strip-debug "$root/usr/local/bin/switchyard"
fi

# Every library the dynamic loader resolves, and the loader itself, at the same paths. A static
# binary (ldd: "not a dynamic executable") needs none.
ldd "$binary" 2>/dev/null | awk '
  $2 == "=>" && $3 ~ /^\// { print $3 }
  $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
switchyard:x:65532:65532:switchyard:/var/lib/switchyard:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
switchyard:x:65532:
GROUP
# Host names of endpoints resolve through /etc/hosts, then Docker's DNS (resolv.conf).
echo "hosts: files dns" > "$root/etc/nsswitch.conf"
cp "$config" "$root/etc/switchyard/switchyard.toml"
cp "$here/Dockerfile" "$ctx/Dockerfile"

docker build --quiet --tag "$tag" "$ctx" >/dev/null
echo "built $tag"
