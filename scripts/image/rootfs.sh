#!/usr/bin/env bash
# Lays out the container's whole filesystem for a `FROM scratch` image. OUT/files: the
# stripped binary, the shared libraries it links (from ldd, with the dynamic loader), a CA
# bundle, /etc/passwd and /etc/group with the non-root user bella (uid 10001), the config
# and prompts in /app. OUT/owned: the empty /data and /tmp, which the Dockerfile copies
# with bella as their owner.
# Runs in the Dockerfile's build stage, or on a Debian host (CI) for `--build-arg
# ROOTFS=prebuilt`.
#   scripts/image/rootfs.sh target/release/bella-vista OUT
set -euo pipefail

bin=$1
root=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)

rm -rf "$root"
out=$root/files
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/app" "$root/owned/data" "$root/owned/tmp"
chmod 1777 "$root/owned/tmp"
cp "$bin" "$out/usr/local/bin/bella-vista"
strip "$out/usr/local/bin/bella-vista"

# What the binary links: "libx.so => /lib/.../libx.so (0x...)" and the loader's own line.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done

cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
bella:x:10001:10001:Bella Vista:/data:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
bella:x:10001:
GROUP
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"

cp -r "$repo/config" "$repo/prompts" "$out/app/"
echo "rootfs in $root: $(du -sh "$root" | cut -f1) ($(echo "$libs" | wc -w) libraries)" >&2
