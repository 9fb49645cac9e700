//! Voice on the local stack: whisper.cpp in the `bella-vista-stt` helper hears espeak-ng
//! speech, survives being abandoned mid-utterance and reports a broken model clearly; and a
//! whole call through `bella-vista simulate` runs on local models only (whisper, the local
//! language model, espeak-ng), with its latency in the report.
//!
//! The models come from the Hugging Face cache `scripts/models/fetch.sh` fills (`HF_HOME`).
//! Without them these tests say so and pass, unless `BELLA_VISTA_REQUIRE_LOCAL_MODELS=1`
//! (set by `scripts/test`, so CI never skips them).
#![cfg(all(feature = "local-llm", feature = "local-stt"))]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bella_vista::io::wav::{read_wav, write_wav};
use bella_vista::voice::stt::{Stt, SttError};
use bella_vista::voice::whisper_stt::{WhisperStt, WhisperSttSettings};
use common::speech::{ESPEAK_RATE, concat_with_pauses, espeak_to_frame, silence};
use serde_json::Value;
use tokio::process::Command;

/// A file of the Hugging Face cache (`$HF_HOME/hub`), if it is there.
fn cached_model(repo: &str, file: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HF_HOME")?;
    let snapshots = PathBuf::from(home)
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots");
    let found = std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join(file))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("BELLA_VISTA_REQUIRE_LOCAL_MODELS").as_deref() != Ok("1"),
            "{repo}:{file} is required here (BELLA_VISTA_REQUIRE_LOCAL_MODELS=1) but is not in \
             the cache: run scripts/models/fetch.sh"
        );
        eprintln!("{repo}:{file} is not in the Hugging Face cache; skipped");
    }
    found
}

fn whisper_model() -> Option<PathBuf> {
    cached_model("ggerganov/whisper.cpp", "ggml-base.bin")
}

fn whisper(model: PathBuf) -> WhisperStt {
    WhisperStt::new(WhisperSttSettings {
        program: env!("CARGO_BIN_EXE_bella-vista-stt").into(),
        model,
        threads: 2,
        load_timeout: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
    })
    .expect("the helper and the model are there")
}

fn menu_words() -> Vec<String> {
    [
        "Bella Vista",
        "Bruschetta",
        "Margherita Pizza",
        "Tiramisu",
        "Panna Cotta",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn whisper_hears_a_dish_and_survives_an_abandoned_utterance() {
    let Some(model) = whisper_model() else { return };
    let stt = whisper(model);
    let utterance = espeak_to_frame("Hi, I would like one tiramisu, please.");

    // Abandoned mid-way (the caller hung up): the helper is killed, not left half-way.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(30),
        stt.transcribe(utterance.clone(), &menu_words()),
    )
    .await;
    assert!(abandoned.is_err(), "a transcript in 30 ms: {abandoned:?}");

    let transcript = stt
        .transcribe(utterance, &menu_words())
        .await
        .expect("a transcript");
    assert!(
        transcript.text.to_lowercase().contains("tiramisu"),
        "{transcript:?}"
    );
    let second = stt
        .transcribe(espeak_to_frame("I will pay by card."), &menu_words())
        .await
        .expect("a second transcript from the same helper");
    assert!(second.text.to_lowercase().contains("card"), "{second:?}");
    let nothing = stt
        .transcribe(silence(Duration::ZERO, ESPEAK_RATE), &[])
        .await
        .expect("no audio, no words");
    assert_eq!(nothing.text, "");
}

#[tokio::test]
async fn a_broken_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ggml-broken.bin");
    std::fs::write(&model, b"not a model").unwrap();
    let stt = whisper(model);
    let error = stt
        .transcribe(espeak_to_frame("Hello"), &[])
        .await
        .expect_err("no model, no transcript");
    assert!(
        matches!(&error, SttError::Engine(text) if text.contains("cannot load")),
        "{error}"
    );
}

/// One caller turn through the binary on local models only: the caller is heard, the
/// agent answers in espeak-ng's voice, and the report measures last word to first audio.
#[tokio::test]
async fn simulate_runs_a_call_on_the_local_stack() {
    let Some(_) = whisper_model() else { return };
    let Some(_) = cached_model(
        "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let caller_path = dir.path().join("caller.wav");
    // The greeting (said from code) ends well within the first 6 s; the model gets 45 s
    // for its first, cold answer.
    let caller = concat_with_pauses(&[
        (silence(Duration::from_secs(6), ESPEAK_RATE), Duration::ZERO),
        (
            espeak_to_frame("Hi, I would like one tiramisu, please."),
            Duration::from_secs(45),
        ),
    ]);
    write_wav(&caller_path, &caller).unwrap();
    let out = dir.path().join("agent.wav");
    let report = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bella-vista"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .arg("--provider")
        .arg("local")
        .arg("--orders-db")
        .arg(dir.path().join("orders.db"))
        .arg("simulate")
        .arg("--caller")
        .arg(&caller_path)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let turns = report["turns"].as_array().unwrap();
    assert!(turns.len() >= 2, "{report:#}");
    assert!(
        !turns[0]["agent_text"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "no greeting: {report:#}"
    );
    let caller_text = turns[1]["caller_text"].as_str().unwrap_or_default();
    assert!(
        caller_text.to_lowercase().contains("tiramisu"),
        "{report:#}"
    );
    let answer = turns[1]["agent_text"].as_str().unwrap_or_default();
    assert!(!answer.is_empty(), "no answer: {report:#}");
    let end_to_end = turns[1]["metrics"]["end_to_end"].as_f64().unwrap();
    let stt = turns[1]["metrics"]["stt"].as_f64().unwrap();
    eprintln!(
        "local stack: heard {caller_text:?}; answered {answer:?}; transcription {stt:.0} ms, \
         last word to first audio {end_to_end:.0} ms"
    );
    let agent = read_wav(&out).unwrap();
    assert!(agent.level_dbfs() > -45.0, "the agent's audio is silent");
}
