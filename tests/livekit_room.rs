//! Our Rust room participant against a real livekit-server (v1.13.5, `--dev`, 127.0.0.1 only)
//! with the official Python SDK (`tests/livekit/caller.py`) as the caller: audio both ways,
//! text streams and attributes, and the caller leaving. One server per test on a free port,
//! stopped by a guard even when the test panics.
//!
//! Tools come from `scripts/livekit/install.sh` (server binary and the venv's python);
//! speech from `espeak-ng`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bella_vista::io::livekit::room::{
    DisconnectReason, Room, RoomError, RoomEvent, RoomEvents, RoomOptions,
};
use bella_vista::voice::audio::AudioFrame;
use bella_vista::voice::audio_io::{AudioInput, AudioOutput};
use common::livekit::{Caller, CallerPlan, LiveKit};
use livekit_api::access_token::{AccessToken, VideoGrants};

// ---- tools and the server ------------------------------------------------------------------

fn token(identity: &str, room: &str) -> String {
    AccessToken::with_api_key("devkey", "secret")
        .with_identity(identity)
        .with_name(identity)
        .with_kind("agent")
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_owned(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            ..Default::default()
        })
        .to_jwt()
        .expect("token")
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---- the Python caller ---------------------------------------------------------------------

fn speech_wav(server: &LiveKit, text: &str) -> PathBuf {
    let path = server.path("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed");
    path
}

// ---- helpers -------------------------------------------------------------------------------

async fn join(server: &LiveKit, room: &str, identity: &str) -> (Room, RoomEvents) {
    let started = Instant::now();
    let (room, events) = Room::connect(
        &server.url(),
        &token(identity, room),
        RoomOptions::default(),
    )
    .await
    .expect("join the room");
    eprintln!(
        "{identity} joined in {:?} (room says {:?})",
        started.elapsed(),
        room.joined_in()
    );
    (room, events)
}

/// Waits for an event matching `want`, returning every event seen until then.
async fn wait_event(
    events: &mut RoomEvents,
    timeout: Duration,
    want: impl Fn(&RoomEvent) -> bool,
) -> Vec<RoomEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                let done = want(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("events ended; saw {seen:?}"),
            Err(_) => panic!("timed out; saw {seen:?}"),
        }
    }
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

fn tone_frame(index: usize) -> AudioFrame {
    let samples = (0..960)
        .map(|i| {
            let t = (index * 960 + i) as f64 / 48_000.0;
            (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    AudioFrame::mono(samples, 48_000)
}

fn tracks_of<'a>(json: &'a serde_json::Value, identity: &str) -> Vec<&'a serde_json::Value> {
    json["tracks"]
        .as_array()
        .map(|tracks| {
            tracks
                .iter()
                .filter(|t| t["participant"] == identity)
                .collect()
        })
        .unwrap_or_default()
}

// ---- the tests -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_agents_tone() {
    init_logs();
    let server = LiveKit::start();
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "tone",
            identity: "caller",
            wav_in: None,
            speak_after: 1.0,
            duration: 9.0,
            agent_name: None,
        },
    );
    let (room, mut events) = join(&server, "tone", "agent").await;
    wait_event(
        &mut events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::ParticipantConnected { identity, .. } if identity == "caller"),
    )
    .await;

    let mut output = room
        .publish_audio("agent-voice")
        .await
        .expect("publish audio");
    assert_eq!(output.sample_rate(), 48_000);
    assert!(
        output.track_sid().starts_with("TR_"),
        "{}",
        output.track_sid()
    );
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for index in 0..150 {
        tick.tick().await;
        output
            .write(tone_frame(index))
            .await
            .expect("write a frame");
    }
    for _ in 0..25 {
        tick.tick().await;
        output
            .write(AudioFrame::silence(48_000, 1, Duration::from_millis(20)))
            .await
            .expect("write silence");
    }

    let json = caller.finish(Duration::from_secs(30)).await;
    room.disconnect().await;
    let after = output
        .write(AudioFrame::silence(48_000, 1, Duration::from_millis(20)))
        .await;
    assert!(after.is_err(), "writing after leaving the room must fail");
    let heard = tracks_of(&json, "agent");
    eprintln!("caller heard: {heard:?}");
    assert!(
        heard
            .iter()
            .any(|t| t["rms"].as_f64().unwrap_or(0.0) > 500.0
                && t["seconds"].as_f64().unwrap_or(0.0) > 2.5),
        "the caller did not hear the tone: {json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_hears_the_callers_speech() {
    init_logs();
    let server = LiveKit::start();
    let wav = speech_wav(
        &server,
        "Hello, I would like to order a margherita pizza and a glass of red wine, please.",
    );
    let (room, _events) = join(&server, "speech", "agent").await;
    let mut input = room.audio_input(None).await;
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "speech",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 1.0,
            duration: 9.0,
            agent_name: None,
        },
    );

    let mut samples = Vec::new();
    let mut loudest_window = 0.0_f64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, input.next_frame()).await {
        assert_eq!(frame.sample_rate(), 48_000);
        assert_eq!(frame.channels(), 1);
        samples.extend_from_slice(frame.samples());
        if samples.len() >= 48_000 / 5 {
            loudest_window = loudest_window.max(rms(&samples));
            samples.clear();
        }
    }
    eprintln!("loudest 200 ms window: RMS {loudest_window:.0}");
    assert!(
        loudest_window > 500.0,
        "no speech heard (loudest RMS {loudest_window:.0})"
    );
    room.disconnect().await;
    caller.finish(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcriptions_and_agent_state_reach_the_caller() {
    init_logs();
    let server = LiveKit::start();
    let caller = Caller::start_announcing_ready(
        &server,
        CallerPlan {
            room: "text",
            identity: "caller",
            wav_in: None,
            speak_after: 1.0,
            duration: 8.0,
            agent_name: None,
        },
    );
    let (room, mut events) = join(&server, "text", "agent").await;
    // The caller says when its own connection is up (an attribute, there when it appears
    // or set later), so data sent from now on reaches it.
    let ready = |e: &RoomEvent| match e {
        RoomEvent::ParticipantConnected {
            identity,
            attributes,
            ..
        } => identity == "caller" && attributes.contains_key("test.ready"),
        RoomEvent::AttributesChanged { identity, changed } => {
            identity == "caller" && changed.contains_key("test.ready")
        }
        _ => false,
    };
    wait_event(&mut events, Duration::from_secs(10), ready).await;

    for state in ["thinking", "speaking"] {
        room.set_attributes(HashMap::from([(
            "lk.agent.state".to_owned(),
            state.to_owned(),
        )]))
        .await
        .expect("set attributes");
    }
    let attributes = HashMap::from([
        ("lk.transcription_final".to_owned(), "true".to_owned()),
        ("lk.segment_id".to_owned(), "SG_1".to_owned()),
        ("lk.transcribed_track_id".to_owned(), "TR_agent".to_owned()),
    ]);
    room.send_text_stream("lk.transcription", "Welcome to Bella Vista.", attributes)
        .await
        .expect("send text stream");
    let long = "Margherita, marinara, quattro formaggi. ".repeat(1_000);
    room.send_text_stream("lk.transcription", &long, HashMap::new())
        .await
        .expect("send a long text stream");
    room.set_attributes(HashMap::from([(
        "lk.agent.state".to_owned(),
        "listening".to_owned(),
    )]))
    .await
    .expect("set attributes");

    let json = caller.finish(Duration::from_secs(30)).await;
    room.disconnect().await;
    let states: Vec<_> = json["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["changed"]["lk.agent.state"].as_str())
        .collect();
    assert_eq!(states, ["thinking", "speaking", "listening"], "{json}");
    let transcriptions = json["transcriptions"].as_array().expect("transcriptions");
    assert!(
        transcriptions
            .iter()
            .any(|t| t["text"] == "Welcome to Bella Vista."
                && t["identity"] == "agent"
                && t["attributes"]["lk.transcription_final"] == "true"
                && t["attributes"]["lk.segment_id"] == "SG_1"),
        "{json}"
    );
    assert!(
        transcriptions.iter().any(|t| t["text"] == long.as_str()),
        "long text missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_leaving_ends_the_input() {
    init_logs();
    let server = LiveKit::start();
    let wav = speech_wav(&server, "Just a quick question, then I hang up.");
    let (room, mut events) = join(&server, "leave", "agent").await;
    let mut input = room.audio_input(Some("caller")).await;
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "leave",
            identity: "caller",
            wav_in: Some(&wav),
            speak_after: 1.0,
            duration: 6.0,
            agent_name: None,
        },
    );

    let mut frames = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while input.next_frame().await.is_some() {
            frames += 1;
        }
    })
    .await;
    assert!(ended.is_ok(), "the input did not end after the caller left");
    assert!(frames > 50, "only {frames} frames before the end");
    let seen = wait_event(
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, RoomEvent::ParticipantDisconnected { identity } if identity == "caller"),
    )
    .await;
    assert!(
        seen.iter().any(
            |e| matches!(e, RoomEvent::TrackSubscribed { identity, .. } if identity == "caller")
        )
    );
    caller.finish(Duration::from_secs(30)).await;

    room.disconnect().await;
    wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, RoomEvent::Disconnected { .. })
    })
    .await;
    assert!(events.recv().await.is_none(), "no event after Disconnected");
    assert!(!room.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_participant_receives_text_streams_and_attributes() {
    init_logs();
    let server = LiveKit::start();
    let (listener, mut listener_events) = join(&server, "rust", "listener").await;
    let (agent, _agent_events) = join(&server, "rust", "agent").await;
    wait_event(
        &mut listener_events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::ParticipantConnected { identity, .. } if identity == "agent"),
    )
    .await;

    agent
        .set_attributes(HashMap::from([(
            "lk.agent.state".to_owned(),
            "listening".to_owned(),
        )]))
        .await
        .expect("set attributes");
    let seen = wait_event(
        &mut listener_events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::AttributesChanged { identity, .. } if identity == "agent"),
    )
    .await;
    assert!(seen.iter().any(|e| matches!(e,
        RoomEvent::AttributesChanged { changed, .. } if changed.get("lk.agent.state").map(String::as_str) == Some("listening"))));

    let attributes = HashMap::from([("lk.transcription_final".to_owned(), "false".to_owned())]);
    agent
        .send_text_stream(
            "lk.transcription",
            "Una pizza, per favore.",
            attributes.clone(),
        )
        .await
        .expect("send text stream");
    let seen = wait_event(&mut listener_events, Duration::from_secs(10), |e| {
        matches!(e, RoomEvent::TextReceived { .. })
    })
    .await;
    assert_eq!(
        seen.last(),
        Some(&RoomEvent::TextReceived {
            identity: "agent".into(),
            topic: "lk.transcription".into(),
            text: "Una pizza, per favore.".into(),
            attributes,
        })
    );

    agent.disconnect().await;
    wait_event(
        &mut listener_events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::ParticipantDisconnected { identity } if identity == "agent"),
    )
    .await;
    listener.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_the_wrong_secret_is_refused() {
    init_logs();
    let server = LiveKit::start();
    let forged = AccessToken::with_api_key("devkey", "not-the-secret")
        .with_identity("intruder")
        .with_grants(VideoGrants {
            room_join: true,
            room: "closed".to_owned(),
            ..Default::default()
        })
        .to_jwt()
        .expect("token");
    let started = Instant::now();
    let refused = Room::connect(&server.url(), &forged, RoomOptions::default()).await;
    assert!(
        matches!(refused, Err(RoomError::Signal(_))),
        "expected a signalling error, got {refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_server_disconnects_the_room() {
    init_logs();
    let server = LiveKit::start();
    let (room, mut events) = join(&server, "crash", "agent").await;
    let mut input = room.audio_input(None).await;

    // SIGKILL: no leave message, the WebSocket just drops; resuming cannot succeed.
    let pid = std::fs::read_to_string(server.path("livekit.pid")).expect("server pid");
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let started = Instant::now();
    let seen = wait_event(&mut events, Duration::from_secs(15), |e| {
        matches!(e, RoomEvent::Disconnected { .. })
    })
    .await;
    eprintln!(
        "disconnected after {:?}: {:?}",
        started.elapsed(),
        seen.last()
    );
    assert!(matches!(
        seen.last(),
        Some(RoomEvent::Disconnected {
            reason: DisconnectReason::SignalLost
        })
    ));
    assert!(input.next_frame().await.is_none());
    assert!(!room.is_connected());
    assert!(matches!(
        room.send_text_stream("t", "late", HashMap::new()).await,
        Err(RoomError::Disconnected)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_signalling_connection_is_resumed() {
    init_logs();
    let server = LiveKit::start();
    let (listener, mut listener_events) = join(&server, "resume", "listener").await;
    let (agent, mut agent_events) = join(&server, "resume", "agent").await;
    wait_event(
        &mut listener_events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::ParticipantConnected { identity, .. } if identity == "agent"),
    )
    .await;

    // Destroy every TCP connection to the server's port (`ss -K`, which needs root): both
    // rooms lose their WebSocket at once, with no leave, while the server keeps their
    // sessions; both must resume.
    let filter = format!("dport = :{}", server.port);
    let killed = Command::new("ss").args(["-K", "-t", &filter]).status();
    if !killed.is_ok_and(|status| status.success()) {
        eprintln!("skipped: `ss -K` is not available here");
        return;
    }
    for events in [&mut agent_events, &mut listener_events] {
        let seen = wait_event(events, Duration::from_secs(10), |e| {
            matches!(e, RoomEvent::Reconnected)
        })
        .await;
        assert!(
            seen.iter().any(|e| matches!(e, RoomEvent::Reconnecting)),
            "no reconnecting before reconnected: {seen:?}"
        );
    }
    assert!(agent.is_connected() && listener.is_connected());
    agent
        .set_attributes(HashMap::from([("k".to_owned(), "after".to_owned())]))
        .await
        .expect("attributes after the resume");
    agent
        .send_text_stream("t", "still here", HashMap::new())
        .await
        .expect("text after the resume");
    let seen = wait_event(
        &mut listener_events,
        Duration::from_secs(10),
        |e| matches!(e, RoomEvent::TextReceived { text, .. } if text == "still here"),
    )
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, RoomEvent::AttributesChanged { changed, .. }
            if changed.get("k").map(String::as_str) == Some("after"))),
        "{seen:?}"
    );
    while let Some(event) = agent_events.try_recv() {
        assert!(
            !matches!(event, RoomEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    agent.disconnect().await;
    listener.disconnect().await;
}
