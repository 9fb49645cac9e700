#!/usr/bin/env bash
# Starts livekit-server in --dev mode on 127.0.0.1 only and waits until it answers.
#   scripts/livekit/start.sh [STATE_DIR]      (default STATE_DIR: ./target/livekit)
# Env: LIVEKIT_PORT (signalling/HTTP, default 7880), LIVEKIT_UDP_PORT (WebRTC UDP mux,
# default LIVEKIT_PORT+2), LK_LOG_LEVEL (default info), LIVEKIT_SERVER_BIN (default: the
# one install.sh cached). Writes STATE_DIR/livekit.pid and STATE_DIR/livekit.log and prints
# LIVEKIT_URL=ws://127.0.0.1:PORT. API key/secret: devkey/secret. Stop with stop.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${1:-$repo/target/livekit}
port=${LIVEKIT_PORT:-7880}
udp_port=${LIVEKIT_UDP_PORT:-$((port + 2))}
mkdir -p "$state"

bin=${LIVEKIT_SERVER_BIN:-}
if [ -z "$bin" ]; then
  for t in "${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}" "$repo/.tools"; do
    [ -x "$t/bin/livekit-server" ] && { bin=$t/bin/livekit-server; break; }
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "livekit-server not found: run scripts/livekit/install.sh" >&2; exit 1; }

pidfile=$state/livekit.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "livekit-server already running (pid $(cat "$pidfile")); stop it first" >&2
  exit 1
fi

# Refuse a busy port: readiness is checked over HTTP and must not be another server's answer.
if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
  exec 3<&-
  echo "port $port on 127.0.0.1 is already in use (set LIVEKIT_PORT)" >&2
  exit 1
fi

# The server reads many environment variables as config (LIVEKIT_CONFIG, LIVEKIT_KEYS,
# LIVEKIT_<OPTION>, NODE_IP, UDP_PORT, REDIS_HOST, ...), so run it with a clean environment
# and say everything on the command line.
start=$(date +%s%N)
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  "$bin" --dev \
    --config "$here/livekit.yaml" \
    --bind 127.0.0.1 \
    --node-ip 127.0.0.1 \
    --port "$port" \
    --udp-port "$udp_port" \
    --logging.level "${LK_LOG_LEVEL:-info}" \
    >"$state/livekit.log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"

# Ready when the HTTP root answers "OK" (bash's /dev/tcp: no curl needed). 30 s at most.
ready=0
for _ in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "livekit-server exited during start; log:" >&2
    tail -n 30 "$state/livekit.log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    if grep -q OK <&3; then exec 3<&-; ready=1; break; fi
    exec 3<&-
  fi
  sleep 0.1
done
if [ "$ready" != 1 ] || ! kill -0 "$pid" 2>/dev/null; then
  echo "livekit-server did not become ready; log: $state/livekit.log" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  exit 1
fi
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 0.2  # the server marks itself running 100 ms after serving; a stop before that is lost
kill -0 "$pid" 2>/dev/null || { echo "livekit-server exited; log: $state/livekit.log" >&2; rm -f "$pidfile"; exit 1; }
echo "livekit-server ready in $ready_ms ms (pid $pid, log $state/livekit.log)" >&2
echo "LIVEKIT_URL=ws://127.0.0.1:$port"
