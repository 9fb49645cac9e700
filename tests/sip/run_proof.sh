#!/usr/bin/env bash
# End-to-end proof of a phone call through LiveKit SIP to a stand-in "bella-vista" agent:
#   tests/sip/run_proof.sh [--netns] [--keep] [--end-mode remove|delete|transfer]
#                          [--scenario call|refer-reject|hangup|hangup-far]
#  - redis + livekit-server (with redis) + livekit-sip on 127.0.0.1 (scripts/sip/start.sh);
#  - inbound trunk +15550100 and an individual dispatch rule with agent "bella-vista" in its
#    RoomConfiguration (scripts/sip/provision.py, livekit-api SipService);
#  - the stand-in agent (sip_agent.py on tests/livekit/worker_probe.py) registers, gets the job,
#    joins, records the SIP participant, its audio and DTMF, speaks, and ends the call;
#  - sipp calls +15550100 from +15550142, plays espeak-ng speech as PCMU then DTMF "1"
#    (RFC 4733), and, by --scenario:
#      call (default)  uac_call.xml: expects the BYE (or, with --end-mode transfer, a REFER);
#      refer-reject    uac_refer_reject.xml, --end-mode transfer: answers the REFER 603 Decline
#                      and waits for livekit-sip's BYE;
#      hangup          uac_hangup.xml -d <pcap length>: the agent does not end the call, the
#                      caller sends BYE once its pcap has played (sipp exit 0);
#      hangup-far      uac_hangup.xml -d 30000: the agent ends the call after DTMF 1, so the
#                      far end's BYE comes first (sipp exit 97, "hangup: far-end");
#  - tcpdump on lo records SIP and the RTP to sipp's media port; analyze_capture.py checks it.
# Env: LIVEKIT_SIP_BIN (a livekit-sip binary; default: what scripts/sip/install.sh picks,
#      ../shared/tools/livekit-sip beside the repo),
#      LIVEKIT_PORT (7980), REDIS_PORT (6390), SIP_PORT (5070), SIPP_PORT (5080),
#      SIPP_MEDIA_PORT (6000). Ends with "N passed, N failed"; exit 1 if any failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
keep=0 end_mode=remove netns=0 scenario=call
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --netns) netns=1; [ "${BV_IN_NETNS:-}" = 1 ] || exec "$repo/scripts/livekit/netns.sh" "$0" "${args[@]}" ;;
    --keep) keep=1 ;;
    --end-mode) end_mode=$2; shift ;;
    --scenario) scenario=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

end_dtmf=1 sipp_args=() sipp_want_rc=0 sipp_timeout=80
case $scenario in
  call) xml=uac_call.xml ;;
  refer-reject) xml=uac_refer_reject.xml end_mode=transfer sipp_timeout=110 ;;
  hangup) xml=uac_hangup.xml end_dtmf='#' ;;  # '#' is never sent: the agent waits
  hangup-far) xml=uac_hangup.xml sipp_args=(-d 30000) sipp_want_rc=97 ;;
  *) echo "unknown scenario: $scenario" >&2; exit 2 ;;
esac

if [ "$netns" = 1 ]; then
  # livekit-sip's SIP stack (sipgo.NewUA -> ResolveSelfIP) refuses to start ("server not
  # connected to any network") unless some interface that is not LOOPBACK-flagged holds a
  # non-127/8 IPv4 address; netns.sh's veth only has 127.0.0.2. Give its peer a TEST-NET-1
  # address: the namespace has no route anywhere, so nothing can leave it; livekit-sip still
  # announces 127.0.0.1 (nat_1_to_1_ip), and its WebRTC side may use this address as an ICE
  # host candidate toward the server's 127.0.0.1 (delivered over lo).
  ip addr add 192.0.2.200/32 dev bv1
fi

eval "$("$repo/scripts/sip/install.sh" | grep -E '^[A-Z_]+=')"
export LIVEKIT_SERVER_BIN LIVEKIT_SIP_BIN PYTHONWARNINGS=ignore
py=$LIVEKIT_PYTHON
export LIVEKIT_PORT=${LIVEKIT_PORT:-7980} REDIS_PORT=${REDIS_PORT:-6390} SIP_PORT=${SIP_PORT:-5070}
sipp_port=${SIPP_PORT:-5080}
media_port=${SIPP_MEDIA_PORT:-6000}
url=ws://127.0.0.1:$LIVEKIT_PORT
work=$(mktemp -d "${TMPDIR:-/tmp}/sip-proof.XXXXXX")
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$repo/scripts/sip/stop.sh" "$work"
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0 failed=0
check() {
  if "${@:2}"; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}
jcheck() { "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }

"$repo/scripts/sip/start.sh" "$work" 2>&1 | sed 's/^/start: /'
[ -f "$work/sip.pid" ] || { echo "FAIL start"; exit 1; }
echo "listening sockets:"
for f in redis livekit sip; do
  pid=$(cat "$work/$f.pid")
  ss -Hlntup | grep "pid=$pid," | awk -v n="$f" '{print "  " n, $1, $5}'
done | tee "$work/sockets.txt"
check "redis, livekit-server and livekit-sip listen on 127.0.0.1 only" \
  bash -c "! grep -v ' 127\.0\.0\.1:' '$work/sockets.txt'"

"$py" "$repo/scripts/sip/provision.py" --url "http://127.0.0.1:$LIVEKIT_PORT" --json-out "$work/provision.json" >/dev/null
check "trunk and dispatch rule created" jcheck "$work/provision.json" \
  "d['trunk']['sip_trunk_id'].startswith('ST_') and d['rule']['sip_dispatch_rule_id'].startswith('SDR_')"

espeak-ng -w "$work/caller.wav" "Hello, I would like to order a margherita pizza and a glass of red wine, please."
espeak-ng -w "$work/agent.wav" "Welcome to Bella Vista. What can I get for you today?"
python3 "$here/make_rtp_pcap.py" --wav "$work/caller.wav" --out "$work/caller.pcap" --dtmf 1 >"$work/pcap.json"
sed 's/^/pcap: /' "$work/pcap.json"
if [ "$scenario" = hangup ]; then  # hang up when the pcap has played
  sipp_args=(-d "$("$py" -c "import json,sys; print(round(json.load(open(sys.argv[1]))['seconds'] * 1000))" "$work/pcap.json")")
fi

"$py" "$here/sip_agent.py" --observe-out "$work/agent.json" --end-mode "$end_mode" --end-after-dtmf "$end_dtmf" \
  --url "$url" --agent-name bella-vista --join --wav "$work/agent.wav" --hold 1 --exit-after-job \
  --duration 60 --json-out "$work/worker.json" >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=($agent_pid)
for _ in $(seq 100); do grep -q '^registered' "$work/agent.log" && break; sleep 0.1; done

tcpdump -i lo -nn -U -w "$work/call.pcap" "udp and (port $SIP_PORT or port $media_port)" >"$work/tcpdump.log" 2>&1 &
pids+=($!)
tcpdump_pid=$!
for _ in $(seq 50); do grep -q 'listening on' "$work/tcpdump.log" && break; sleep 0.1; done

echo "== call ($scenario, $xml ${sipp_args[*]}): sipp +15550142 -> +15550100 at 127.0.0.1:$SIP_PORT"
sipp_rc=0
(cd "$work" && timeout $((sipp_timeout + 10)) sipp "127.0.0.1:$SIP_PORT" -sf "$here/$xml" -s +15550100 \
   "${sipp_args[@]}" -i 127.0.0.1 -p "$sipp_port" -mi 127.0.0.1 -mp "$media_port" -m 1 \
   -timeout "${sipp_timeout}s" -nostdin -trace_logs -log_file sipp_log.log \
   -trace_msg -message_file sipp_messages.log -trace_err -error_file sipp_errors.log \
   -trace_stat -stf sipp_stat.csv >sipp.out 2>&1) || sipp_rc=$?
echo "sipp exit code $sipp_rc$([ -s "$work/sipp_log.log" ] && printf ', log: %s' "$(tr '\n' ' ' <"$work/sipp_log.log")")"
wait "$agent_pid" || true
sleep 0.5
kill "$tcpdump_pid" 2>/dev/null || true
wait "$tcpdump_pid" 2>/dev/null || true

python3 "$here/analyze_capture.py" "$work/call.pcap" --sip-port "$SIP_PORT" --media-port "$media_port" \
  --wav-out "$work/caller_heard.wav" >"$work/capture.json"
"$py" - "$work/agent.json" "$work/capture.json" <<'PY'
import json, sys
ag, cap = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for p in ag["participants"].values():
    print(f"  participant {p['identity']} kind={p['kind']} name={p['name']!r}")
    for k, v in sorted(p["attributes"].items()):
        print(f"    {k} = {v}")
print("  dtmf in the room:", ag["dtmf"])
print("  agent heard:", {k: {x: v[x] for x in ("seconds", "rms", "speech_seconds") if x in v} for k, v in ag["audio"].items()})
print("  sip:", [(m["t"], m["dir"], m["line"]) for m in cap["sip"]])
print("  timings: INVITE->180 %s s, INVITE->200 %s s, 200->BYE %s s" % (cap["invite_to_180_s"], cap["invite_to_200_s"], cap["answer_to_bye_s"]))
print("  agent audio to the caller: 200->first loud %s s, last loud->BYE from livekit-sip %s s, spans %s"
      % (cap["answer_to_first_audio_s"], cap["last_audio_to_bye_s"], cap["loud_spans"]))
print("  BYE from caller: %s, refers: %s" % (cap["bye_from_caller"], cap["refers"]))
print("  agent events:", [(e["t"], e["event"], e.get("reason") or e.get("how") or e.get("error") or "") for e in ag["events"]
                          if e["event"] in ("end_condition", "ending", "transfer_returned", "transfer_error", "participant_disconnected")])
print("  to caller:", cap["to_caller"])
print("  from caller:", cap["from_caller"])
PY

check "the dispatch reached the worker (availability + assignment)" jcheck "$work/agent.json" \
  "{'availability','assignment'} <= {m['type'] for m in d['worker_messages'] if m['dir']=='<-'}"
check "the SIP caller is in the room (kind SIP, sip.phoneNumber +15550142)" jcheck "$work/agent.json" \
  "any(p['kind']==3 and p['attributes'].get('sip.phoneNumber')=='+15550142' for p in d['participants'].values())"
check "the trunk number is on the participant (sip.trunkPhoneNumber +15550100)" jcheck "$work/agent.json" \
  "any(p['attributes'].get('sip.trunkPhoneNumber')=='+15550100' for p in d['participants'].values())"
check "the stand-in agent hears the caller's speech (RMS > 500, > 2 s of speech)" jcheck "$work/agent.json" \
  "any(v['rms']>500 and v['speech_seconds']>2 for v in d['audio'].values())"
check "DTMF 1 arrives in the room as SipDTMF from the caller" jcheck "$work/agent.json" \
  "any(x['digit']=='1' and x['code']==1 and (x['participant'] or '').startswith('sip_') for x in d['dtmf'])"
case $scenario in
  call)
    if [ "$end_mode" = transfer ]; then
      check "livekit-sip sends REFER (Refer-To tel:+15550199) to the caller" jcheck "$work/capture.json" \
        "d['refer_from_sip'] and d['refer_to'] == 'tel:+15550199'"
      check "TransferSIPParticipant returned once sipp NOTIFYed success" jcheck "$work/agent.json" \
        "any(e['event']=='transfer_returned' for e in d['events'])"
    fi
    check "livekit-sip sends BYE to the caller after the agent ends the call" jcheck "$work/capture.json" "d['bye_from_sip']"
    check "sipp's scenario completed (exit code 0)" test "$sipp_rc" = 0
    ;;
  refer-reject)
    check "livekit-sip sends REFER (Refer-To tel:+15550199) to the caller" jcheck "$work/capture.json" \
      "d['refers'][:1] == ['tel:+15550199']"
    check "sipp answers the REFER 603 Decline" jcheck "$work/capture.json" \
      "any(m['dir']=='to-sip' and m['line'].startswith('SIP/2.0 603') for m in d['sip'])"
    check "TransferSIPParticipant fails (transfer_error)" jcheck "$work/agent.json" \
      "any(e['event']=='transfer_error' for e in d['events']) and not any(e['event']=='transfer_returned' for e in d['events'])"
    check "livekit-sip sends BYE to the caller later" jcheck "$work/capture.json" "d['bye_from_sip'] and not d['bye_from_caller']"
    check "sipp's scenario completed (exit code 0)" test "$sipp_rc" = 0
    ;;
  hangup)
    check "the caller sends BYE when its pcap has played; no BYE from livekit-sip" jcheck "$work/capture.json" \
      "d['bye_from_caller'] and not d['bye_from_sip']"
    check "livekit-sip answers the caller's BYE 200 OK" jcheck "$work/capture.json" \
      "any(m['dir']=='from-sip' and m['line'].startswith('SIP/2.0 200') and m.get('cseq','').endswith('BYE') for m in d['sip'])"
    check "the agent sees the SIP caller leave the room" jcheck "$work/agent.json" \
      "any(e['event']=='participant_disconnected' and e['identity'].startswith('sip_') for e in d['events'])"
    check "sipp's scenario completed as 'hangup: caller' (exit code 0)" \
      bash -c "[ '$sipp_rc' = 0 ] && grep -qx 'hangup: caller' '$work/sipp_log.log'"
    ;;
  hangup-far)
    check "livekit-sip sends BYE before the caller would" jcheck "$work/capture.json" \
      "d['bye_from_sip'] and not d['bye_from_caller']"
    check "sipp's scenario ended as 'hangup: far-end' (exit code 97)" \
      bash -c "[ '$sipp_rc' = 97 ] && grep -qx 'hangup: far-end' '$work/sipp_log.log'"
    ;;
esac
check "the agent's speech comes back to sipp as PCMU (loudest second RMS > 500)" jcheck "$work/capture.json" \
  "d['to_caller']['by_payload_type'].get('0',0) > 50 and d['to_caller']['loudest_1s_rms'] > 500"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
