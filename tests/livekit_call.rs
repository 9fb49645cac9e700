//! A dispatched call through the real LiveKit server: our worker registers, the caller (the
//! official Python SDK) dispatches it by name and speaks an order made by espeak-ng; the
//! agent joins, greets, hears the caller, and the scripted order ends stored. The caller
//! receives transcriptions of both sides and sees `lk.agent.state` move through listening,
//! thinking and speaking. STT and TTS come from the fake OpenAI server; the model is scripted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bella_vista::app::{RoomCalls, restaurant};
use bella_vista::bella_vista::store::OrderStore;
use bella_vista::config::Config;
use bella_vista::io::livekit::worker::{WorkerOptions, run_worker};
use bella_vista::io::wav::write_wav;
use bella_vista::llm::Llm;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use common::livekit::{Caller, CallerPlan, LiveKit};
use common::openai_server::{Endpoint, FakeOpenAi, Response};
use common::speech::{concat_with_pauses_marked, espeak_to_frame};
use serde_json::{Value, json};

const LINES: [&str; 4] = [
    "I would like to order",
    "Two tiramisu please, that is all",
    "Cash, and no tip",
    "Yes please",
];

fn order_script() -> ScriptedLlm {
    ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply()
            .expect_user("I would like to order.")
            .call("take_order", json!({})),
        item_enters("What would you like?"),
        Step::reply().call(
            "confirm_item",
            json!({"name": "Tiramisu", "quantity": 2, "modifications": [], "more_items": false}),
        ),
        payment_enters("$20.00"),
        confirm_payment("cash", 0.0),
        review_enters("Total: $20.00"),
        Step::reply().call("confirm_order", json!({})),
        Step::summary("Two tiramisu, cash, order 1."),
        Step::reply().text("Your order number is 1. Thank you!"),
    ])
}

fn state_values(caller: &Value) -> Vec<String> {
    caller["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["changed"]["lk.agent.state"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatched_call_takes_an_order_over_webrtc() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    for line in LINES {
        fake.push(
            Endpoint::Transcriptions,
            Response::Transcript(format!("{line}.")),
        );
    }
    let llm = order_script();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let mut config = Config::builtin().unwrap();
    config.paths.orders_db = Some(db.clone());
    let restaurant = restaurant(&config).unwrap();
    let calls = RoomCalls::new(
        Arc::new(config),
        restaurant,
        Arc::new(llm.clone()) as Arc<dyn Llm>,
        common::voice::services(&fake),
    );
    let options = WorkerOptions::new(&server.url(), "devkey", "secret", "bella-vista");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(options, Arc::new(calls), async move {
        let _ = stopped.await;
    }));

    let (speech, _) = concat_with_pauses_marked(&[
        (espeak_to_frame(LINES[0]), Duration::from_secs(6)),
        (espeak_to_frame(LINES[1]), Duration::from_secs(6)),
        (espeak_to_frame(LINES[2]), Duration::from_secs(6)),
        (espeak_to_frame(LINES[3]), Duration::from_secs(6)),
    ]);
    let wav = server.path("order.wav");
    write_wav(&wav, &speech).unwrap();
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "order-room",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 5.0,
            duration: 40.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard = caller.finish(Duration::from_secs(60)).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), worker).await;
    llm.verify().unwrap();

    // the order is stored
    let orders = OrderStore::open(&db).unwrap().list().unwrap();
    assert_eq!(orders.len(), 1, "caller saw: {heard:#}");
    let order = as_json(&orders[0]);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["total_cents"], 2000);

    // the agent joined quickly, as an agent
    let events = heard["events"].as_array().unwrap();
    let joined = events.iter().find(|e| {
        e["event"] == "participant_connected"
            && e["identity"].as_str().is_some_and(|i| i != "caller")
    });
    let joined_at = joined.expect("the agent joined")["t"].as_f64().unwrap();
    let dispatched_at = heard["dispatch"]["t"].as_f64().unwrap();
    assert!(
        joined_at - dispatched_at < 5.0,
        "joined {:.2}s after dispatch",
        joined_at - dispatched_at
    );
    eprintln!(
        "agent joined {:.2} s after dispatch",
        joined_at - dispatched_at
    );

    // transcriptions of both sides
    let texts: Vec<&str> = heard["transcriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(texts.contains(&"Welcome to Bella Vista!"), "{texts:?}");
    assert!(texts.contains(&"I would like to order."), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("order number is 1")),
        "{texts:?}"
    );

    // the agent's state
    let states = state_values(&heard);
    for state in ["listening", "thinking", "speaking"] {
        assert!(states.iter().any(|s| s == state), "{states:?}");
    }

    // the agent's audio reached the caller with energy
    let agent_tracks: Vec<&Value> = heard["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["participant"].as_str().is_some_and(|i| i != "caller"))
        .collect();
    assert!(
        agent_tracks
            .iter()
            .any(|t| t["rms"].as_f64().unwrap_or(0.0) > 300.0),
        "{agent_tracks:?}"
    );
}
