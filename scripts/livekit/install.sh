#!/usr/bin/env bash
# Installs what the LiveKit tests need, idempotently (quick when everything is there):
#  - livekit-server v1.13.5, built from the Go module proxy with CGO_ENABLED=0 and cached
#    as $TOOLS/bin/livekit-server;
#  - a Python venv ($TOOLS/venv-livekit) with the official LiveKit SDK (`livekit`, which ships
#    its native library inside the wheel) and `livekit-api` (tokens, agent dispatch).
# TOOLS is ${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}, or ./.tools when not writable.
# Prints the tool paths as shell assignments on stdout's last lines (for `eval`).
set -euo pipefail

LIVEKIT_SERVER_VERSION=v1.13.5
# Python versions: the newest on PyPI when this was proven.
PY_PKGS=(livekit==1.2.1 livekit-api==1.2.2 livekit-protocol==1.1.29)

repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}
if ! mkdir -p "$tools/bin" 2>/dev/null || [ ! -w "$tools/bin" ]; then
  tools=$repo/.tools
  mkdir -p "$tools/bin"
fi

bin=$tools/bin/livekit-server
if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "${LIVEKIT_SERVER_VERSION#v}"; then
  command -v go >/dev/null || { echo "go is required to build livekit-server" >&2; exit 1; }
  echo "building livekit-server $LIVEKIT_SERVER_VERSION (several minutes on 2 cores)..." >&2
  start=$(date +%s)
  # GOBIN to a scratch dir: `go install` names the binary after its package dir ("server").
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  CGO_ENABLED=0 GOBIN=$gobin go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
  mv "$gobin/server" "$bin.tmp" && mv "$bin.tmp" "$bin"
  echo "built livekit-server in $(( $(date +%s) - start ))s" >&2
fi

venv=$tools/venv-livekit
want=$(printf '%s\n' "${PY_PKGS[@]}")
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  echo "$want" > "$venv/.pins"
fi

echo "LIVEKIT_SERVER_BIN=$bin"
echo "LIVEKIT_PYTHON=$venv/bin/python"
