#!/usr/bin/env python3
"""Reads a tcpdump capture of a sipp call on the loopback interface and reports, as JSON:
  - the SIP messages (time, direction, first line) between sipp and livekit-sip;
  - the RTP toward sipp's media port (what the caller hears): packets per payload type,
    seconds, the PCMU decoded to 16-bit and its RMS overall and over its loudest second,
    the time from the 200 OK to the first packet and to the first loud packet;
  - the RTP from sipp (what the caller sent): packets per payload type;
  - timings: INVITE -> first 180, INVITE -> 200 OK, 200 OK -> BYE;
  - the agent's audio to the caller, in 20 ms frames that are "loud" when their RMS > 500:
    answer_to_first_audio_s (200 OK for the INVITE -> first loud frame), last_audio_to_bye_s
    (last loud frame -> livekit-sip's BYE; null without one), loud_spans ([start, end] s from
    the 200 OK of contiguous loud audio, gaps < 300 ms merged), and caller_loud_spans, the same
    for what the caller sent (its speech);
  - bye_from_caller (sipp sent a BYE), refers (the Refer-To of each REFER from livekit-sip).

  analyze_capture.py CAP.pcap --sip-port 5070 --media-port 6000 [--wav-out heard.wav]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import warnings
import wave

warnings.filterwarnings("ignore", category=DeprecationWarning)
import audioop  # noqa: E402 - Python 3.11

LOUD = 500  # RMS of a 20 ms frame (16-bit) above which the agent's audio counts as speech
SPAN_GAP = 0.3  # loud frames closer than this (seconds) belong to one span


def packets(path: str):
    """Yields (time, src_ip, src_port, dst_ip, dst_port, payload) of the IPv4/UDP packets."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        skip = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0}.get(linktype)
        if skip is None:
            sys.exit(f"unsupported pcap link type {linktype}")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            t = sec + frac / (1e9 if nano else 1e6)
            ip = data[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            sport, dport, ulen = struct.unpack("!HHH", ip[ihl : ihl + 6])
            yield (t, ".".join(map(str, ip[12:16])), sport, ".".join(map(str, ip[16:20])), dport,
                   ip[ihl + 8 : ihl + ulen])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pcap")
    p.add_argument("--sip-port", type=int, default=5070)
    p.add_argument("--media-port", type=int, default=6000)
    p.add_argument("--wav-out")
    a = p.parse_args()

    sip, to_caller, from_caller = [], [], []
    for t, sip_, sp, dip, dp, payload in packets(a.pcap):
        if a.sip_port in (sp, dp):
            lines = payload.decode(errors="replace").split("\r\n")
            m = {"t": t, "dir": "to-sip" if dp == a.sip_port else "from-sip", "line": lines[0]}
            for h in lines[1:]:
                name, _, value = h.partition(":")
                if name.strip().lower() in ("cseq", "call-id", "i"):
                    m["cseq" if name.strip().lower() == "cseq" else "call_id"] = value.strip()
            refer_to = [h.split(":", 1)[1].strip() for h in lines if h.lower().startswith("refer-to:")]
            if refer_to:
                m["refer_to"] = refer_to[0]
            sip.append(m)
        elif dp == a.media_port and len(payload) >= 12 and payload[0] >> 6 == 2:
            to_caller.append((t, sp, payload))
        elif sp == a.media_port and len(payload) >= 12 and payload[0] >> 6 == 2:
            from_caller.append((t, dp, payload))

    def first(pred):
        return next((m["t"] for m in sip if pred(m)), None)

    t_invite = first(lambda m: m["line"].startswith("INVITE"))
    t_180 = first(lambda m: m["line"].startswith("SIP/2.0 180"))
    t_200 = first(lambda m: m["line"].startswith("SIP/2.0 200") and m["dir"] == "from-sip"
                  and m.get("cseq", "INVITE").endswith("INVITE"))
    t_bye = first(lambda m: m["line"].startswith("BYE"))
    t_bye_sip = first(lambda m: m["line"].startswith("BYE") and m["dir"] == "from-sip")
    t_refer = first(lambda m: m["line"].startswith("REFER"))

    def by_pt(pkts):
        out: dict[str, int] = {}
        for _, _, pl in pkts:
            out[str(pl[1] & 0x7F)] = out.get(str(pl[1] & 0x7F), 0) + 1
        return out

    def pcmu(pkts):
        """(arrival, 16-bit PCM) of each PCMU packet."""
        for t, _, pl in pkts:
            if pl[1] & 0x7F == 0:
                cc = pl[0] & 15
                yield t, audioop.ulaw2lin(pl[12 + 4 * cc :], 2)

    def loud(pkts):
        """Start times of the loud 20 ms frames, and their [start, end] spans."""
        frames = []
        for t, lin in pcmu(pkts):
            for k in range(0, len(lin), 2 * 160):  # 20 ms frames (one per packet)
                if audioop.rms(lin[k : k + 320], 2) > LOUD:
                    frames.append(t + k / 16000)
        spans: list[list[float]] = []
        for ft in frames:
            if spans and ft - spans[-1][1] < SPAN_GAP:
                spans[-1][1] = ft + 0.02
            else:
                spans.append([ft, ft + 0.02])
        return frames, spans

    pcm = b""
    first_rtp = first_loud = None
    loud_rms = 0.0
    for t, lin in pcmu(to_caller):
        pcm += lin
        first_rtp = first_rtp or t
        if first_loud is None and audioop.rms(lin, 2) > LOUD:
            first_loud = t
    loud_frames, spans = loud(to_caller)
    last_loud = loud_frames[-1] if loud_frames else None
    _, caller_spans = loud(from_caller)
    rms = audioop.rms(pcm, 2) if pcm else 0
    for i in range(0, max(0, len(pcm) - 16000 + 1), 1600):  # loudest 1 s window (8 kHz, 16-bit)
        loud_rms = max(loud_rms, audioop.rms(pcm[i : i + 16000], 2))
    if a.wav_out and pcm:
        with wave.open(a.wav_out, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(pcm)

    def rel(x, base):
        return None if x is None or base is None else round(x - base, 3)

    refers, seen = [], set()
    for m in sip:  # one per REFER transaction (retransmissions share Call-ID and CSeq)
        if m["line"].startswith("REFER") and m["dir"] == "from-sip" and "refer_to" in m:
            key = (m.get("call_id"), m.get("cseq"))
            if key not in seen:
                seen.add(key)
                refers.append(m["refer_to"])

    out = {
        "sip": [{**m, "t": rel(m["t"], t_invite)} for m in sip],
        "invite_to_180_s": rel(t_180, t_invite),
        "invite_to_200_s": rel(t_200, t_invite),
        "answer_to_bye_s": rel(t_bye, t_200),
        "answer_to_refer_s": rel(t_refer, t_200),
        "bye_from_sip": any(m["line"].startswith("BYE") and m["dir"] == "from-sip" for m in sip),
        "refer_to": next((m["refer_to"] for m in sip if "refer_to" in m), None),
        "refer_from_sip": any(m["line"].startswith("REFER") and m["dir"] == "from-sip" for m in sip),
        "refers": refers,
        "bye_from_caller": any(m["line"].startswith("BYE") and m["dir"] == "to-sip" for m in sip),
        "answer_to_first_audio_s": rel(loud_frames[0] if loud_frames else None, t_200),
        "last_audio_to_bye_s": rel(t_bye_sip, last_loud),
        "loud_spans": [[rel(b, t_200), rel(e, t_200)] for b, e in spans] if t_200 is not None else [],
        "caller_loud_spans": [[rel(b, t_200), rel(e, t_200)] for b, e in caller_spans]
        if t_200 is not None else [],
        "to_caller": {"packets": len(to_caller), "by_payload_type": by_pt(to_caller),
                      "src_ports": sorted({sp for _, sp, _ in to_caller}),
                      "pcmu_seconds": round(len(pcm) / 16000, 2), "rms": rms, "loudest_1s_rms": round(loud_rms),
                      "answer_to_first_rtp_s": rel(first_rtp, t_200),
                      "answer_to_first_loud_rtp_s": rel(first_loud, t_200)},
        "from_caller": {"packets": len(from_caller), "by_payload_type": by_pt(from_caller),
                        "dst_ports": sorted({dp for _, dp, _ in from_caller})},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
