//! A whole Bella Vista order as a phone-like call from audio: espeak-ng speech through the
//! real resampler, VAD, endpointing and sentence streaming; STT and TTS served by the fake
//! OpenAI server; the model scripted. The stored order is right, the report lists every
//! turn, and the agent's audio holds speech exactly where the report says.

mod common;

use std::time::Duration;

use bella_vista::bella_vista::store::SqliteOrders;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::voice::pipeline::PipelineConfig;
use common::bella::*;
use common::openai_server::{Endpoint, FakeOpenAi, Response};
use common::speech::{concat_with_pauses_marked, espeak_to_frame, silence};
use common::voice::{call, level_between};
use serde_json::json;

const CALLER_LINES: [&str; 4] = [
    "I would like to order",
    "Two tiramisu please, that is all",
    "Cash, and no tip",
    "Yes please",
];

#[tokio::test]
async fn a_whole_order_from_a_caller_wav_is_stored_and_reported() {
    let server = FakeOpenAi::start().await;
    for line in CALLER_LINES {
        server.push(
            Endpoint::Transcriptions,
            Response::Transcript(format!("{line}.")),
        );
    }
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply().expect_user("I would like to order.").call("take_order", json!({})),
        item_enters("What would you like?"),
        Step::reply()
            .expect_user("Two tiramisu please, that is all.")
            .call(
                "confirm_item",
                json!({"name": "Tiramisu", "quantity": 2, "modifications": [], "more_items": false}),
            ),
        payment_enters("$20.00"),
        confirm_payment("cash", 0.0),
        review_enters("Total: $20.00"),
        Step::reply().call("confirm_order", json!({})),
        Step::summary("Two tiramisu, cash, order 1."),
        Step::reply().text("Your order number is 1. Thank you!"),
    ]);

    let rate = 22_050;
    let mut parts = vec![(
        silence(Duration::from_millis(10), rate),
        Duration::from_secs(3),
    )];
    for line in CALLER_LINES {
        parts.push((espeak_to_frame(line), Duration::from_secs(5)));
    }
    let (caller, spans) = concat_with_pauses_marked(&parts);
    let result = call(&server, &llm, &caller, PipelineConfig::default()).await;
    llm.verify().unwrap();
    if std::env::var_os("SHOW_REPORT").is_some() {
        eprintln!("{}", serde_json::to_string_pretty(&result.report).unwrap());
    }

    // the order
    let orders = SqliteOrders::open(&result.db).unwrap().list_all().unwrap();
    assert_eq!(orders.len(), 1);
    let order = as_json(&orders[0]);
    assert_eq!(order["items"][0]["name"], "Tiramisu");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["total_cents"], 2000);
    assert_eq!(order["payment_method"], "cash");

    // the report: the greeting, then one turn per caller line, in order
    let report = &result.report;
    let caller_turns: Vec<&str> = report
        .turns
        .iter()
        .filter_map(|t| t.caller_text.as_deref())
        .collect();
    let expected: Vec<String> = CALLER_LINES.iter().map(|l| format!("{l}.")).collect();
    assert_eq!(caller_turns, expected);
    assert_eq!(report.turns[0].caller_text, None);
    assert_eq!(report.turns[0].agent_text, "Welcome to Bella Vista!");
    assert!(
        report
            .turns
            .last()
            .unwrap()
            .agent_text
            .contains("order number is 1")
    );
    for turn in report.turns.iter().filter(|t| t.caller_text.is_some()) {
        let m = &turn.metrics;
        assert!(
            m.end_of_utterance_delay.is_some() && m.stt.is_some(),
            "{turn:?}"
        );
        assert!(
            m.end_to_end.is_some() && m.commit_to_audio.is_some(),
            "{turn:?}"
        );
        assert!(!turn.interrupted);
    }
    assert_eq!(report.summary.turns, report.turns.len());

    // the agent's audio: speech where the report says, silence while the caller speaks
    for turn in &report.turns {
        let (start, end) = turn.agent_audio_s.expect("every turn was spoken");
        let level = level_between(&result.agent_audio, start + 0.05, end - 0.05);
        assert!(
            level > -30.0,
            "speech expected {start:.2}-{end:.2}s, level {level}"
        );
    }
    // spans are in caller time (22.05 kHz); the agent is quiet while the caller talks
    for span in &spans[1..] {
        let level = level_between(
            &result.agent_audio,
            span.start.as_secs_f64(),
            span.end.as_secs_f64(),
        );
        assert!(
            level < -60.0,
            "agent audio during caller speech {span:?}: {level}"
        );
    }
    // the greeting starts playing right away
    let (greeting_start, _) = report.turns[0].agent_audio_s.unwrap();
    assert!(greeting_start < 0.2, "{greeting_start}");
    // each spoken sentence was synthesized
    assert!(
        server
            .speech_texts()
            .iter()
            .any(|t| t == "Welcome to Bella Vista!")
    );
}
