//! A dispatched call through the real LiveKit server: our worker registers, the caller (the
//! official Python SDK) dispatches it by name and speaks an order made by espeak-ng; the
//! agent joins, greets, hears the caller, and the scripted order ends stored. The caller
//! receives transcriptions of both sides and sees `lk.agent.state` move through listening,
//! thinking and speaking. STT and TTS come from the fake OpenAI server; the model is scripted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bella_vista::app::{RoomCalls, restaurant_with_store};
use bella_vista::bella_vista::store::{OrderStore, SqliteOrders};
use bella_vista::config::{Config, Provider};
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
        review_enters("Total: $20.00").expect_instructions("ending in 42"),
        Step::reply().call("confirm_order", json!({})),
        Step::summary("Two tiramisu, cash, order 1."),
        Step::reply().text("Your order number is 1. Thank you!"),
    ])
}

/// Our worker, in-process, answering with `llm`; STT and TTS at `fake`.
struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), bella_vista::io::livekit::worker::WorkerError>>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(server: &LiveKit, fake: &FakeOpenAi, llm: &ScriptedLlm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orders.db");
        let mut config = Config::builtin().unwrap();
        config.livekit.caller_wait_ms = 4000;
        // The scripted model stands in for a hosted one: the flow a hosted model gets.
        config.provider = Some(Provider::Openai);
        let restaurant = restaurant_with_store(&config, OrderStore::open(&db).unwrap()).unwrap();
        let calls = RoomCalls::new(
            Arc::new(config),
            restaurant,
            Arc::new(llm.clone()) as Arc<dyn Llm>,
            common::voice::services(fake),
        );
        let options = WorkerOptions::new(&server.url(), "devkey", "secret", "bella-vista");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_worker(options, Arc::new(calls), async move {
            let _ = stopped.await;
        }));
        Worker {
            stop: Some(stop),
            task,
            db,
            _dir: dir,
        }
    }

    async fn stop(mut self) -> Vec<Value> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        SqliteOrders::open(&self.db)
            .unwrap()
            .list_all()
            .unwrap()
            .iter()
            .map(as_json)
            .collect()
    }
}

/// Speech of `lines`, each followed by `pause`, as a WAV in the server's directory.
fn caller_wav(server: &LiveKit, name: &str, lines: &[&str], pause: Duration) -> std::path::PathBuf {
    let parts: Vec<_> = lines.iter().map(|l| (espeak_to_frame(l), pause)).collect();
    let (speech, _) = concat_with_pauses_marked(&parts);
    let wav = server.path(name);
    write_wav(&wav, &speech).unwrap();
    wav
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
    let worker = Worker::start(&server, &fake, &llm);
    let wav = caller_wav(&server, "order.wav", &LINES, Duration::from_secs(6));
    let caller = Caller::start_with_attributes(
        &server,
        CallerPlan {
            room: "order-room",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 5.0,
            duration: 40.0,
            agent_name: Some("bella-vista"),
        },
        &["sip.phoneNumber=+15550142"],
    );
    let heard = caller.finish(Duration::from_secs(60)).await;
    let orders = worker.stop().await;
    llm.verify().unwrap();

    // the order is stored
    assert_eq!(orders.len(), 1, "caller saw: {heard:#}");
    let order = &orders[0];
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["total_cents"], 2000);
    assert_eq!(
        order["caller_phone"], "+15550142",
        "the caller's number from the room"
    );

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
    // each side's words come from that side, as LiveKit frontends show them
    for transcription in heard["transcriptions"].as_array().unwrap() {
        let from_caller = LINES
            .iter()
            .any(|l| transcription["text"].as_str() == Some(format!("{l}.").as_str()));
        let sender = transcription["identity"].as_str().unwrap_or_default();
        assert_eq!(
            sender == "caller",
            from_caller,
            "{transcription}: the caller's words must come from the caller, the agent's from the agent"
        );
    }

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

/// Seconds of the agent's track, in 20 ms windows, louder than -40 dBFS, from the
/// caller's recording.
fn agent_speech_windows(heard: &std::path::Path) -> Vec<f64> {
    let audio = bella_vista::io::wav::read_wav(heard).unwrap();
    let rate = audio.sample_rate() as usize;
    audio
        .samples()
        .chunks(rate / 50)
        .enumerate()
        .filter(|(_, w)| {
            bella_vista::voice::audio::AudioFrame::mono(w.to_vec(), rate as u32).level_dbfs()
                > -40.0
        })
        .map(|(i, _)| i as f64 * 0.02)
        .collect()
}

const LONG_GREETING: &str = "Welcome to Bella Vista, home of the finest tiramisu in the whole \
                             city. Tonight we also have grilled salmon and a ribeye steak. What \
                             can I get you?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_talking_over_the_agent_stops_its_audio() {
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    fake.push(
        Endpoint::Transcriptions,
        Response::Transcript("Can I order now?".into()),
    );
    let llm = ScriptedLlm::new([
        Step::reply().text(LONG_GREETING),
        Step::reply()
            .expect(|r| {
                let heard = r.items.iter().find_map(|i| match i {
                    bella_vista::llm::ChatItem::Message {
                        role: bella_vista::llm::ChatRole::Assistant,
                        text,
                    } => Some(text.clone()),
                    _ => None,
                });
                match heard {
                    Some(h)
                        if LONG_GREETING.starts_with(&h) && h.len() < LONG_GREETING.len() / 2 =>
                    {
                        Ok(())
                    }
                    other => Err(format!("context kept {other:?}")),
                }
            })
            .text("Of course!"),
    ]);
    let worker = Worker::start(&server, &fake, &llm);
    let wav = caller_wav(
        &server,
        "over.wav",
        &["Can I order now please"],
        Duration::from_secs(6),
    );
    // the agent joins about 1.3 s after the dispatch and greets for about 9 s; the caller
    // starts talking 4 s in
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "barge-room",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 4.0,
            duration: 14.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard_path = caller.heard.clone();
    let _ = caller.finish(Duration::from_secs(40)).await;
    worker.stop().await;
    llm.verify().unwrap();
    let windows = agent_speech_windows(&heard_path);
    let first = *windows.first().expect("the agent spoke");
    // the greeting: a run of windows without a gap of more than 0.3 s
    let mut greeting_end = first;
    for &w in &windows {
        if w - greeting_end > 0.3 {
            break;
        }
        greeting_end = w;
    }
    let greeting_len = greeting_end - first;
    let full = LONG_GREETING.len() as f64 * 0.06;
    assert!(
        greeting_len < full * 0.6,
        "greeting played {greeting_len:.2}s of {full:.2}s"
    );
    assert!(
        greeting_end < 4.0 + 2.0,
        "stopped at {greeting_end:.2}s, caller began at 4.0s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_order_stores_nothing_and_the_worker_serves_the_next() {
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    fake.push(
        Endpoint::Transcriptions,
        Response::Transcript("I would like to order.".into()),
    );
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply().call("take_order", json!({})),
        item_enters("What would you like?"),
        // the second call
        Step::reply().text("Welcome back to Bella Vista!"),
    ]);
    let worker = Worker::start(&server, &fake, &llm);
    let wav = caller_wav(
        &server,
        "short.wav",
        &["I would like to order"],
        Duration::from_secs(3),
    );
    let first = Caller::start(
        &server,
        CallerPlan {
            room: "hangup-room",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 3.0,
            duration: 9.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard = first.finish(Duration::from_secs(30)).await;
    let texts = format!("{}", heard["transcriptions"]);
    assert!(texts.contains("What would you like?"), "{texts}");
    // the worker keeps serving: a second caller in another room is greeted
    let second = Caller::start(
        &server,
        CallerPlan {
            room: "next-room",
            identity: "caller2",
            wav_in: None,
            speak_after: 1.0,
            duration: 6.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard = second.finish(Duration::from_secs(30)).await;
    let texts = format!("{}", heard["transcriptions"]);
    assert!(texts.contains("Welcome back to Bella Vista!"), "{texts}");
    let orders = worker.stop().await;
    llm.verify().unwrap();
    assert!(orders.is_empty(), "{orders:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_room_vanished_is_released_and_the_worker_goes_on() {
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    let llm = ScriptedLlm::new([
        // the vanished room's greeting may or may not be asked for, depending on timing
        Step::new().text("Welcome to Bella Vista!"),
        Step::new().text("Welcome to Bella Vista!"),
    ]);
    let worker = Worker::start(&server, &fake, &llm);
    server.wait_for_worker_registration().await;
    server.dispatch("bella-vista", "vanishing-room").await;
    let rooms = livekit_api::services::room::RoomClient::with_api_key(
        &server.http_url(),
        "devkey",
        "secret",
    );
    rooms
        .delete_room("vanishing-room")
        .await
        .expect("delete_room");
    server
        .wait_for_log("the job's end", Duration::from_secs(15), |log| {
            log.lines().any(|l| l.contains("job ended"))
        })
        .await;
    // the slot is free: the next caller is greeted
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "after-room",
            identity: "caller",
            wav_in: None,
            speak_after: 1.0,
            duration: 6.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard = caller.finish(Duration::from_secs(30)).await;
    let texts = format!("{}", heard["transcriptions"]);
    assert!(texts.contains("Welcome to Bella Vista!"), "{texts}");
    assert!(worker.stop().await.is_empty());
}
