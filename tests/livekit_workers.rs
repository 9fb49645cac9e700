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
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bella_vista::io::wav::write_wav;
use bella_vista::voice::audio::AudioFrame;
use common::livekit::{Caller, CallerPlan, LiveKit};
use common::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test's files (configs, logs, databases), kept afterwards.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("livekit_workers")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A copy of `config/default.toml` with `max_jobs`, `drain_timeout_ms` and absolute paths
/// to the menu and prompts (the worker may run from any directory).
fn write_config(dir: &Path, max_jobs: usize, drain_timeout: Duration) -> PathBuf {
    let default = std::fs::read_to_string(repo().join("config/default.toml")).expect("default");
    let replacements = [
        ("max_jobs = 16", format!("max_jobs = {max_jobs}")),
        (
            "drain_timeout_ms = 300000",
            format!("drain_timeout_ms = {}", drain_timeout.as_millis()),
        ),
        (
            "menu = \"config/menu.toml\"",
            format!("menu = {:?}", repo().join("config/menu.toml")),
        ),
        (
            "prompts = \"prompts\"",
            format!("prompts = {:?}", repo().join("prompts")),
        ),
    ];
    let mut text = default;
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "config/default.toml no longer has `{from}`"
        );
        text = text.replace(from, &to);
    }
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `text` without ANSI escape sequences (in case the log is coloured).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `key=` in a log line, without quotes.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = rest.split_whitespace().next()?;
    Some(value.trim_matches('"'))
}

/// A `bella-vista start` process with its log in a file; killed when dropped.
struct Worker {
    name: &'static str,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Worker {
    fn start(name: &'static str, dir: &Path, server: &LiveKit, openai: &str) -> Self {
        let config = write_config(dir, MAX_JOBS, DRAIN_TIMEOUT);
        let log = dir.join(format!("worker-{name}.log"));
        let child = worker_command(&config, &dir.join(format!("orders-{name}.db")))
            .env("LIVEKIT_URL", server.url())
            .env("LIVEKIT_API_KEY", "devkey")
            .env("LIVEKIT_API_SECRET", "secret")
            .env("OPENAI_BASE_URL", openai)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("start bella-vista");
        Worker {
            name,
            child,
            log,
            exited: None,
        }
    }

    fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Rooms of the jobs this worker started (from its "job started" lines).
    fn rooms(&self) -> BTreeSet<String> {
        self.lines_with("job started")
            .iter()
            .filter_map(|l| field(l, "room").map(str::to_owned))
            .collect()
    }

    /// Job ids this worker reported ended (`job finished` or `job failed`).
    fn jobs_ended(&self) -> usize {
        let mut lines = self.lines_with("job finished");
        lines.extend(self.lines_with("job failed"));
        lines
            .iter()
            .filter_map(|l| field(l, "job_id").map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// The length of each call that ended, in seconds (the voice call's `call ended`).
    fn calls_ended(&self) -> Vec<f64> {
        self.lines_with(": call ended ")
            .iter()
            .filter_map(|l| field(l, "duration_s")?.parse().ok())
            .collect()
    }

    fn registered(&self) -> bool {
        !self.lines_with("worker registered").is_empty()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// The end of the log, for failure messages.
    fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- worker {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `bella-vista --config CONFIG --orders-db DB start`, with a clean environment for the
/// settings the test controls.
fn worker_command(config: &Path, db: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bella-vista"));
    command
        .arg("--config")
        .arg(config)
        .arg("--orders-db")
        .arg(db)
        .arg("start")
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("BELLA_VISTA_CONFIG")
        .env_remove("BELLA_VISTA_MODEL")
        .env_remove("BELLA_VISTA_ORDERS_DB")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Polls `done` every 100 ms until it holds or `limit` passes; whether it held.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_calls_and_one_drains_on_sigterm() {
    let dir = test_dir("two_workers");
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    for _ in 0..64 {
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(text_chunks(&[GREETING])),
        );
    }
    let mut a = Worker::start("a", &dir, &server, &fake.base_url());
    let mut b = Worker::start("b", &dir, &server, &fake.base_url());
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
        a.rooms().len() + b.rooms().len() >= rooms.len()
    })
    .await;
    let (rooms_a, rooms_b) = (a.rooms(), b.rooms());
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

    // SIGTERM to worker A while its two calls run (greetings are under way).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        a.exit_status().is_none(),
        "worker a ended early\n{}",
        a.tail()
    );
    let term = Instant::now();
    a.sigterm();
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
    assert_eq!(a.jobs_ended(), MAX_JOBS, "{}", a.tail());
    // The drain waited for the calls: both of A's calls ran whole (the callers stayed
    // CALL_SECONDS after connecting; the agent joined about a second later) and ended
    // after SIGTERM, in the log's order.
    let calls = a.calls_ended();
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
    let b_free = wait_until(Duration::from_secs(20), || b.jobs_ended() >= MAX_JOBS).await;
    assert!(b_free, "worker b's calls did not finish\n{}", b.tail());
    let caller = start_caller(&server, "r5", &wav, 6.0);
    let json = caller.finish(Duration::from_secs(60)).await;
    assert_greeted("r5", &json);
    assert!(b.rooms().contains("r5"), "r5 not served by b\n{}", b.tail());
    assert!(!a.rooms().contains("r5"));
    assert!(b.exit_status().is_none(), "worker b ended\n{}", b.tail());
    eprintln!("r5 served by worker b; logs in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_ends_start_with_one_line() {
    let dir = test_dir("wrong_secret");
    let server = LiveKit::start();
    let config = write_config(&dir, MAX_JOBS, DRAIN_TIMEOUT);
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
