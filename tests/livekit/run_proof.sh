#!/usr/bin/env bash
# End-to-end proof that a real livekit-server on 127.0.0.1 and the official Python SDK work
# here, and of the agent-worker message flow our Rust worker must implement:
#   tests/livekit/run_proof.sh [--netns] [--keep]
#  1. media: two SDK participants (caller.py as "alice" and "bob") publish espeak-ng speech;
#     each must record the other's speech (RMS) over WebRTC on loopback;
#  2. worker: worker_probe.py registers agent "bella-vista" on ws://.../agent; caller.py joins
#     a room and dispatches it; the probe gets availability + assignment, joins with the
#     assignment's token as a stand-in agent (lk.agent.state, lk.transcription, audio); the
#     caller must record all of that, and the stand-in agent must hear the caller.
# --netns: run everything in a private network namespace (scripts/livekit/netns.sh).
# --keep: keep the work dir (logs, WAVs, JSON). Ends with "N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
keep=0
for arg in "$@"; do
  case $arg in
    --netns) [ "${BV_IN_NETNS:-}" = 1 ] || exec "$repo/scripts/livekit/netns.sh" "$0" "$@" ;;
    --keep) keep=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

eval "$("$repo/scripts/livekit/install.sh" | grep -E '^LIVEKIT_(SERVER_BIN|PYTHON)=')"
export LIVEKIT_SERVER_BIN PYTHONWARNINGS=ignore  # PyJWT warns that "secret" is a short key
py=$LIVEKIT_PYTHON
work=$(mktemp -d "${TMPDIR:-/tmp}/livekit-proof.XXXXXX")
port=${LIVEKIT_PORT:-7880}
url=ws://127.0.0.1:$port
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$repo/scripts/livekit/stop.sh" "$work"
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0 failed=0
check() {  # check NAME COMMAND...: runs a check, counts it
  if "${@:2}"; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}

LIVEKIT_PORT=$port "$repo/scripts/livekit/start.sh" "$work" 2>&1 | sed 's/^/server: /'
spid=$(cat "$work/livekit.pid")
echo "listening sockets of livekit-server (pid $spid):"
ss -Hlntup | grep "pid=$spid," | awk '{print "  " $1, $5}' | tee "$work/sockets.txt"
check "server listens on 127.0.0.1 only" bash -c "! grep -v ' 127\.0\.0\.1:' '$work/sockets.txt'"

espeak-ng -w "$work/bob.wav" "Hello, I would like to order a margherita pizza and a glass of red wine, please."
espeak-ng -w "$work/alice.wav" "Good evening, this is Alice speaking from the other side of the room."
espeak-ng -w "$work/agent.wav" "Welcome to Bella Vista. What can I get for you today?"

# Asserts on a caller.py JSON file, in Python: jcheck FILE EXPRESSION (d = the JSON).
jcheck() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }

echo "== 1. media between two SDK participants"
"$py" "$here/caller.py" --url "$url" --room media --identity bob --wav-in "$work/bob.wav" \
  --wav-out "$work/bob_heard.wav" --json-out "$work/bob.json" --duration 10 >"$work/bob.log" 2>&1 &
pids+=($!)
"$py" "$here/caller.py" --url "$url" --room media --identity alice --wav-in "$work/alice.wav" \
  --wav-out "$work/alice_heard.wav" --json-out "$work/alice.json" --duration 10 >"$work/alice.log" 2>&1 || true
wait "${pids[@]}" || true
pids=()
for who in alice bob; do
  "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); print(' ', sys.argv[2], 'heard', [(t['participant'], t['seconds'], t['rms']) for t in d['tracks']])" "$work/$who.json" "$who" || true
done
check "alice hears bob's speech (RMS > 500)" jcheck "$work/alice.json" "any(t['participant']=='bob' and t['rms']>500 for t in d['tracks'])"
check "bob hears alice's speech (RMS > 500)" jcheck "$work/bob.json" "any(t['participant']=='alice' and t['rms']>500 for t in d['tracks'])"

echo "== 2. agent worker: register, dispatch, availability, assignment, join"
"$py" "$here/worker_probe.py" --url "$url" --agent-name bella-vista --join --wav "$work/agent.wav" \
  --hold 3 --exit-after-job --duration 40 --json-out "$work/worker.json" >"$work/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^registered' "$work/worker.log" && break; sleep 0.1; done
"$py" "$here/caller.py" --url "$url" --room order --agent-name bella-vista --wav-in "$work/bob.wav" \
  --wav-out "$work/caller_heard.wav" --json-out "$work/caller.json" --duration 12 >"$work/caller.log" 2>&1 || true
wait "${pids[@]}" || true
pids=()
sed 's/^/  worker: /' "$work/worker.log" | cut -c1-240
check "worker registered" grep -q '^registered worker_id=AW_' "$work/worker.log"
check "worker got availability then assignment" grep -q '<-availability ->availability <-assignment ->update_job' "$work/worker.log"
check "stand-in agent heard the caller (RMS > 500)" \
  bash -c "grep -E '^agent heard caller: .* rms [0-9]+' '$work/worker.log' | awk '{exit !(\$NF > 500)}'"
check "caller got the dispatch" jcheck "$work/caller.json" "d['dispatch'] and d['dispatch']['agent_name']=='bella-vista'"
check "agent joined as kind AGENT with lk.agent_name" jcheck "$work/caller.json" \
  "any(p['kind']==4 and p['attributes'].get('lk.agent_name')=='bella-vista' for p in d['participants'].values())"
check "caller saw lk.agent.state thinking, speaking, listening" jcheck "$work/caller.json" \
  "[a['changed'].get('lk.agent.state') for a in d['attributes']]==['thinking','speaking','listening']"
check "caller got the lk.transcription text stream" jcheck "$work/caller.json" \
  "any(t['text']=='Welcome to Bella Vista.' and t['attributes'].get('lk.transcription_final')=='true' for t in d['transcriptions'])"
check "caller heard the agent's speech (RMS > 500)" jcheck "$work/caller.json" \
  "any(t['participant'].startswith('agent-') and t['rms']>500 for t in d['tracks'])"

"$repo/scripts/livekit/stop.sh" "$work"
check "server stopped" bash -c "! kill -0 $spid 2>/dev/null"
echo "selected ICE pairs (server side):"
sed -n 's/.*"participant": "\([^"]*\)".*"publisherCandidates": \(\[.*\]\), "connectionType".*/  \1: \2/p' \
  "$work/livekit.log" | cut -c1-240
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
