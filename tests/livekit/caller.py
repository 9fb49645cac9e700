#!/usr/bin/env python3
"""A LiveKit caller for tests: the official Python SDK (`livekit`, native libwebrtc inside
the wheel) plays a person calling the restaurant.

It joins a room, optionally dispatches an agent by name, publishes a WAV file as its
microphone (then silence, so a VAD sees the end of the turn), records every remote audio
track into one WAV, and writes what it saw into a JSON file:
  - transcriptions: text streams on topic `lk.transcription` (with their attributes),
  - attributes: participant attribute changes (e.g. `lk.agent.state`),
  - participants, tracks (with RMS of what was received), the dispatch, and timings.

  caller.py --url ws://127.0.0.1:7880 --room r1 --wav-in speech.wav --wav-out heard.wav \
            --json-out events.json [--agent-name bella-vista] [--duration 20]

Stops by itself after --duration seconds (or earlier with --until-silence-after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import wave
from pathlib import Path

import numpy as np
from livekit import api, rtc

TRANSCRIPTION_TOPIC = "lk.transcription"
RECORD_RATE = 48000  # remote audio is asked for at this rate, mono
FRAME_MS = 10


def read_wav_mono16(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (int16 mono samples, sample rate). Stereo is averaged."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return pcm, rate


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


class Recorder:
    """Mixes remote audio tracks onto one timeline (t=0: when this script started)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.buf = np.zeros(0, dtype=np.int32)
        self.tracks: dict[str, dict] = {}

    def add(self, key: str, samples: np.ndarray, cursor: int) -> int:
        end = cursor + samples.size
        if end > self.buf.size:
            self.buf = np.concatenate([self.buf, np.zeros(end - self.buf.size + RECORD_RATE, np.int32)])
        self.buf[cursor:end] += samples
        return end

    async def record(self, key: str, track: rtc.Track, identity: str) -> None:
        info = {"participant": identity, "track_sid": track.sid, "frames": 0, "samples": 0,
                "first_frame_s": None, "sum_sq": 0.0, "peak": 0}
        self.tracks[key] = info
        cursor = None
        stream = rtc.AudioStream(track, sample_rate=RECORD_RATE, num_channels=1)
        async for ev in stream:
            pcm = np.frombuffer(ev.frame.data, dtype=np.int16)
            now = int((time.monotonic() - self.t0) * RECORD_RATE)
            # Frames arrive in real time: place the first one at its arrival time, then
            # append; if the track paused (no frames for > 200 ms), jump to the arrival time.
            if cursor is None or now - cursor > RECORD_RATE // 5:
                cursor = max(now - pcm.size, 0)
            if info["first_frame_s"] is None:
                info["first_frame_s"] = round(time.monotonic() - self.t0, 3)
            cursor = self.add(key, pcm.astype(np.int32), cursor)
            info["frames"] += 1
            info["samples"] += pcm.size
            info["sum_sq"] += float(np.sum(pcm.astype(np.float64) ** 2))
            info["peak"] = max(info["peak"], int(np.max(np.abs(pcm.astype(np.int32)))) if pcm.size else 0)
        await stream.aclose()

    def save(self, path: Path) -> np.ndarray:
        # The file covers the whole session: from connecting to now (silence where nothing came).
        used = int((time.monotonic() - self.t0) * RECORD_RATE)
        buf = np.concatenate([self.buf, np.zeros(max(0, used - self.buf.size), np.int32)])[:used]
        out = np.clip(buf, -32768, 32767).astype(np.int16)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RECORD_RATE)
            w.writeframes(out.tobytes())
        return out

    def summary(self) -> list[dict]:
        res = []
        for info in self.tracks.values():
            sum_sq, n = info.pop("sum_sq"), info["samples"]
            info["rms"] = round((sum_sq / n) ** 0.5, 1) if n else 0.0
            info["seconds"] = round(info["samples"] / RECORD_RATE, 2)
            res.append(info)
        return res


async def publish_wav(room: rtc.Room, pcm: np.ndarray, rate: int, delay: float,
                      stop: asyncio.Event, log: list) -> None:
    """Publishes a microphone track: `delay` s of silence, the WAV, then silence until stop."""
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("caller-mic", source)
    opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    pub = await room.local_participant.publish_track(track, opts)
    log.append({"t": now(), "event": "published", "track_sid": pub.sid, "sample_rate": rate})
    spf = rate * FRAME_MS // 1000
    silence = np.zeros(spf, dtype=np.int16)

    async def send(chunk: np.ndarray) -> None:
        if chunk.size < spf:
            chunk = np.concatenate([chunk, silence[: spf - chunk.size]])
        frame = rtc.AudioFrame(chunk.tobytes(), rate, 1, spf)
        await source.capture_frame(frame)  # paces itself to real time once its queue is full

    for _ in range(int(delay * 1000 / FRAME_MS)):
        if stop.is_set():
            return
        await send(silence)
    await source.wait_for_playout()  # the queue holds up to 1 s: let the silence play out first
    log.append({"t": now(), "event": "speech_start", "seconds": round(pcm.size / rate, 2)})
    for i in range(0, pcm.size, spf):
        if stop.is_set():
            return
        await send(pcm[i : i + spf])
    await source.wait_for_playout()
    log.append({"t": now(), "event": "speech_end"})
    while not stop.is_set():
        await send(silence)


T0 = time.monotonic()


def now() -> float:
    return round(time.monotonic() - T0, 3)


async def main(args: argparse.Namespace) -> int:
    out: dict = {"room": args.room, "identity": args.identity, "events": [],
                 "transcriptions": [], "attributes": [], "participants": {}, "dispatch": None}
    events = out["events"]
    room = rtc.Room()
    recorder = Recorder(T0)
    tasks: list[asyncio.Task] = []
    stop = asyncio.Event()

    def note_participant(p: rtc.RemoteParticipant) -> None:
        out["participants"][p.identity] = {"kind": int(p.kind), "attributes": dict(p.attributes)}

    @room.on("participant_connected")
    def _joined(p: rtc.RemoteParticipant) -> None:
        note_participant(p)
        events.append({"t": now(), "event": "participant_connected", "identity": p.identity,
                       "kind": int(p.kind), "attributes": dict(p.attributes)})

    @room.on("participant_disconnected")
    def _left(p: rtc.RemoteParticipant) -> None:
        events.append({"t": now(), "event": "participant_disconnected", "identity": p.identity})

    @room.on("participant_attributes_changed")
    def _attrs(changed: dict[str, str], p: rtc.Participant) -> None:
        if isinstance(p, rtc.LocalParticipant):
            return  # our own test.ready, below: only the others' changes are recorded
        out["attributes"].append({"t": now(), "identity": p.identity, "changed": dict(changed)})

    @room.on("track_subscribed")
    def _subscribed(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        events.append({"t": now(), "event": "track_subscribed", "identity": p.identity,
                       "track_sid": pub.sid, "kind": int(track.kind)})
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(recorder.record(pub.sid, track, p.identity)))

    async def read_transcription(reader: rtc.TextStreamReader, identity: str) -> None:
        info = reader.info
        text = await reader.read_all()
        out["transcriptions"].append({"t": now(), "identity": identity, "stream_id": info.stream_id,
                                      "attributes": dict(reader.info.attributes or {}), "text": text})

    room.register_text_stream_handler(
        TRANSCRIPTION_TOPIC, lambda r, ident: tasks.append(asyncio.create_task(read_transcription(r, ident))))

    token = (api.AccessToken(args.api_key, args.api_secret)
             .with_identity(args.identity).with_name(args.identity)
             .with_attributes(dict(a.split("=", 1) for a in args.attribute))
             .with_grants(api.VideoGrants(room_join=True, room=args.room,
                                          can_update_own_metadata=True)).to_jwt())
    await room.connect(args.url, token, rtc.RoomOptions(auto_subscribe=True))
    events.append({"t": now(), "event": "connected", "room_sid": await room.sid})
    if args.announce_ready:
        # Says this caller is connected and ready for data (connect returns once the
        # transport that receives is up), so a test waits for it instead of sleeping.
        # Changing one's own attributes needs the canUpdateOwnMetadata grant above.
        await room.local_participant.set_attributes({"test.ready": "1"})
    for p in room.remote_participants.values():
        note_participant(p)

    if args.agent_name:
        # The HTTP (Twirp) API lives on the same port as the WebSocket signalling.
        http_url = args.url.replace("ws://", "http://").replace("wss://", "https://")
        async with api.LiveKitAPI(http_url, args.api_key, args.api_secret) as lk:
            d = await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name=args.agent_name, room=args.room))
        out["dispatch"] = {"t": now(), "id": d.id, "agent_name": d.agent_name, "room": d.room}

    if args.wav_in:
        pcm, rate = read_wav_mono16(Path(args.wav_in))
        tasks.append(asyncio.create_task(publish_wav(room, pcm, rate, args.speak_after, stop, events)))

    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        pass
    stop.set()
    await room.disconnect()
    await asyncio.wait(tasks, timeout=5)  # audio streams end when the room closes
    for t in tasks:
        t.cancel()

    if args.wav_out:
        heard = recorder.save(Path(args.wav_out))
        out["recording"] = {"path": args.wav_out, "seconds": round(heard.size / RECORD_RATE, 2),
                            "rms": round(rms(heard), 1)}
    out["tracks"] = recorder.summary()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out.get(k) for k in ("recording", "tracks", "dispatch")}))
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:7880")
    p.add_argument("--room", required=True)
    p.add_argument("--identity", default="caller")
    p.add_argument("--api-key", default="devkey")
    p.add_argument("--api-secret", default="secret")
    p.add_argument("--wav-in", help="16-bit PCM WAV to publish as the microphone")
    p.add_argument("--wav-out", help="where to write the remote audio (48 kHz mono)")
    p.add_argument("--json-out", help="where to write transcriptions, attributes, events")
    p.add_argument("--announce-ready", action="store_true",
                   help="set the attribute test.ready=1 once connected")
    p.add_argument("--attribute", action="append", default=[],
                   help="KEY=VALUE participant attribute in the token (e.g. sip.phoneNumber=+1555...)")
    p.add_argument("--agent-name", help="dispatch this agent into the room (AgentDispatchService)")
    p.add_argument("--speak-after", type=float, default=1.0, help="seconds of silence before the WAV")
    p.add_argument("--duration", type=float, default=20.0, help="total time limit, seconds")
    return p.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
