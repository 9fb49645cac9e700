#!/usr/bin/env bash
# The LiveKit benchmark (benches/livekit.rs) both ways a caller can publish its microphone:
# with DTX (the LiveKit SDKs' default: a packet every 400 ms while silent) and without.
# Each run starts livekit-server, one `bella-vista start` worker (release build, built by
# `cargo bench`), the fake OpenAI server and K Python callers, and writes
# target/bench-livekit.json and target/bench-livekit-no-dtx.json.
#   scripts/livekit/bench.sh [--quick] [--callers N] [--utterances N]
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/livekit/install.sh >/dev/null
command -v espeak-ng >/dev/null || {
  echo "espeak-ng is required (scripts/setup installs it)" >&2
  exit 1
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2
cargo bench --bench livekit -- "$@"
echo "load average between: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo bench --bench livekit -- --no-dtx "$@"
