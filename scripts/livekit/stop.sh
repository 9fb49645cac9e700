#!/usr/bin/env bash
# Stops the livekit-server that start.sh started (by the pid in STATE_DIR/livekit.pid).
#   scripts/livekit/stop.sh [STATE_DIR]      (default STATE_DIR: ./target/livekit)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${1:-$repo/target/livekit}
pidfile=$state/livekit.pid
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  # SIGTERM: graceful stop (about 2 s with no one connected; it waits for participants to
  # leave). A second SIGTERM forces it; it also helps when the first one came in the
  # server's first 100 ms of serving, which v1.13.5 ignores. SIGKILL after 10 s.
  kill -TERM "$pid"
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    [ "$i" -eq 30 ] && kill -TERM "$pid" 2>/dev/null
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
