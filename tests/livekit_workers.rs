//! Two `bella-vista start` worker processes (the real binary) against one real
//! livekit-server: both register, four dispatched calls spread two and two over them (each
//! worker takes `max_jobs = 2`), every caller is greeted; SIGTERM to one worker lets its
//! calls run until their callers leave, then it exits with status 0, and a new dispatch
//! goes to the other worker. Also: a wrong API secret ends `start` at once with a one-line
//! error about the credentials.
//!
//! The callers are the official Python SDK (`tests/livekit/caller.py`), silent; the model,
//! STT and TTS are the fake OpenAI server of `tests/common/openai_server.rs` (the model
//! only ever greets). Worker logs (`RUST_LOG=info`) go to files under
//! `$CARGO_TARGET_TMPDIR/livekit_workers/`, kept after the test for inspection; worker
//! processes are killed and the server stopped by guards, also when a test fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bella_vista::io::wav::write_wav;
use bella_vista::voice::audio::AudioFrame;
use common::livekit::{Caller, CallerPlan, LiveKit};
use common::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
use common::worker::{Worker, field, test_dir, wait_until, worker_command, write_config};
use serde_json::Value;

/// What the (fake) model answers to every request: the greeting.
const GREETING: &str = "Hello, this is Bella Vista!";
/// Calls one worker takes at once.
const MAX_JOBS: usize = 2;
/// How long a worker lets running calls finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long each of the first four callers stays in its room (after it connected).
const CALL_SECONDS: f32 = 10.0;
/// A call that ran until its caller left lasts at least this long (the agent joins 0.5-2 s
/// after the caller connected); one cut at SIGTERM (about 2 s in) would last about 3 s.
const WHOLE_CALL_SECONDS: f64 = 5.5;

/// A worker with this test's settings.
fn start_worker(name: &str, dir: &Path, server: &LiveKit, openai: &str) -> Worker {
    Worker::start(name, dir, &config(dir), &server.url(), openai)
}

/// The config with `max_jobs = MAX_JOBS` and `drain_timeout_ms = DRAIN_TIMEOUT`.
fn config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        &[
            ("max_jobs = 16", format!("max_jobs = {MAX_JOBS}")),
            (
                "drain_timeout_ms = 300000",
                format!("drain_timeout_ms = {}", DRAIN_TIMEOUT.as_millis()),
            ),
        ],
    )
}

/// Rooms of the jobs `worker` started (from its "job started" lines).
fn rooms_of(worker: &Worker) -> BTreeSet<String> {
    worker
        .lines_with("job started")
        .iter()
        .filter_map(|l| field(l, "room").map(str::to_owned))
        .collect()
}

/// Job ids `worker` reported ended (`job finished` or `job failed`).
fn jobs_ended(worker: &Worker) -> usize {
    let mut lines = worker.lines_with("job finished");
    lines.extend(worker.lines_with("job failed"));
    lines
        .iter()
        .filter_map(|l| field(l, "job_id").map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .len()
}

/// The length of each call that ended, in seconds (the voice call's `call ended`).
fn calls_ended(worker: &Worker) -> Vec<f64> {
    worker
        .lines_with(": call ended ")
        .iter()
        .filter_map(|l| field(l, "duration_s")?.parse().ok())
        .collect()
}

/// Half a second of digital silence: the callers publish a microphone and say nothing.
fn silent_wav(server: &LiveKit) -> PathBuf {
    let path = server.path("silence.wav");
    write_wav(
        &path,
        &AudioFrame::silence(48_000, 1, Duration::from_millis(500)),
    )
    .expect("wav");
    path
}

fn start_caller(server: &LiveKit, room: &str, wav: &Path, duration: f32) -> Caller {
    Caller::start(
        server,
        CallerPlan {
            room,
            identity: &format!("caller-{room}"),
            wav_in: Some(wav),
            speak_after: 0.5,
            duration,
            agent_name: Some("bella-vista"),
        },
    )
}

/// Checks that the caller in `room` was greeted by the agent (the greeting's transcription
/// and audio with energy) and that the agent stayed until the caller left. Returns the
/// agent's identity.
fn assert_greeted(room: &str, heard: &Value) -> String {
    let caller = format!("caller-{room}");
    let agent_texts: Vec<&str> = heard["transcriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["identity"].as_str() != Some(caller.as_str()))
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(
        agent_texts.contains(&GREETING),
        "{room}: no greeting transcription; heard {agent_texts:?}\n{heard:#}"
    );
    let agent_tracks: Vec<&Value> = heard["tracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["participant"].as_str() != Some(caller.as_str()))
        .collect();
    assert!(
        agent_tracks
            .iter()
            .any(|t| t["rms"].as_f64().unwrap_or(0.0) > 300.0),
        "{room}: no agent audio with energy: {agent_tracks:?}"
    );
    let agent = agent_tracks[0]["participant"]
        .as_str()
        .expect("agent identity")
        .to_owned();
    let left: Vec<&Value> = heard["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "participant_disconnected" && e["identity"] == agent.as_str())
        .collect();
    assert!(
        left.is_empty(),
        "{room}: the agent left before the caller did: {left:?}"
    );
    agent
}

/// Status and body of a GET.
async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_calls_and_one_drains_on_sigterm() {
    let dir = test_dir("livekit_workers", "two_workers");
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    for _ in 0..64 {
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(text_chunks(&[GREETING])),
        );
    }
    let mut a = start_worker("a", &dir, &server, &fake.base_url());
    let mut b = start_worker("b", &dir, &server, &fake.base_url());
    let registered = wait_until(Duration::from_secs(30), || a.registered() && b.registered()).await;
    assert!(
        registered,
        "workers did not register\n{}\n{}",
        a.tail(),
        b.tail()
    );

    // Four silent callers, each dispatching the agent into its own room.
    let wav = silent_wav(&server);
    let rooms = ["r1", "r2", "r3", "r4"];
    let started = Instant::now();
    let mut callers = Vec::new();
    for room in rooms {
        callers.push((room, start_caller(&server, room, &wav, CALL_SECONDS)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spread = wait_until(Duration::from_secs(30), || {
        rooms_of(&a).len() + rooms_of(&b).len() >= rooms.len()
    })
    .await;
    let (rooms_a, rooms_b) = (rooms_of(&a), rooms_of(&b));
    eprintln!(
        "jobs started {:.1} s after the first caller: a {rooms_a:?}, b {rooms_b:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(spread, "not all jobs started\n{}\n{}", a.tail(), b.tail());
    assert_eq!(
        (rooms_a.len(), rooms_b.len()),
        (MAX_JOBS, MAX_JOBS),
        "jobs did not spread 2/2\n{}\n{}",
        a.tail(),
        b.tail()
    );
    let all: BTreeSet<String> = rooms_a.union(&rooms_b).cloned().collect();
    assert_eq!(all, rooms.iter().map(|r| r.to_string()).collect());

    // Both are healthy for an orchestrator, and their metrics show their calls.
    let health_a = a
        .http_base()
        .unwrap_or_else(|| panic!("no endpoint\n{}", a.tail()));
    for worker in [&a, &b] {
        let base = worker.http_base().expect("health endpoint");
        assert_eq!(
            get(&format!("{base}/health")).await,
            (200, "registered\n".into())
        );
        let (status, metrics) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(&format!("bella_vista_calls_running {MAX_JOBS}")),
            "{metrics}"
        );
        assert!(metrics.contains("bella_vista_worker_load 0.7"), "{metrics}");
    }

    // SIGTERM to worker A while its two calls run: once every call's greeting is being
    // spoken (each asked the speech server for it).
    let speaking = wait_until(Duration::from_secs(30), || {
        fake.speech_texts().len() >= rooms.len()
    })
    .await;
    assert!(speaking, "greetings: {:?}", fake.speech_texts());
    assert!(
        a.exit_status().is_none(),
        "worker a ended early\n{}",
        a.tail()
    );
    let term = Instant::now();
    a.sigterm();
    // While it drains, it says so: an orchestrator sends it nothing new.
    let mut health = (0, String::new());
    for _ in 0..30 {
        health = get(&format!("{health_a}/health")).await;
        if health.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health, (503, "draining\n".into()), "{}", a.tail());
    eprintln!(
        "SIGTERM to worker a {:.1} s after the first caller",
        started.elapsed().as_secs_f64()
    );

    // Every caller finishes its call and was greeted by an agent that stayed.
    let mut heard = Vec::new();
    for (room, caller) in callers {
        heard.push((room, caller.finish(Duration::from_secs(60)).await));
    }
    let callers_done = term.elapsed();
    for (room, json) in &heard {
        let agent = assert_greeted(room, json);
        let seconds: f64 = json["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["participant"] == agent.as_str())
            .filter_map(|t| t["seconds"].as_f64())
            .sum();
        eprintln!(
            "{room} ({}): greeted by {agent}; {seconds:.1} s of agent audio received",
            if rooms_a.contains(*room) { "a" } else { "b" }
        );
        // The agent's track sends a frame every 20 ms (silence between replies) for as long
        // as the call runs: a call cut at SIGTERM (about 2 s in) would show far less.
        assert!(
            seconds > WHOLE_CALL_SECONDS,
            "{room}: only {seconds:.1} s of agent audio"
        );
    }

    // A finished both calls and then exited with status 0 within the drain
    // timeout.
    let exited = wait_until(DRAIN_TIMEOUT + Duration::from_secs(5), || {
        a.exit_status().is_some()
    })
    .await;
    let exit_after = term.elapsed();
    assert!(
        exited,
        "worker a still running {:.1} s after SIGTERM\n{}",
        exit_after.as_secs_f64(),
        a.tail()
    );
    let status = a.exit_status().expect("exited");
    eprintln!(
        "worker a: callers done {:.1} s after SIGTERM, exited {:.1} s after SIGTERM with {status}",
        callers_done.as_secs_f64(),
        exit_after.as_secs_f64()
    );
    assert!(
        status.success(),
        "worker a exited with {status}\n{}",
        a.tail()
    );
    assert!(
        exit_after < DRAIN_TIMEOUT,
        "worker a took {exit_after:?} to drain"
    );
    let log_a = a.log_text();
    assert!(log_a.contains("draining the worker"), "{}", a.tail());
    assert!(log_a.contains("worker stopped"), "{}", a.tail());
    assert!(!log_a.contains("drain timeout"), "{}", a.tail());
    assert!(!log_a.contains("aborting them"), "{}", a.tail());
    assert_eq!(jobs_ended(&a), MAX_JOBS, "{}", a.tail());
    // The drain waited for the calls: both of A's calls ran whole (the callers stayed
    // CALL_SECONDS after connecting; the agent joined about a second later) and ended
    // after SIGTERM, in the log's order.
    let calls = calls_ended(&a);
    assert_eq!(calls.len(), MAX_JOBS, "{}", a.tail());
    for seconds in &calls {
        assert!(
            *seconds > WHOLE_CALL_SECONDS,
            "a call of worker a lasted only {seconds} s\n{}",
            a.tail()
        );
    }
    let order: Vec<&str> = log_a
        .lines()
        .filter(|l| l.contains("draining the worker") || l.contains(": call ended "))
        .collect();
    assert!(
        order
            .first()
            .is_some_and(|l| l.contains("draining the worker")),
        "a call of worker a ended before SIGTERM: {order:#?}"
    );
    // Job outcomes: a job whose call ended normally is reported finished, even when the
    // server's termination (sent as the caller leaves) races the call's own end.
    let failed: Vec<&str> = log_a.lines().filter(|l| l.contains("job failed")).collect();
    assert!(failed.is_empty(), "worker a: {failed:#?}\n{}", a.tail());

    // B is free again once its callers left; a new dispatch goes to B.
    let b_free = wait_until(Duration::from_secs(20), || jobs_ended(&b) >= MAX_JOBS).await;
    assert!(b_free, "worker b's calls did not finish\n{}", b.tail());
    let caller = start_caller(&server, "r5", &wav, 6.0);
    let json = caller.finish(Duration::from_secs(60)).await;
    assert_greeted("r5", &json);
    assert!(
        rooms_of(&b).contains("r5"),
        "r5 not served by b\n{}",
        b.tail()
    );
    assert!(!rooms_of(&a).contains("r5"));
    assert!(b.exit_status().is_none(), "worker b ended\n{}", b.tail());
    eprintln!("r5 served by worker b; logs in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_ends_start_with_one_line() {
    let dir = test_dir("livekit_workers", "wrong_secret");
    let server = LiveKit::start();
    let config = config(&dir);
    let mut command =
        tokio::process::Command::from(worker_command(&config, &dir.join("orders.db")));
    command
        .env("LIVEKIT_URL", server.url())
        .env("LIVEKIT_API_KEY", "devkey")
        .env("LIVEKIT_API_SECRET", "not-the-secret")
        // Never contacted: the worker stops before any call.
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command.spawn().expect("start bella-vista");
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("bella-vista start ends by itself with a wrong secret")
        .expect("output");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "exit {} after {:.2} s; stderr: {stderr}",
        output.status,
        took.as_secs_f64()
    );
    assert!(!output.status.success(), "exit status {}", output.status);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains("credentials"), "{stderr}");
    assert!(
        !lines[0].contains("eyJ"),
        "the token is not printed: {stderr}"
    );
}

/// The worker's stderr while it cannot reach its server (`ws://127.0.0.1:9`, nothing
/// listens there), in `format`, RUST_LOG=info, no `NO_COLOR`: written to a file, as
/// `docker logs` or `2>file` would.
async fn log_of_an_unreachable_worker(dir: &Path, format: &str) -> (String, Option<String>) {
    let config = config(dir);
    let log = dir.join(format!("worker-{format}.log"));
    let mut command = worker_command(&config, &dir.join("orders.db"));
    command
        .args(["--log-format", format])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .env("LIVEKIT_URL", "ws://127.0.0.1:9")
        .env("LIVEKIT_API_KEY", "devkey")
        .env("LIVEKIT_API_SECRET", "super-secret-value")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("OPENAI_API_KEY", "sk-never-logged")
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("start bella-vista");
    let retried = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("cannot register"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(retried, "no retry logged:\n{text}");
    // Health while it has no server: 503, "connecting".
    let address = text.lines().find_map(|line| {
        if format == "json" {
            let value: Value = serde_json::from_str(line).ok()?;
            value["fields"]["address"].as_str().map(str::to_string)
        } else {
            line.contains("health and metrics on")
                .then(|| field(line, "address").map(str::to_string))
                .flatten()
        }
    });
    let health = match &address {
        Some(address) => Some(get(&format!("http://{address}/health")).await),
        None => None,
    };
    assert_eq!(
        health,
        Some((503, "connecting\n".to_string())),
        "health at {address:?}\n{text}"
    );
    child.kill().await.expect("kill");
    (text, address)
}

#[tokio::test]
async fn logs_are_plain_in_a_file_or_json_and_carry_no_secret() {
    let dir = test_dir("livekit_workers", "logs");
    let (text, _) = log_of_an_unreachable_worker(&dir, "text").await;
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    assert!(text.contains("WARN"), "{text}");

    let (json, _) = log_of_an_unreachable_worker(&dir, "json").await;
    let lines: Vec<Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines.len() >= 2, "{json}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "cannot register with the server"),
        "{json}"
    );
    for secret in ["super-secret-value", "sk-never-logged"] {
        assert!(
            !text.contains(secret) && !json.contains(secret),
            "{secret} logged"
        );
    }
}
