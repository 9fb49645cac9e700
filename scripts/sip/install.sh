#!/usr/bin/env bash
# Installs what the SIP tests need, idempotently (quick when everything is there):
#  - Debian packages: redis-server, sip-tester (sipp), espeak-ng, tcpdump
#    (tests/sip/run_proof.sh captures the RTP coming back to sipp), and livekit-sip's runtime
#    libraries libopus0 libopusfile0 libsoxr0 libogg0 libgomp1;
#  - livekit-server and the Python venv, through scripts/livekit/install.sh;
#  - livekit-sip v1.11.0, taken from the first of:
#      1. LIVEKIT_SIP_BIN=/path/to/livekit-sip (must be executable);
#      2. the prebuilt binary in the shared tools, $REPO/../shared/tools/livekit-sip
#         (CI checks the repo out with ../shared beside it; see ../shared/tools/README.md);
#      3. last fallback: $TOOLS/bin/livekit-sip, cached from an earlier
#         `go install github.com/livekit/sip/cmd/livekit-sip@v1.11.0` (cgo), built now if
#         missing; only this path installs pkg-config libopus-dev libopusfile-dev libsoxr-dev.
# TOOLS is ${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}, or ./.tools when not writable.
# Prints the tool paths as shell assignments on stdout's last lines (for `eval`);
# LIVEKIT_SIP_BIN= is the binary actually chosen.
#
# Known: on the project's machines the Go module proxy answers 403 "This module version is
# not available" for github.com/livekit/sip (every version) and for two of its dependencies
# (github.com/livekit/media-sdk@v0.0.0-20260812193843-5a5218b19550 and
# github.com/livekit/protocol@v1.50.5-0.20260817162156-cae1efd79202); the `go install`
# fallback then fails, and this script says so and exits 3. See tests/sip/README.md.
set -euo pipefail

LIVEKIT_SIP_VERSION=v1.11.0
APT_PKGS=(redis-server sip-tester espeak-ng tcpdump libopus0 libopusfile0 libsoxr0 libogg0 libgomp1)
APT_BUILD_PKGS=(pkg-config libopus-dev libopusfile-dev libsoxr-dev)  # go-install fallback only

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools=${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}
if ! mkdir -p "$tools/bin" 2>/dev/null || [ ! -w "$tools/bin" ]; then
  tools=$repo/.tools
  mkdir -p "$tools/bin"
fi

apt_install() {  # apt_install PKG...: installs those not installed yet
  local missing=() p start sudo=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  start=$(date +%s)
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  echo "installed Debian packages in $(( $(date +%s) - start ))s" >&2
}

apt_install "${APT_PKGS[@]}"

# livekit-server + venv (livekit, livekit-api with SipService, livekit-protocol).
eval "$("$repo/scripts/livekit/install.sh" | grep -E '^LIVEKIT_(SERVER_BIN|PYTHON)=')"

shared_bin=$(dirname "$repo")/shared/tools/livekit-sip  # $REPO/../shared/tools/livekit-sip
if [ -n "${LIVEKIT_SIP_BIN:-}" ]; then
  bin=$LIVEKIT_SIP_BIN
  [ -x "$bin" ] || { echo "LIVEKIT_SIP_BIN=$bin is not executable" >&2; exit 1; }
elif [ -x "$shared_bin" ]; then
  bin=$shared_bin
else
  bin=$tools/bin/livekit-sip
  stamp=$tools/bin/livekit-sip.version
  if [ ! -x "$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$LIVEKIT_SIP_VERSION" ]; then
    echo "no LIVEKIT_SIP_BIN and no $shared_bin: falling back to go install" >&2
    command -v go >/dev/null || { echo "go is required to build livekit-sip (or set LIVEKIT_SIP_BIN)" >&2; exit 1; }
    apt_install "${APT_BUILD_PKGS[@]}"
    echo "building livekit-sip $LIVEKIT_SIP_VERSION (cgo)..." >&2
    start=$(date +%s)
    gobin=$(mktemp -d)
    trap 'rm -rf "$gobin"' EXIT
    if ! CGO_ENABLED=1 GOBIN=$gobin go install "github.com/livekit/sip/cmd/livekit-sip@$LIVEKIT_SIP_VERSION"; then
      echo "go install github.com/livekit/sip/cmd/livekit-sip@$LIVEKIT_SIP_VERSION failed" \
           "(the module proxy here refuses github.com/livekit/sip); put the prebuilt binary at" \
           "$shared_bin or set LIVEKIT_SIP_BIN to a livekit-sip binary built elsewhere" >&2
      exit 3
    fi
    mv "$gobin/livekit-sip" "$bin.tmp" && mv "$bin.tmp" "$bin"
    echo "$LIVEKIT_SIP_VERSION" >"$stamp"
    echo "built livekit-sip in $(( $(date +%s) - start ))s" >&2
  fi
fi
# It must run here (a missing runtime library shows up now, not as a failed call later).
if ! version=$("$bin" --version 2>&1); then
  echo "$bin does not run: $version" >&2
  exit 1
fi
case $version in
  *"${LIVEKIT_SIP_VERSION#v}"*) ;;
  *) echo "warning: $bin says '$version', these tests were proven with $LIVEKIT_SIP_VERSION" >&2 ;;
esac

echo "LIVEKIT_SERVER_BIN=$LIVEKIT_SERVER_BIN"
echo "LIVEKIT_PYTHON=$LIVEKIT_PYTHON"
echo "LIVEKIT_SIP_BIN=$bin"
echo "SIPP_BIN=$(command -v sipp)"
echo "REDIS_SERVER_BIN=$(command -v redis-server)"
