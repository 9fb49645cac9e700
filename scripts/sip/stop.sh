#!/usr/bin/env bash
# Stops what scripts/sip/start.sh started (by the pids in STATE_DIR), in reverse order:
# livekit-sip, livekit-server (scripts/livekit/stop.sh), redis-server.
#   scripts/sip/stop.sh [STATE_DIR]            (default STATE_DIR: ./target/sip)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${1:-$repo/target/sip}

stop_pid() {  # stop_pid PIDFILE SECONDS: SIGTERM, then SIGKILL after SECONDS
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $(( $2 * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_pid "$state/sip.pid" 10
"$repo/scripts/livekit/stop.sh" "$state"
stop_pid "$state/redis.pid" 5
