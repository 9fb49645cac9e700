#!/usr/bin/env python3
"""Writes a pcap of one RTP stream for sipp's `play_pcap_audio`: PCMU (payload type 0,
8 kHz, 20 ms packets) of WAV files and silence, and RFC 4733 telephone-events (payload
type 101) for DTMF digits, all in one stream (one SSRC, continuous sequence numbers and
timestamps). sipp paces the packets by their pcap timestamps and rewrites the addresses and
ports; the RTP bytes go out as written here.

  make_rtp_pcap.py --out caller.pcap --segment KIND:VALUE [--segment ...] [--wav-out heard.wav]
      KIND:VALUE, in order:  silence:SECONDS   PCMU silence
                             speech:PATH.wav   16-bit mono WAV, any rate (espeak-ng: 22050 Hz)
                             dtmf:DIGITS       each digit (0-9 * # A-D, --digit-ms long) is
                                               followed by --gap (0.5) s of PCMU silence
  make_rtp_pcap.py --wav speech.wav --out caller.pcap [--dtmf 1] [--lead 2.0] [--tail 2.0]
      (without --segment, as before: lead silence, speech, --gap silence before each digit,
      tail silence)
  --wav-out PATH writes what the stream carries, decoded back from PCMU, as an 8 kHz 16-bit
  mono WAV aligned with the packets (20 ms per packet; DTMF packets as silence).
Prints a JSON summary: packets, seconds, segments [{kind, start, end, ...}] (seconds from the
first packet; end = when the next segment starts), digits [{digit, t}], ssrc, and without
--segment also speech [start, end].
"""

from __future__ import annotations

import argparse
import warnings
warnings.filterwarnings("ignore", category=DeprecationWarning)
import audioop  # noqa: E402 - Python 3.11: still in the standard library (removed in 3.13)
import json
import random
import struct
import sys
import wave

PT_PCMU, PT_DTMF = 0, 101
FRAME = 160  # samples per 20 ms at 8 kHz
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


def ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack("!10H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame_packet(payload: bytes, src=("127.0.0.1", 6000), dst=("127.0.0.1", 20000)) -> bytes:
    """Ethernet + IPv4 + UDP around an RTP packet (UDP checksum 0: allowed on IPv4)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                               bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split(".")))))
    struct.pack_into("!H", ip, 10, ip_checksum(bytes(ip)))
    eth = b"\x00" * 12 + b"\x08\x00"
    return eth + bytes(ip) + udp


def read_wav_8k(path: str) -> bytes:
    """16-bit mono WAV at any rate -> 16-bit 8 kHz PCM."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            sys.exit(f"{path}: 16-bit mono WAV expected")
        pcm, _ = audioop.ratecv(w.readframes(w.getnframes()), 2, 1, w.getframerate(), 8000, None)
    return pcm


def parse_segment(text: str) -> tuple[str, str]:
    kind, sep, value = text.partition(":")
    if not sep or kind not in ("silence", "speech", "dtmf") or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected silence:SECONDS, speech:PATH.wav or dtmf:DIGITS")
    if kind == "silence":
        try:
            if float(value) < 0:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be a number >= 0") from None
    if kind == "dtmf" and any(d.upper() not in DTMF_EVENTS for d in value):
        raise argparse.ArgumentTypeError(f"{text!r}: digits are 0-9 * # A B C D")
    return kind, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segment", type=parse_segment, action="append", default=[], metavar="KIND:VALUE",
                   help="silence:SECONDS, speech:PATH.wav or dtmf:DIGITS; repeatable, in order")
    p.add_argument("--wav", help="without --segment: 16-bit mono WAV (any rate; espeak-ng writes 22050 Hz)")
    p.add_argument("--out", required=True)
    p.add_argument("--wav-out", help="write the stream's audio decoded from PCMU (8 kHz 16-bit mono WAV)")
    p.add_argument("--dtmf", default="1", help="without --segment: digits sent after the speech (RFC 4733)")
    p.add_argument("--lead", type=float, default=2.0, help="without --segment: seconds of silence before the speech")
    p.add_argument("--gap", type=float, default=0.5, help="seconds of silence around (--segment: after) each digit")
    p.add_argument("--tail", type=float, default=2.0, help="without --segment: seconds of silence at the end")
    p.add_argument("--digit-ms", type=int, default=200, help="duration of each digit")
    a = p.parse_args()
    if not a.segment and not a.wav:
        p.error("--wav (or at least one --segment) is required")

    ssrc, seq, ts, t = random.getrandbits(32), random.getrandbits(15), random.getrandbits(31), 0.0
    packets: list[tuple[float, bytes]] = []
    audio: list[bytes] = []  # per packet: the 20 ms of 8 kHz 16-bit audio it carries
    first = True

    def rtp(pt: int, payload: bytes, marker: bool = False, advance: bool = True, timestamp: int | None = None) -> None:
        nonlocal seq, ts, t, first
        hdr = struct.pack("!BBHII", 0x80, (0x80 if (marker or first) else 0) | pt, seq & 0xFFFF,
                          (ts if timestamp is None else timestamp) & 0xFFFFFFFF, ssrc)
        first = False
        packets.append((t, frame_packet(hdr + payload)))
        audio.append(audioop.ulaw2lin(payload, 2) if pt == PT_PCMU else b"\x00" * (2 * FRAME))
        seq += 1
        t += 0.02
        if advance:
            ts += FRAME

    def silence(seconds: float) -> None:
        for _ in range(int(seconds * 50 + 1e-9)):
            rtp(PT_PCMU, b"\xff" * FRAME)

    def speech(pcm: bytes) -> None:
        for i in range(0, len(pcm), 2 * FRAME):
            chunk = pcm[i : i + 2 * FRAME].ljust(2 * FRAME, b"\x00")
            rtp(PT_PCMU, audioop.lin2ulaw(chunk, 2))

    digits: list[dict] = []

    def digit(d: str) -> None:
        nonlocal ts
        ev, start_ts, n = DTMF_EVENTS[d.upper()], ts, max(1, a.digit_ms // 20)
        digits.append({"digit": d, "t": round(t, 3)})
        for k in range(1, n + 1):  # one packet per 20 ms, same timestamp, growing duration
            rtp(PT_DTMF, struct.pack("!BBH", ev, 10, k * FRAME), marker=(k == 1), advance=False, timestamp=start_ts)
        for _ in range(3):  # the end packet, three times (RFC 4733 2.5.1.4)
            rtp(PT_DTMF, struct.pack("!BBH", ev, 0x80 | 10, n * FRAME), advance=False, timestamp=start_ts)
        ts = start_ts + (n + 3) * FRAME  # the next audio continues after the event

    segments: list[dict] = []
    summary: dict = {}
    if a.segment:
        for kind, value in a.segment:
            start = t
            extra: dict = {}
            if kind == "silence":
                silence(float(value))
            elif kind == "speech":
                extra["path"] = value
                speech(read_wav_8k(value))
            else:
                extra["digits"] = value
                for d in value:
                    digit(d)
                    silence(a.gap)
            segments.append({"kind": kind, "start": round(start, 3), "end": round(t, 3), **extra})
    else:  # the original layout (tests/sip/run_proof.sh)
        pcm = read_wav_8k(a.wav)
        silence(a.lead)
        segments.append({"kind": "silence", "start": 0.0, "end": round(t, 3)})
        speech_start = t
        speech(pcm)
        speech_end = prev = t
        segments.append({"kind": "speech", "start": round(speech_start, 3), "end": round(t, 3), "path": a.wav})
        for d in a.dtmf:
            silence(a.gap)
            segments.append({"kind": "silence", "start": round(prev, 3), "end": round(t, 3)})
            start = t
            digit(d)
            prev = t
            segments.append({"kind": "dtmf", "start": round(start, 3), "end": round(t, 3), "digits": d})
        silence(a.tail)
        segments.append({"kind": "silence", "start": round(prev, 3), "end": round(t, 3)})
        summary["speech"] = [round(speech_start, 2), round(speech_end, 2)]

    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # pcap, Ethernet
        base = 1_700_000_000.0
        for when, pkt in packets:
            sec = int(base + when)
            usec = int(round((base + when - sec) * 1e6))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)) + pkt)
    if a.wav_out:
        with wave.open(a.wav_out, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(b"".join(audio))
        summary["wav_out"] = {"path": a.wav_out, "seconds": round(len(audio) * 0.02, 2)}
    print(json.dumps({"packets": len(packets), "seconds": round(t, 2), **summary, "segments": segments,
                      "digits": digits, "ssrc": ssrc}))


if __name__ == "__main__":
    main()
