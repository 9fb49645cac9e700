//! `bella-vista simulate`: a call from a WAV file through the binary, against a local
//! OpenAI-compatible server for the model, transcription and speech.

mod common;

use std::time::Duration;

use bella_vista::io::wav::{read_wav, write_wav};
use common::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
use common::speech::{concat_with_pauses_marked, espeak_to_frame, silence};
use serde_json::Value;
use tokio::process::Command;

#[tokio::test]
async fn simulate_writes_the_agents_audio_and_a_report() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["Welcome to ", "Bella Vista!"])),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("Are you open today?".into()),
    );
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["Yes, ", "until ten."])),
    );
    let dir = tempfile::tempdir().unwrap();
    let caller_path = dir.path().join("caller.wav");
    let (caller, _) = concat_with_pauses_marked(&[
        (silence(Duration::from_secs(2), 22_050), Duration::ZERO),
        (
            espeak_to_frame("Are you open today"),
            Duration::from_secs(3),
        ),
    ]);
    write_wav(&caller_path, &caller).unwrap();
    let out = dir.path().join("agent.wav");
    let report = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_bella-vista"))
        .env_remove("OPENAI_API_KEY")
        .env("OPENAI_BASE_URL", server.base_url())
        .arg("--orders-db")
        .arg(dir.path().join("orders.db"))
        .arg("simulate")
        .arg("--caller")
        .arg(&caller_path)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .arg("--fast")
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
    assert_eq!(turns.len(), 2, "{report:#}");
    assert_eq!(turns[0]["agent_text"], "Welcome to Bella Vista!");
    assert_eq!(turns[1]["caller_text"], "Are you open today?");
    assert_eq!(turns[1]["agent_text"], "Yes, until ten.");
    assert!(turns[1]["metrics"]["end_to_end"].as_f64().unwrap() > 0.0);
    assert!(
        report["summary"]["end_to_end"]["median_ms"]
            .as_f64()
            .is_some()
    );
    let agent = read_wav(&out).unwrap();
    assert_eq!(agent.sample_rate(), 24_000);
    assert!(agent.duration() >= Duration::from_secs(4));
    assert!(agent.level_dbfs() > -40.0);
}
