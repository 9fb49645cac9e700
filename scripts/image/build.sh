#!/usr/bin/env bash
# Builds the container image from this checkout without a registry: a release binary
# without local audio (as the Dockerfile's build stage makes it), its filesystem laid out
# by rootfs.sh, and the Dockerfile's runtime stage on top (`--build-arg ROOTFS=prebuilt`,
# so no base image is pulled). Needs a running daemon (DOCKER_HOST; see dockerd.sh).
#   scripts/image/build.sh [TAG]     # default bella-vista:test; prints the image size
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=${1:-bella-vista:test}
# Debian's docker CLI: it builds with the daemon's own BuildKit (no buildx plugin needed).
docker=${BELLA_VISTA_DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
target=${CARGO_TARGET_DIR:-target}

cargo build --release --locked --no-default-features --features local-llm --bin bella-vista
context=$(mktemp -d "${TMPDIR:-/tmp}/bv-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
scripts/image/rootfs.sh "$target/release/bella-vista" "$context/rootfs"
DOCKER_BUILDKIT=1 "$docker" build --quiet --build-arg ROOTFS=prebuilt -f Dockerfile -t "$tag" "$context" >/dev/null
size=$("$docker" image inspect --format '{{.Size}}' "$tag")
echo "image $tag: $((size / 1000000)) MB" >&2
