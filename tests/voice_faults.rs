//! Provider faults in a call: a transcription that fails or times out makes the agent say
//! it did not catch that, and the call goes on; speech that cannot be synthesized stays in
//! the report as text, and the call goes on.

mod common;

use std::time::Duration;

use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::voice::pipeline::PipelineConfig;
use common::openai_server::{Endpoint, FakeOpenAi, Response, error_body};
use common::speech::{concat_with_pauses_marked, espeak_to_frame, silence};
use common::voice::call;

fn two_utterances() -> bella_vista::voice::audio::AudioFrame {
    let rate = 22_050;
    concat_with_pauses_marked(&[
        (silence(Duration::from_secs(2), rate), Duration::ZERO),
        (
            espeak_to_frame("What time do you open"),
            Duration::from_secs(4),
        ),
        (espeak_to_frame("When do you open"), Duration::from_secs(4)),
    ])
    .0
}

async fn stt_fault_then_recovery(fault: Response, retry_fault: Response) {
    let server = FakeOpenAi::start().await;
    server.push(Endpoint::Transcriptions, fault);
    server.push(Endpoint::Transcriptions, retry_fault);
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("When do you open?".into()),
    );
    let llm = ScriptedLlm::new([
        Step::reply().text("Bella Vista, hello!"),
        Step::reply()
            .expect_user("When do you open?")
            .text("We open at noon."),
    ]);
    let config = PipelineConfig::default();
    let did_not_catch = config.did_not_catch.clone();
    let result = call(&server, &llm, &two_utterances(), config).await;
    llm.verify().unwrap();
    let spoken = server.speech_texts();
    assert!(spoken.contains(&did_not_catch), "{spoken:?}");
    assert!(spoken.iter().any(|t| t == "We open at noon."), "{spoken:?}");
    let last = result.report.turns.last().unwrap();
    assert_eq!(last.caller_text.as_deref(), Some("When do you open?"));
}

#[tokio::test]
async fn a_failing_transcription_gets_did_not_catch_that_and_the_call_goes_on() {
    let error = || Response::Status(500, error_body("transcriber down"));
    stt_fault_then_recovery(error(), error()).await;
}

#[tokio::test]
async fn a_hanging_transcription_times_out_and_the_call_goes_on() {
    stt_fault_then_recovery(Response::Hang, Response::Hang).await;
}

#[tokio::test]
async fn speech_that_cannot_be_synthesized_stays_in_the_report_as_text() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Speech,
        Response::Status(500, error_body("tts down")),
    );
    server.push(
        Endpoint::Speech,
        Response::Status(500, error_body("tts down")),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("What time do you open?".into()),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("When do you open?".into()),
    );
    let llm = ScriptedLlm::new([
        Step::reply().text("Bella Vista, hello!"),
        Step::reply().text("We open at noon."),
        Step::reply().text("At noon, every day."),
    ]);
    let result = call(&server, &llm, &two_utterances(), PipelineConfig::default()).await;
    llm.verify().unwrap();
    let greeting = &result.report.turns[0];
    assert_eq!(greeting.unspoken, vec!["Bella Vista, hello!".to_string()]);
    assert_eq!(greeting.agent_audio_s, None);
    let spoken = result.report.turns[1..]
        .iter()
        .filter(|t| t.agent_audio_s.is_some())
        .count();
    assert_eq!(spoken, 2, "{:?}", result.report.turns);
}
