#!/usr/bin/env bash
# Starts the SIP test stack on 127.0.0.1 and waits until each piece answers:
#   1. redis-server   127.0.0.1:REDIS_PORT, no persistence (no RDB, no AOF), dir STATE_DIR;
#   2. livekit-server through scripts/livekit/start.sh (same config, --dev, devkey/secret),
#      plus --redis-host 127.0.0.1:REDIS_PORT so it can hand SIP calls to livekit-sip
#      (a two-line wrapper in STATE_DIR adds the flag: start.sh runs the binary with env -i);
#   3. livekit-sip    SIP on 127.0.0.1:SIP_PORT (UDP+TCP), RTP ports RTP_PORTS, announcing
#      127.0.0.1 in SDP/Contact (nat_1_to_1_ip), no external IP discovery.
#   scripts/sip/start.sh [STATE_DIR]           (default STATE_DIR: ./target/sip)
# Env: LIVEKIT_PORT (default 7980; UDP ICE mux LIVEKIT_PORT+2), REDIS_PORT (6390),
#      SIP_PORT (5070), RTP_PORTS (20000-20099), SIP_LOG_LEVEL (info), LIVEKIT_SIP_BIN
#      (default: REPO/../shared/tools/livekit-sip, else what scripts/sip/install.sh cached),
#      LIVEKIT_SERVER_BIN (default: what scripts/livekit/install.sh cached).
# Prints LIVEKIT_URL=..., SIP_ADDR=127.0.0.1:PORT, REDIS_ADDR=... . Stop with stop.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${1:-$repo/target/sip}
lk_port=${LIVEKIT_PORT:-7980}
redis_port=${REDIS_PORT:-6390}
sip_port=${SIP_PORT:-5070}
rtp_ports=${RTP_PORTS:-20000-20099}
mkdir -p "$state"
state=$(cd "$state" && pwd)

tools_dirs=("${BELLA_VISTA_TOOLS:-/var/cache/bella-vista/tools}" "$repo/.tools")
find_tool() {  # find_tool NAME: the cached binary, or nothing
  for t in "${tools_dirs[@]}"; do [ -x "$t/bin/$1" ] && { echo "$t/bin/$1"; return; }; done
}
lk_bin=${LIVEKIT_SERVER_BIN:-$(find_tool livekit-server)}
shared_sip=$(dirname "$repo")/shared/tools/livekit-sip
if [ -n "${LIVEKIT_SIP_BIN:-}" ]; then sip_bin=$LIVEKIT_SIP_BIN
elif [ -x "$shared_sip" ]; then sip_bin=$shared_sip
else sip_bin=$(find_tool livekit-sip); fi
[ -n "$lk_bin" ] && [ -x "$lk_bin" ] || { echo "livekit-server not found: run scripts/sip/install.sh" >&2; exit 1; }
[ -n "$sip_bin" ] && [ -x "$sip_bin" ] || { echo "livekit-sip not found: run scripts/sip/install.sh or set LIVEKIT_SIP_BIN" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found: run scripts/sip/install.sh" >&2; exit 1; }

busy_tcp() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && { exec 3<&-; return 0; }; return 1; }
for p in "$redis_port" "$sip_port"; do
  busy_tcp "$p" && { echo "port $p on 127.0.0.1 is already in use" >&2; exit 1; }
done
for f in redis.pid sip.pid; do
  if [ -f "$state/$f" ] && kill -0 "$(cat "$state/$f")" 2>/dev/null; then
    echo "already running ($state/$f); stop it first (scripts/sip/stop.sh $state)" >&2; exit 1
  fi
done

fail() { echo "$1" >&2; "$here/stop.sh" "$state" || true; exit 1; }
t0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }

# 1. redis: loopback only, no persistence, no protected-mode surprises.
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$state" --daemonize no --logfile "$state/redis.log" >/dev/null 2>&1 &
echo $! >"$state/redis.pid"
for _ in $(seq 100); do
  if { exec 3<>"/dev/tcp/127.0.0.1/$redis_port"; } 2>/dev/null; then
    printf 'PING\r\n' >&3
    if read -r -t 1 line <&3 && [ "${line%$'\r'}" = "+PONG" ]; then exec 3<&-; break; fi
    exec 3<&-
  fi
  kill -0 "$(cat "$state/redis.pid")" 2>/dev/null || fail "redis-server exited; log: $state/redis.log"
  sleep 0.05
done
echo "redis ready in $(ms) ms (127.0.0.1:$redis_port)" >&2

# 2. livekit-server: scripts/livekit/start.sh with a wrapper that adds --redis-host.
wrapper=$state/livekit-server-redis
printf '#!/bin/sh\nexec %q "$@" --redis-host 127.0.0.1:%s\n' "$lk_bin" "$redis_port" >"$wrapper"
chmod +x "$wrapper"
LIVEKIT_SERVER_BIN=$wrapper LIVEKIT_PORT=$lk_port "$repo/scripts/livekit/start.sh" "$state" >/dev/null \
  || fail "livekit-server did not start"

# 3. livekit-sip.
cat >"$state/sip.yaml" <<EOF
# livekit-sip v1.11.0 (pkg/config/config.go). Everything on 127.0.0.1.
api_key: devkey
api_secret: secret
ws_url: ws://127.0.0.1:$lk_port
redis:
  address: 127.0.0.1:$redis_port
sip_port: $sip_port          # announced (Contact/Via) and listened on (UDP and TCP)
listen_ip: 127.0.0.1         # SIP listeners (default 0.0.0.0)
nat_1_to_1_ip: 127.0.0.1     # signalling + media IP written into SDP and Contact; without it
                             # livekit-sip picks the first non-loopback interface address
use_external_ip: false       # true would ask public STUN servers for the address
media_use_external_ip: false
rtp_port: $rtp_ports         # NB: v1.11.0 binds these on 0.0.0.0 whatever listen_ip says
health_port: 0
max_cpu_utilization: 1.0     # default 0.9: on a busy 2-core test machine calls get refused
prometheus_port: 0
logging:
  level: ${SIP_LOG_LEVEL:-info}
EOF
env -i PATH="$PATH" HOME="${HOME:-/tmp}" "$sip_bin" --config "$state/sip.yaml" >"$state/sip.log" 2>&1 &
echo $! >"$state/sip.pid"
# Ready when it answers a SIP OPTIONS on UDP with a final response.
ready=0
for _ in $(seq 150); do
  kill -0 "$(cat "$state/sip.pid")" 2>/dev/null || { tail -n 20 "$state/sip.log" >&2; fail "livekit-sip exited; log: $state/sip.log"; }
  if python3 - "$sip_port" <<'PY' 2>/dev/null
import socket, sys, uuid
port = int(sys.argv[1]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
s.settimeout(0.3); me = s.getsockname()[1]; cid = uuid.uuid4().hex
msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{cid[:12]};rport\r\n"
       f"Max-Forwards: 70\r\nTo: <sip:127.0.0.1:{port}>\r\nFrom: <sip:probe@127.0.0.1>;tag={cid[:8]}\r\n"
       f"Call-ID: {cid}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
data = s.recv(4096).decode(errors="replace")
sys.exit(0 if data.startswith("SIP/2.0 ") and not data.startswith("SIP/2.0 1") else 1)
PY
  then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || fail "livekit-sip did not answer OPTIONS on 127.0.0.1:$sip_port; log: $state/sip.log"
echo "livekit-sip ready in $(ms) ms since start (pid $(cat "$state/sip.pid"), log $state/sip.log)" >&2

echo "LIVEKIT_URL=ws://127.0.0.1:$lk_port"
echo "SIP_ADDR=127.0.0.1:$sip_port"
echo "REDIS_ADDR=127.0.0.1:$redis_port"
