//! Talking over the agent in a call: its audio stops within one frame of the decision, the
//! model's reply in flight is cancelled, and the conversation keeps only what was played.
//! A short cough does not interrupt.

mod common;

use std::time::Duration;

use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRole};
use bella_vista::voice::pipeline::PipelineConfig;
use common::openai_server::{Endpoint, FakeOpenAi, Response};
use common::speech::{concat_with_pauses_marked, espeak_to_frame, silence, white_noise};
use common::voice::{call, level_between};

const GREETING: &str = "Welcome to Bella Vista, home of the finest tiramisu in the whole city. \
                        Tonight we also have grilled salmon and a ribeye. What can I get you?";

fn assistant_messages(request: &bella_vista::llm::ChatRequest) -> Vec<String> {
    request
        .items
        .iter()
        .filter_map(|item| match item {
            ChatItem::Message {
                role: ChatRole::Assistant,
                text,
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_caller_talking_over_the_greeting_stops_it_and_the_context_keeps_the_played_part() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("Hi, can I order?".into()),
    );
    let llm = ScriptedLlm::new([
        Step::reply().text(GREETING),
        Step::reply()
            .expect_user("Hi, can I order?")
            .expect(|request| match assistant_messages(request).as_slice() {
                [heard]
                    if GREETING.starts_with(heard.as_str()) && heard.len() < GREETING.len() / 2 =>
                {
                    Ok(())
                }
                other => Err(format!("context holds {other:?}")),
            })
            .text("Of course!"),
    ]);
    // the caller starts talking 2 s into a greeting of about 9 s
    let rate = 22_050;
    let (caller, spans) = concat_with_pauses_marked(&[
        (silence(Duration::from_secs(2), rate), Duration::ZERO),
        (
            espeak_to_frame("Hi, can I order now please"),
            Duration::from_secs(4),
        ),
    ]);
    let result = call(&server, &llm, &caller, PipelineConfig::default()).await;
    llm.verify().unwrap();

    let greeting = &result.report.turns[0];
    assert!(greeting.interrupted, "{greeting:?}");
    let heard = greeting.heard.clone().unwrap();
    assert!(!heard.is_empty() && GREETING.starts_with(&heard), "{heard}");

    // the agent's audio stops within one 20 ms frame after the interruption decision,
    // which comes min_speech (150 ms) + min_duration (500 ms) after the caller starts
    let caller_start = spans[1].start.as_secs_f64();
    let (audio_start, audio_end) = greeting.agent_audio_s.unwrap();
    assert!(audio_start < 0.2);
    let decision = audio_end;
    assert!(
        decision > caller_start + 0.45 && decision < caller_start + 0.9,
        "stopped at {decision:.2}s, caller started at {caller_start:.2}s"
    );
    assert!(level_between(&result.agent_audio, 0.5, decision - 0.05) > -30.0);
    let reply = result.report.turns.last().unwrap().agent_audio_s.unwrap();
    assert!(
        reply.0 > decision + 0.5,
        "the reply comes after the caller's turn"
    );
    let after = level_between(&result.agent_audio, decision + 0.02, reply.0 - 0.02);
    assert!(after < -90.0, "audio after the stop: {after} dBFS");
    assert_eq!(result.report.summary.interruptions, 1);
    // the reply to the caller's turn played afterwards
    let last = result.report.turns.last().unwrap();
    assert_eq!(last.agent_text, "Of course!");
}

#[tokio::test]
async fn a_short_cough_during_the_greeting_does_not_interrupt() {
    let server = FakeOpenAi::start().await;
    let llm = ScriptedLlm::new([Step::reply().text(GREETING)]);
    let rate = 22_050;
    let cough = white_noise(Duration::from_millis(200), rate, -18.0, 7);
    let (caller, _) = concat_with_pauses_marked(&[
        (silence(Duration::from_secs(2), rate), Duration::ZERO),
        (cough, Duration::from_secs(10)),
    ]);
    let result = call(&server, &llm, &caller, PipelineConfig::default()).await;
    llm.verify().unwrap();
    let greeting = &result.report.turns[0];
    assert!(!greeting.interrupted, "{greeting:?}");
    let (start, end) = greeting.agent_audio_s.unwrap();
    assert!(
        end - start > 8.0,
        "the whole greeting played: {start}-{end}"
    );
    assert_eq!(result.report.summary.interruptions, 0);
}
