//! `bella-vista-stt`: local speech-to-text (whisper.cpp through `whisper-rs`) as a helper
//! process the agent starts and talks to over its standard input and output.
//!
//! Why a process of its own: whisper.cpp and llama.cpp (the local language model, inside
//! the agent) each carry their own copy of ggml, at different versions with the same symbol
//! names, so one binary cannot link both. The agent finds this program next to its own
//! binary, starts it on the first utterance, and keeps it for the life of the worker.
//!
//! Protocol (one request at a time):
//! - start: `bella-vista-stt MODEL_FILE [THREADS]`; once the model is loaded it writes
//!   `bella-vista-stt ready`, or `bella-vista-stt {"error": ...}` and exits.
//! - request: one JSON line `{"samples": N, "prompt": "..."}`, then N samples of 16 kHz
//!   mono audio as 16-bit little-endian integers.
//! - answer: one line `bella-vista-stt {"text": "..."}` or `bella-vista-stt {"error": ...}`.
//!
//! Answers carry a prefix because whisper.cpp may print to standard output on its own;
//! the agent ignores every other line. End of input ends the program.

use std::io::{BufRead, BufReader, Read, Write};

use serde_json::{Value, json};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// The tag every line meant for the agent starts with.
const TAG: &str = "bella-vista-stt";

/// Samples of 16 kHz audio per encoder position (20 ms).
const SAMPLES_PER_POSITION: usize = 320;

/// Encoder positions read past the end of the utterance.
const AUDIO_CTX_MARGIN: usize = 64;

/// The encoder's whole window (30 s).
const FULL_AUDIO_CTX: usize = 1500;

/// Longest utterance accepted (whisper reads 30 s windows; the agent's utterances are short).
const MAX_SAMPLES: usize = 16_000 * 120;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(model) = args.next() else {
        eprintln!("usage: bella-vista-stt MODEL_FILE [THREADS]");
        std::process::exit(2);
    };
    let threads = args
        .next()
        .and_then(|text| text.parse::<i32>().ok())
        .filter(|threads| *threads > 0)
        .unwrap_or(2);
    // whisper.cpp and ggml log to stderr by default; with the hooks and no backend they
    // stay quiet.
    whisper_rs::install_logging_hooks();
    let mut out = std::io::stdout().lock();
    let context = match WhisperContext::new_with_params(&model, WhisperContextParameters::default())
    {
        Ok(context) => context,
        Err(error) => {
            answer(
                &mut out,
                &json!({ "error": format!("cannot load {model}: {error}") }),
            );
            std::process::exit(1);
        }
    };
    let mut state = match context.create_state() {
        Ok(state) => state,
        Err(error) => {
            answer(
                &mut out,
                &json!({ "error": format!("cannot start whisper: {error}") }),
            );
            std::process::exit(1);
        }
    };
    if writeln!(out, "{TAG} ready")
        .and_then(|()| out.flush())
        .is_err()
    {
        return;
    }
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request: Value = match serde_json::from_str(&line) {
            Ok(request) => request,
            Err(error) => {
                answer(
                    &mut out,
                    &json!({ "error": format!("bad request: {error}") }),
                );
                return;
            }
        };
        let count = request["samples"].as_u64().unwrap_or(0) as usize;
        if count > MAX_SAMPLES {
            answer(
                &mut out,
                &json!({ "error": format!("utterance too long: {count} samples") }),
            );
            return;
        }
        let mut bytes = vec![0u8; count * 2];
        if input.read_exact(&mut bytes).is_err() {
            return;
        }
        let audio: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
            .collect();
        let prompt = request["prompt"].as_str().unwrap_or_default();
        let reply = match transcribe(&mut state, &audio, prompt, threads) {
            Ok(text) => json!({ "text": text }),
            Err(error) => json!({ "error": error }),
        };
        answer(&mut out, &reply);
    }
}

/// The words in `audio` (16 kHz mono), greedy decoding in one segment, English.
fn transcribe(
    state: &mut whisper_rs::WhisperState,
    audio: &[f32],
    prompt: &str,
    threads: i32,
) -> Result<String, String> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_language(Some("en"));
    params.set_n_threads(threads);
    params.set_no_context(true);
    params.set_single_segment(true);
    params.set_no_timestamps(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    if !prompt.is_empty() {
        params.set_initial_prompt(prompt);
    }
    // The encoder reads only as much of its 30 s window as the utterance fills (one
    // position per 20 ms, plus a margin): five times faster on short utterances, and
    // measured no less accurate on ours.
    let positions = audio.len() / SAMPLES_PER_POSITION + AUDIO_CTX_MARGIN;
    params.set_audio_ctx(i32::try_from(positions.min(FULL_AUDIO_CTX)).unwrap_or(1500));
    // whisper needs at least one second; shorter utterances are padded with silence.
    let mut padded;
    let audio = if audio.len() < 16_000 {
        padded = audio.to_vec();
        padded.resize(16_000 + 1_600, 0.0);
        &padded[..]
    } else {
        audio
    };
    state
        .full(params, audio)
        .map_err(|error| format!("whisper failed: {error}"))?;
    let mut text = String::new();
    for segment in state.as_iter() {
        text.push_str(&segment.to_str_lossy().map_err(|error| error.to_string())?);
    }
    Ok(without_repeats(text.trim()))
}

/// `text` with a sentence said twice in a row kept once: on short utterances whisper
/// sometimes writes the same sentence again ("No, that's all. No, that's all.").
fn without_repeats(text: &str) -> String {
    let mut sentences: Vec<&str> = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if matches!(c, '.' | '?' | '!') {
            let end = at + c.len_utf8();
            sentences.push(text[start..end].trim());
            start = end;
        }
    }
    sentences.push(text[start..].trim());
    let mut kept: Vec<&str> = Vec::new();
    for sentence in sentences.into_iter().filter(|s| !s.is_empty()) {
        if kept
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case(sentence))
        {
            continue;
        }
        kept.push(sentence);
    }
    kept.join(" ")
}

/// Writes one tagged answer line.
fn answer(out: &mut impl Write, value: &Value) {
    let _ = writeln!(out, "{TAG} {value}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::without_repeats;

    #[test]
    fn a_sentence_written_twice_in_a_row_is_kept_once() {
        assert_eq!(
            without_repeats("No, not salt. No, not salt."),
            "No, not salt."
        );
        assert_eq!(
            without_repeats("Yes. That is correct. Yes."),
            "Yes. That is correct. Yes."
        );
        assert_eq!(
            without_repeats("One tiramisu, please"),
            "One tiramisu, please"
        );
        assert_eq!(without_repeats(""), "");
    }
}
