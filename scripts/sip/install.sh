#!/usr/bin/env bash
# Installs what the SIP tests need, idempotently (quick when everything is there):
#  - Debian packages: redis-server, sip-tester (sipp), pkg-config, libopus-dev,
#    libopusfile-dev, libsoxr-dev (livekit-sip needs cgo with Opus and soxr), espeak-ng,
#    tcpdump (tests/sip/run_proof.sh captures the RTP coming back to sipp);
#  - livekit-server and the Python venv, through scripts/livekit/install.sh;
#  - livekit-sip v1.11.0, `go install github.com/livekit/sip/cmd/livekit-sip@v1.11.0` (cgo),
#    cached as $TOOLS/bin/livekit-sip.
# TOOLS is ${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}, or ./.tools when not writable.
# LIVEKIT_SIP_BIN=/path/to/livekit-sip skips the Go build and uses that binary instead.
# Prints the tool paths as shell assignments on stdout's last lines (for `eval`).
#
# Known: on the project's machines the Go module proxy answers 403 "This module version is
# not available" for github.com/livekit/sip (every version) and for two of its dependencies
# (github.com/livekit/media-sdk@v0.0.0-20260812193843-5a5218b19550 and
# github.com/livekit/protocol@v1.50.5-0.20260817162156-cae1efd79202); the `go install` below
# then fails, and this script says so and exits 3. See tests/sip/README.md.
set -euo pipefail

LIVEKIT_SIP_VERSION=v1.11.0
APT_PKGS=(redis-server sip-tester pkg-config libopus-dev libopusfile-dev libsoxr-dev espeak-ng tcpdump)

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}
if ! mkdir -p "$tools/bin" 2>/dev/null || [ ! -w "$tools/bin" ]; then
  tools=$repo/.tools
  mkdir -p "$tools/bin"
fi

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  start=$(date +%s)
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  echo "installed Debian packages in $(( $(date +%s) - start ))s" >&2
fi

# livekit-server + venv (livekit, livekit-api with SipService, livekit-protocol).
eval "$("$repo/scripts/livekit/install.sh" | grep -E '^LIVEKIT_(SERVER_BIN|PYTHON)=')"

bin=${LIVEKIT_SIP_BIN:-$tools/bin/livekit-sip}
stamp=$tools/bin/livekit-sip.version
if [ -n "${LIVEKIT_SIP_BIN:-}" ]; then
  [ -x "$bin" ] || { echo "LIVEKIT_SIP_BIN=$bin is not executable" >&2; exit 1; }
elif [ ! -x "$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$LIVEKIT_SIP_VERSION" ]; then
  command -v go >/dev/null || { echo "go is required to build livekit-sip" >&2; exit 1; }
  echo "building livekit-sip $LIVEKIT_SIP_VERSION (cgo)..." >&2
  start=$(date +%s)
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  if ! CGO_ENABLED=1 GOBIN=$gobin go install "github.com/livekit/sip/cmd/livekit-sip@$LIVEKIT_SIP_VERSION"; then
    echo "go install github.com/livekit/sip/cmd/livekit-sip@$LIVEKIT_SIP_VERSION failed" \
         "(the module proxy here refuses github.com/livekit/sip); set LIVEKIT_SIP_BIN to a" \
         "livekit-sip binary built elsewhere" >&2
    exit 3
  fi
  mv "$gobin/livekit-sip" "$bin.tmp" && mv "$bin.tmp" "$bin"
  echo "$LIVEKIT_SIP_VERSION" >"$stamp"
  echo "built livekit-sip in $(( $(date +%s) - start ))s" >&2
fi

echo "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN"
echo "LIVEKIT_PYTHON=$LIVEKIT_PYTHON"
echo "LIVEKIT_SIP_BIN=$bin"
echo "SIPP_BIN=$(command -v sipp)"
echo "REDIS_SERVER_BIN=$(command -v redis-server)"
