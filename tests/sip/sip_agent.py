#!/usr/bin/env python3
"""Stand-in agent for a SIP call: tests/livekit/worker_probe.py's worker (register as
"bella-vista", availability, assignment, join with the assignment's token) with its room job
replaced by one that looks at the phone caller:

  - records every remote participant as seen on join and on change: identity, name, kind
    (SIP = 3), attributes (sip.phoneNumber, sip.trunkPhoneNumber, sip.callID, ...);
  - subscribes to the SIP participant's audio and measures it (RMS, seconds, speech seconds);
  - records DTMF: the `sip_dtmf_received` event (DataPacket.sip_dtmf: code, digit) and any
    other data packet (`data_received`: topic, kind);
  - publishes --wav as the agent's voice (what sipp should get back as PCMU);
  - ends the call once the digits in --end-after-dtmf arrived (or --end-after seconds passed;
    if the caller hangs up first, the SIP participant leaves and nothing more is done):
    --end-mode remove (RoomService.RemoveParticipant of the SIP caller) or delete
    (RoomService.DeleteRoom), so livekit-sip sends BYE to the caller;
    or --end-mode transfer --transfer-to tel:+15550199 (SipService.TransferSIPParticipant:
    livekit-sip sends REFER).

  sip_agent.py --observe-out obs.json [--end-mode remove] [--end-after-dtmf 1]
               <worker_probe.py options: --url --agent-name --join --wav --duration ...>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import wave

import numpy as np
from livekit import api, rtc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "livekit"))
import worker_probe  # noqa: E402

OPTS: argparse.Namespace
OBS: dict = {"participants": {}, "attribute_changes": [], "dtmf": [], "data": [], "audio": {},
             "events": []}


def event(what: str, /, **kw) -> None:
    e = {"t": round(time.monotonic() - worker_probe.T0, 3), "event": what, **kw}
    OBS["events"].append(e)
    print(f"[{e['t']:7.3f}] {what} {json.dumps(kw)[:300]}", flush=True)


def describe(p: rtc.RemoteParticipant) -> dict:
    return {"identity": p.identity, "name": p.name, "sid": p.sid, "kind": int(p.kind),
            "kind_name": rtc.ParticipantKind.Name(p.kind) if hasattr(rtc.ParticipantKind, "Name") else str(p.kind),
            "metadata": p.metadata, "attributes": dict(p.attributes)}


async def run_job(url: str, token: str, wav: str | None, hold: float) -> None:
    room = rtc.Room()
    done = asyncio.Event()
    digits: list[str] = []
    listeners: list[asyncio.Task] = []
    caller_left = False

    async def listen(track: rtc.Track, identity: str) -> None:
        st = OBS["audio"].setdefault(identity, {"samples": 0, "sumsq": 0.0, "speech_frames": 0,
                                                 "frames": 0, "first_speech_t": None})
        async for ev in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            pcm = np.frombuffer(ev.frame.data, np.int16).astype(np.float64)
            st["samples"] += pcm.size
            st["sumsq"] += float(np.sum(pcm**2))
            st["frames"] += 1
            if pcm.size and (np.mean(pcm**2) ** 0.5) > 300:
                st["speech_frames"] += 1
                if st["first_speech_t"] is None:
                    st["first_speech_t"] = round(time.monotonic() - worker_probe.T0, 3)
                    event("caller_speech_heard", identity=identity)

    def on_track(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        event("track_subscribed", identity=p.identity, kind=int(track.kind), source=int(pub.source),
              mime=pub.mime_type, name=pub.name)
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            listeners.append(asyncio.create_task(listen(track, p.identity)))

    def on_participant(p: rtc.RemoteParticipant) -> None:
        OBS["participants"][p.identity] = describe(p)
        event("participant_connected", **describe(p))

    def on_attrs(changed: dict, p: rtc.Participant) -> None:
        OBS["attribute_changes"].append({"identity": p.identity, "changed": dict(changed)})
        if p.identity in OBS["participants"]:
            OBS["participants"][p.identity]["attributes"] = dict(p.attributes)
        event("attributes_changed", identity=p.identity, changed=dict(changed))

    def on_dtmf(d: rtc.SipDTMF) -> None:
        who = d.participant.identity if d.participant else None
        OBS["dtmf"].append({"t": round(time.monotonic() - worker_probe.T0, 3), "code": d.code,
                            "digit": d.digit, "participant": who})
        event("sip_dtmf_received", code=d.code, digit=d.digit, participant=who)
        digits.append(d.digit)
        if OPTS.end_after_dtmf and "".join(digits).endswith(OPTS.end_after_dtmf):
            done.set()

    def on_data(pkt: rtc.DataPacket) -> None:
        who = pkt.participant.identity if pkt.participant else None
        OBS["data"].append({"topic": pkt.topic, "kind": int(pkt.kind), "participant": who,
                            "bytes": len(pkt.data)})
        event("data_received", topic=pkt.topic, kind=int(pkt.kind), participant=who)

    room.on("track_subscribed", on_track)
    room.on("participant_connected", on_participant)
    room.on("participant_attributes_changed", on_attrs)
    room.on("sip_dtmf_received", on_dtmf)
    room.on("data_received", on_data)
    def on_disconnected(p: rtc.RemoteParticipant) -> None:
        nonlocal caller_left
        event("participant_disconnected", identity=p.identity, kind=int(p.kind))
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            caller_left = True
            done.set()

    room.on("participant_disconnected", on_disconnected)

    await room.connect(url, token)
    OBS["room"] = room.name
    me = room.local_participant
    event("joined", room=room.name, identity=me.identity)
    for p in room.remote_participants.values():
        OBS["participants"][p.identity] = describe(p)
        event("participant_present", **describe(p))
    for p in room.remote_participants.values():  # tracks published before we joined
        for pub in p.track_publications.values():
            if pub.track and pub.kind == rtc.TrackKind.KIND_AUDIO and p.identity not in OBS["audio"]:
                on_track(pub.track, pub, p)
    await me.set_attributes({"lk.agent.state": "speaking"})

    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
    await me.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    event("agent_track_published", sid=track.sid)
    if wav:
        with wave.open(wav, "rb") as w:
            rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
        if rate != 48000:
            pcm = np.interp(np.arange(0, pcm.size, rate / 48000), np.arange(pcm.size), pcm).astype(np.int16)
        for i in range(0, pcm.size, 480):
            chunk = np.pad(pcm[i : i + 480], (0, max(0, 480 - pcm[i : i + 480].size)))
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), 48000, 1, 480))
        await source.wait_for_playout()
        event("agent_speech_done")
    await me.set_attributes({"lk.agent.state": "listening"})

    try:
        await asyncio.wait_for(done.wait(), timeout=OPTS.end_after)
        event("end_condition", reason="caller left" if caller_left else f"dtmf {OPTS.end_after_dtmf}")
    except asyncio.TimeoutError:
        event("end_condition", reason=f"timeout {OPTS.end_after}s")
    if not caller_left:
        await asyncio.sleep(hold)

    sip_callers = [p for p in room.remote_participants.values() if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP]
    http_url = url.replace("ws://", "http://").replace("wss://", "https://")
    async with api.LiveKitAPI(http_url, OPTS.api_key, OPTS.api_secret) as lk:
        if caller_left and not sip_callers:
            event("ending", how="nothing: the caller hung up")
        elif OPTS.end_mode == "delete":
            event("ending", how="DeleteRoom", room=room.name)
            await lk.room.delete_room(api.DeleteRoomRequest(room=room.name))
        elif OPTS.end_mode == "transfer":
            for p in sip_callers:
                event("ending", how="TransferSIPParticipant", identity=p.identity, to=OPTS.transfer_to)
                try:
                    await lk.sip.transfer_sip_participant(api.TransferSIPParticipantRequest(
                        room_name=room.name, participant_identity=p.identity,
                        transfer_to=OPTS.transfer_to, play_dialtone=False))
                    event("transfer_returned")
                except Exception as e:  # noqa: BLE001 - report whatever the API says
                    event("transfer_error", error=repr(e), code=getattr(e, "code", None),
                          message=getattr(e, "message", None), http_status=getattr(e, "status", None),
                          metadata=dict(getattr(e, "metadata", None) or {}))
        else:
            for p in sip_callers:
                event("ending", how="RemoveParticipant", identity=p.identity)
                await lk.room.remove_participant(api.RoomParticipantIdentity(room=room.name, identity=p.identity))
    await asyncio.sleep(1.0)
    await room.disconnect()
    for t in listeners:
        t.cancel()
    for identity, st in OBS["audio"].items():
        n = st["samples"]
        st["seconds"] = round(n / 16000, 2)
        st["rms"] = round((st["sumsq"] / n) ** 0.5, 1) if n else 0.0
        st["speech_seconds"] = round(st["speech_frames"] * (n / max(1, st["frames"])) / 16000, 2)
        print(f"agent heard {identity}: {st['seconds']} s, rms {st['rms']}, speech {st['speech_seconds']} s", flush=True)


def main() -> int:
    global OPTS
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--observe-out", required=True)
    p.add_argument("--end-mode", choices=["remove", "delete", "transfer"], default="remove")
    p.add_argument("--end-after-dtmf", default="1")
    p.add_argument("--end-after", type=float, default=20.0, help="seconds after speaking at most")
    p.add_argument("--transfer-to", default="tel:+15550199")
    OPTS, rest = p.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    a = worker_probe.parse_args()
    OPTS.api_key, OPTS.api_secret = a.api_key, a.api_secret
    worker_probe.run_job = run_job  # the probe's worker loop calls run_job by name
    rc = 1
    try:
        rc = asyncio.run(worker_probe.main(a))
    finally:
        OBS["worker_messages"] = worker_probe.LOG
        with open(OPTS.observe_out, "w") as f:
            json.dump(OBS, f, indent=2, default=str)
    return rc


if __name__ == "__main__":
    sys.exit(main())
