#!/usr/bin/env python3
"""Probes livekit-server's agent-worker endpoint the way our Rust worker must use it, and
logs every message, so the flow is documented by a run rather than by reading.

  1. WebSocket to ws://HOST/agent (token with the `agent` video grant, as a Bearer header),
     binary protobuf frames: WorkerMessage out, ServerMessage in (livekit-protocol types).
  2. -> register{RegisterWorkerRequest{type: JT_ROOM, agent_name}}; <- register{worker_id, server_info}
  3. -> ping{timestamp}; <- pong{last_timestamp, timestamp}
  4. (--dispatch) creates the room and a dispatch for agent_name through the Twirp API.
  5. <- availability{AvailabilityRequest{job}}; -> availability{AvailabilityResponse{job_id,
     available: true, participant_identity, participant_name}}
  6. <- assignment{JobAssignment{job, token, url}}; -> update_job{job_id, JS_RUNNING}
  7. (--join) joins the room with the assignment's token via the Python SDK, as a stand-in
     agent: sets `lk.agent.state`, publishes --wav, sends a `lk.transcription` text stream.
  8. -> update_job{JS_SUCCESS} when the stand-in agent has left; <- termination{job_id} when
     the server ends the job (the agent left, or the room closed), in either order.
     Anything else the server sends is logged too.

  worker_probe.py --url ws://127.0.0.1:7880 [--agent-name bella-vista] [--dispatch --room r]
                  [--join --wav agent.wav] [--duration 20] [--json-out log.json]
Prints `registered worker_id=...` as soon as the worker is registered (scripts wait on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave

import aiohttp
import numpy as np
from google.protobuf.json_format import MessageToDict
from livekit import api, rtc
from livekit.protocol import agent as pb

T0 = time.monotonic()
LOG: list[dict] = []
API_KEY, API_SECRET = "devkey", "secret"  # set from the command line in main()


def log(direction: str, msg) -> None:
    """Logs one WorkerMessage/ServerMessage: its oneof type and its fields (tokens shortened)."""
    kind = msg.WhichOneof("message")
    body = MessageToDict(getattr(msg, kind), preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)
    if body.get("job", {}).get("room"):
        room = body["job"]["room"]  # the full Room is long; keep what identifies it
        body["job"]["room"] = {k: room[k] for k in ("sid", "name") if k in room}
    if body.get("token"):
        # The assignment's token: a join token for the job's room, made by the server.
        claims = api.TokenVerifier(API_KEY, API_SECRET).verify(body["token"])
        body["token_claims"] = {"identity": claims.identity, "name": claims.name, "kind": claims.kind,
                                "attributes": claims.attributes, "video": vars(claims.video)}
        body["token"] = body["token"][:16] + "..."
    entry = {"t": round(time.monotonic() - T0, 3), "dir": direction, "type": kind, "body": body}
    LOG.append(entry)
    print(f"[{entry['t']:7.3f}] {direction} {kind}: {json.dumps(body)[:400]}", flush=True)


async def send(ws: aiohttp.ClientWebSocketResponse, **oneof) -> None:
    msg = pb.WorkerMessage(**oneof)
    log("->", msg)
    await ws.send_bytes(msg.SerializeToString())


async def run_job(url: str, token: str, wav: str | None, hold: float) -> None:
    """Stand-in agent: joins with the assignment token and does what the Rust agent will do."""
    room = rtc.Room()
    heard: dict[str, list[float]] = {}

    async def listen(track: rtc.Track, identity: str) -> None:
        # What the Rust agent's STT will get: the caller's microphone, decoded.
        sq = heard.setdefault(identity, [0.0, 0.0])
        async for ev in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            pcm = np.frombuffer(ev.frame.data, np.int16).astype(np.float64)
            sq[0] += float(np.sum(pcm**2))
            sq[1] += pcm.size

    listeners = []
    room.on("track_subscribed", lambda track, pub, p: listeners.append(
        asyncio.create_task(listen(track, p.identity))) if track.kind == rtc.TrackKind.KIND_AUDIO else None)
    await room.connect(url, token)
    me = room.local_participant
    print(f"joined room {room.name} as {me.identity} (kind {me.kind}) attrs={dict(me.attributes)}", flush=True)
    await me.set_attributes({"lk.agent.state": "listening"})
    await asyncio.sleep(1.0)
    await me.set_attributes({"lk.agent.state": "thinking"})
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
    await me.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await me.set_attributes({"lk.agent.state": "speaking"})
    text = "Welcome to Bella Vista."
    # Transcription of the agent's own speech: a text stream on lk.transcription naming the
    # track it transcribes. Uncompressed, as a plain data-stream writer would send it.
    await me.send_text(text, topic="lk.transcription", compress=False, attributes={
        "lk.transcription_final": "true", "lk.segment_id": "SG_probe1",
        "lk.transcribed_track_id": track.sid})
    if wav:
        with wave.open(wav, "rb") as w:
            rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
        if rate != 48000:  # espeak-ng writes 22050 Hz; resample for a 48 kHz source
            pcm = np.interp(np.arange(0, pcm.size, rate / 48000), np.arange(pcm.size), pcm).astype(np.int16)
        for i in range(0, pcm.size, 480):
            chunk = pcm[i : i + 480]
            chunk = np.pad(chunk, (0, 480 - chunk.size))
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), 48000, 1, 480))
        await source.wait_for_playout()
    await me.set_attributes({"lk.agent.state": "listening"})
    await asyncio.sleep(hold)
    await room.disconnect()
    for t in listeners:
        t.cancel()
    for identity, (total, n) in heard.items():
        print(f"agent heard {identity}: {n / 16000:.1f} s, rms {(total / n) ** 0.5 if n else 0:.0f}", flush=True)


async def main(a: argparse.Namespace) -> int:
    global API_KEY, API_SECRET
    API_KEY, API_SECRET = a.api_key, a.api_secret
    http_url = a.url.replace("ws://", "http://")
    token = api.AccessToken(a.api_key, a.api_secret).with_grants(api.VideoGrants(agent=True)).to_jwt()
    deadline = T0 + a.duration
    job_task: asyncio.Task | None = None
    jobs_done = 0
    async with aiohttp.ClientSession() as http:
        # ?protocol=1 is what the agents SDKs send (the server's CurrentProtocol is 1).
        ws = await http.ws_connect(f"{a.url}/agent?protocol=1", headers={"Authorization": f"Bearer {token}"})
        await send(ws, register=pb.RegisterWorkerRequest(
            type=pb.JobType.JT_ROOM, agent_name=a.agent_name, version="probe-0"))
        dispatched = False

        async def job(job_id: str, url: str, token: str) -> None:
            status, error = pb.JobStatus.JS_SUCCESS, ""
            try:
                await run_job(url, token, a.wav, a.hold)
            except Exception as e:  # report it to the server, as a real worker would
                status, error = pb.JobStatus.JS_FAILED, repr(e)
                raise
            finally:
                await send(ws, update_job=pb.UpdateJobStatus(job_id=job_id, status=status, error=error))

        while time.monotonic() < deadline:
            if job_task and job_task.done():
                job_task.result()  # re-raise failures of the stand-in agent
                job_task, jobs_done = None, jobs_done + 1
                if a.exit_after_job:
                    break
            try:
                frame = await ws.receive(timeout=max(0.1, min(0.5, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                continue
            if frame.type != aiohttp.WSMsgType.BINARY:
                print(f"non-binary frame: {frame.type} {frame.data!r}", flush=True)
                break
            msg = pb.ServerMessage.FromString(frame.data)
            log("<-", msg)
            kind = msg.WhichOneof("message")
            if kind == "register":
                print(f"registered worker_id={msg.register.worker_id}", flush=True)
                await send(ws, ping=pb.WorkerPing(timestamp=int(time.time() * 1000)))
                await send(ws, update_worker=pb.UpdateWorkerStatus(
                    status=pb.WorkerStatus.WS_AVAILABLE, load=0.0, job_count=0))
                if a.dispatch and not dispatched:
                    dispatched = True
                    async with api.LiveKitAPI(http_url, a.api_key, a.api_secret) as lk:
                        await lk.room.create_room(api.CreateRoomRequest(name=a.room))
                        d = await lk.agent_dispatch.create_dispatch(
                            api.CreateAgentDispatchRequest(agent_name=a.agent_name, room=a.room))
                    print(f"created dispatch {d.id} in room {a.room}", flush=True)
            elif kind == "availability":
                j = msg.availability.job
                await send(ws, availability=pb.AvailabilityResponse(
                    job_id=j.id, available=True, participant_identity=f"agent-{j.id}",
                    participant_name="Bella Vista"))
            elif kind == "assignment":
                j = msg.assignment.job
                await send(ws, update_job=pb.UpdateJobStatus(job_id=j.id, status=pb.JobStatus.JS_RUNNING))
                url = msg.assignment.url or a.url  # empty url: use the one the worker connected to
                if a.join:
                    job_task = asyncio.create_task(job(j.id, url, msg.assignment.token))
                else:
                    await send(ws, update_job=pb.UpdateJobStatus(job_id=j.id, status=pb.JobStatus.JS_SUCCESS))
                    jobs_done += 1
                    if a.exit_after_job:
                        break
            elif kind == "termination" and job_task:
                # Sent when the job ends on the server's side (here: the agent left the room,
                # or the room closed). Let the stand-in agent finish; the loop then counts it.
                await asyncio.wait([job_task], timeout=10)
        if job_task and not job_task.done():
            job_task.cancel()
        await ws.close()
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(LOG, f, indent=2)
    print(f"messages: {' '.join(e['dir'] + e['type'] for e in LOG)}", flush=True)
    return 0 if jobs_done or not (a.dispatch or a.join) else 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:7880")
    p.add_argument("--api-key", default="devkey")
    p.add_argument("--api-secret", default="secret")
    p.add_argument("--agent-name", default="bella-vista")
    p.add_argument("--dispatch", action="store_true", help="create --room and dispatch the agent into it")
    p.add_argument("--room", default="probe-room")
    p.add_argument("--join", action="store_true", help="join the job's room as a stand-in agent")
    p.add_argument("--wav", help="16-bit mono WAV the stand-in agent speaks")
    p.add_argument("--hold", type=float, default=2.0, help="seconds to stay in the room after speaking")
    p.add_argument("--exit-after-job", action="store_true", help="stop after the first job ends")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--json-out")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
