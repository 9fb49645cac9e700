//! The LiveKit benchmark: one `bella-vista start` worker process (the release binary)
//! answering K concurrent calls through a real livekit-server, each caller being the
//! official Python SDK (`tests/livekit/caller.py`) speaking espeak-ng utterances with pauses.
//! Providers are instant: a fake OpenAI-compatible server in this process answers
//! transcriptions with a fixed sentence, chat completions with a short text, and speech
//! with a tone (60 ms per character).
//!
//! ```text
//! cargo bench --bench livekit                   # K = 10 callers, 6 utterances each (~1 min)
//! cargo bench --bench livekit -- --quick        # K = 4 callers, 3 utterances each
//! cargo bench --bench livekit -- --callers 16   # another K
//! cargo bench --bench livekit -- --no-dtx       # callers publish without DTX
//! ```
//!
//! It measures:
//! - the worker process's CPU (utime + stime from `/proc/PID/stat`, sampled every 100 ms)
//!   while all K calls run, as cores per concurrent call, and over the whole run per second
//!   of call;
//! - its memory: peak `VmRSS` while the calls run over the idle baseline, / K;
//! - the latency from the caller's last word to the agent's first audio at the caller: the
//!   caller's WAV timeline says when each utterance ends, and the caller's recording of
//!   what it heard (one timeline from the script's start) shows when the agent's tone
//!   starts; median and p99 over all turns, also minus the configured endpointing wait;
//! - the same latency as the worker sees it (its per-turn `turn` log lines);
//! - what else ran on the same cores: the Python callers, livekit-server, and this process
//!   (the fake OpenAI server), and the machine's total CPU use.
//!
//! Prints a table and writes every figure, with the machine and the commit, to
//! `target/bench-livekit.json`. Needs what the LiveKit tests need
//! (`scripts/livekit/install.sh`) and espeak-ng. See `benches/README.md`.

#[allow(dead_code)]
#[path = "../tests/common/livekit.rs"]
mod livekit;
#[allow(dead_code)]
#[path = "../tests/common/openai_server.rs"]
mod openai_server;
#[allow(dead_code)]
#[path = "../tests/common/speech.rs"]
mod speech;

#[path = "common/machine.rs"]
mod machine;
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bella_vista::config::Config;
use bella_vista::io::wav::{read_wav, write_wav};
use bella_vista::voice::audio::AudioFrame;
use livekit::LiveKit;
use openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
use procfs::{clock_tick, machine_ticks, proc_status_kib, proc_ticks};
use serde_json::{Value, json};
use speech::{concat_with_pauses_marked, espeak_to_frame};
use stats::{Stats, round};

/// What the callers say, in order (the first `utterances` of them).
const LINES: [&str; 6] = [
    "I would like to order please",
    "Two bruschetta and a tiramisu",
    "Can I pay by card",
    "With a fifteen percent tip",
    "Yes that is all correct",
    "Thank you very much goodbye",
];
/// What speech-to-text returns for every utterance: a sentence, so endpointing commits
/// after `min_delay_ms`, not `max_delay_ms`.
const TRANSCRIPT: &str = "I would like to order.";
/// What the model answers to every request (the greeting too): 17 characters, about 1 s of
/// tone.
const REPLY: &str = "Certainly, noted.";
/// Silence before the first utterance: the agent joins and greets first.
const SPEAK_AFTER: Duration = Duration::from_secs(6);
/// Silence after each utterance: the agent's reply (endpointing, ~1 s of tone) and spare.
const PAUSE: Duration = Duration::from_millis(3500);
/// Time between two callers' starts, so their turns do not all fall together.
const STAGGER: Duration = Duration::from_millis(300);
/// Callers and utterances per caller: full run, `--quick`.
const CALLERS: (usize, usize) = (10, 4);
const UTTERANCES: (usize, usize) = (6, 3);
/// A sample of the caller's recording louder than this starts the agent's speech (the
/// tone peaks at -12 dBFS, about 8200).
const ONSET_LEVEL: i16 = 2000;
/// livekit-server's default `agent.target_load`: it sends no job to a worker whose reported
/// load is at or above it (`pkg/agent/config.go`, `JobRequestAffinity`).
const SERVER_TARGET_LOAD: f64 = 0.7;
/// Sampling period of /proc.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// LiveKit's published figure for its Python worker: about 4 cores for 25-30 sessions.
const LIVEKIT_CORES: f64 = 4.0;
const LIVEKIT_SESSIONS: (f64, f64) = (25.0, 30.0);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the JSON report goes: `target/bench-livekit.json` (`bench-livekit-no-dtx.json`
/// with `--no-dtx`), or under `CARGO_TARGET_DIR`.
fn report_path(no_dtx: bool) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join(if no_dtx {
        "bench-livekit-no-dtx.json"
    } else {
        "bench-livekit.json"
    })
}

// ---- the worker ----------------------------------------------------------------------------

/// A copy of `config/default.toml` with enough jobs for K calls, a short drain and absolute
/// paths.
fn write_config(dir: &Path, max_jobs: usize) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("config/default.toml")).expect("config");
    let replacements = [
        ("max_jobs = 16", format!("max_jobs = {max_jobs}")),
        (
            "drain_timeout_ms = 300000",
            "drain_timeout_ms = 10000".into(),
        ),
        // The Python callers share the machine and keep its CPU near 100 %: a worker that
        // measured the machine would say it is full after a few calls and get no more.
        ("cpu_full = 0.9", "cpu_full = 0".into()),
        (
            "menu = \"config/menu.toml\"",
            format!("menu = {:?}", repo().join("config/menu.toml")),
        ),
        (
            "prompts = \"prompts\"",
            format!("prompts = {:?}", repo().join("prompts")),
        ),
    ];
    for (from, to) in replacements {
        assert!(text.contains(from), "config/default.toml has no `{from}`");
        text = text.replace(from, &to);
    }
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The worker process; killed when dropped.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, server: &LiveKit, openai: &str, max_jobs: usize) -> Self {
        let config = write_config(dir, max_jobs);
        let log = dir.join("worker.log");
        let child = Command::new(env!("CARGO_BIN_EXE_bella-vista"))
            .arg("--config")
            .arg(&config)
            .arg("--orders-db")
            .arg(dir.join("orders.db"))
            .arg("start")
            .current_dir(repo())
            .env("LIVEKIT_URL", server.url())
            .env("LIVEKIT_API_KEY", "devkey")
            .env("LIVEKIT_API_SECRET", "secret")
            .env("OPENAI_BASE_URL", openai)
            .env("RUST_LOG", "warn,bella_vista=info")
            .env("NO_COLOR", "1")
            .env_remove("OPENAI_API_KEY")
            .env_remove("BELLA_VISTA_CONFIG")
            .env_remove("BELLA_VISTA_MODEL")
            .env_remove("BELLA_VISTA_ORDERS_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("start bella-vista");
        Worker { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 30 s) until the worker logs that it registered with the server.
    async fn wait_registered(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains("worker registered") {
            assert!(
                Instant::now() < deadline,
                "the worker did not register; log: {}",
                self.log_text()
            );
            assert!(
                matches!(self.child.try_wait(), Ok(None)),
                "the worker exited; log: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (jobs started, jobs ended) so far, from the log.
    fn job_counts(&self) -> (usize, usize) {
        job_counts(&self.log_text())
    }

    /// SIGTERM, then up to `limit` for the exit; killed after that.
    fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn job_counts(log: &str) -> (usize, usize) {
    let driver = |l: &&str| l.contains("worker::driver");
    let started = log
        .lines()
        .filter(driver)
        .filter(|l| l.contains("job started"))
        .count();
    let ended = log
        .lines()
        .filter(driver)
        .filter(|l| l.contains("job finished") || l.contains("job failed"))
        .count();
    (started, ended)
}

// ---- the callers -----------------------------------------------------------------------------

/// One caller.py process; killed when dropped.
struct CallerProcess {
    room: String,
    child: tokio::process::Child,
    json: PathBuf,
    heard: PathBuf,
    log: PathBuf,
}

fn start_caller(
    server: &LiveKit,
    script: &Path,
    dir: &Path,
    index: usize,
    wav: &Path,
    duration: f64,
) -> CallerProcess {
    let room = format!("bench-{index:02}");
    let json = dir.join(format!("{room}.json"));
    let heard = dir.join(format!("{room}-heard.wav"));
    let log = dir.join(format!("{room}.log"));
    let child = tokio::process::Command::new(&livekit::tools().1)
        .arg(script)
        .args(["--url", &server.url(), "--room", &room])
        .args(["--identity", &format!("caller-{index:02}")])
        .args(["--agent-name", "bella-vista"])
        .arg("--wav-in")
        .arg(wav)
        .args([
            "--speak-after",
            &format!("{:.3}", SPEAK_AFTER.as_secs_f64()),
        ])
        .args(["--duration", &format!("{duration:.3}")])
        .arg("--json-out")
        .arg(&json)
        .arg("--wav-out")
        .arg(&heard)
        .env("PYTHONWARNINGS", "ignore")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("caller log"))
        .kill_on_drop(true)
        .spawn()
        .expect("start caller.py");
    CallerProcess {
        room,
        child,
        json,
        heard,
        log,
    }
}

/// `tests/livekit/caller.py`, or with `no_dtx` a copy of it in `dir` that publishes its
/// microphone with `dtx=False`.
fn caller_script(dir: &Path, no_dtx: bool) -> PathBuf {
    let original = repo().join("tests/livekit/caller.py");
    if !no_dtx {
        return original;
    }
    let text = std::fs::read_to_string(&original).expect("read caller.py");
    let from = "rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)";
    assert!(
        text.contains(from),
        "caller.py no longer publishes with `{from}`; --no-dtx needs updating"
    );
    let to = "rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=False)";
    let path = dir.join("caller_no_dtx.py");
    std::fs::write(&path, text.replace(from, to)).expect("write caller_no_dtx.py");
    path
}

// ---- sampling --------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Sample {
    /// Seconds since the benchmark's start.
    t: f64,
    worker_ticks: u64,
    worker_rss_kib: u64,
    /// Sum over the callers of their last seen CPU ticks (exited callers keep their last).
    callers_ticks: u64,
    server_ticks: u64,
    bench_ticks: u64,
    machine: (u64, u64),
    /// Calls running in the worker (jobs started - jobs ended, from its log).
    active_calls: usize,
}

struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    callers: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(t0: Instant, worker: u32, worker_log: PathBuf, server: Option<u32>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let callers: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, callers, stop) = (samples.clone(), callers.clone(), stop.clone());
            std::thread::spawn(move || {
                let me = std::process::id();
                let mut last_caller: HashMap<u32, u64> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    for pid in lock(&callers).iter() {
                        if let Some(ticks) = proc_ticks(*pid) {
                            last_caller.insert(*pid, ticks);
                        }
                    }
                    let log = std::fs::read_to_string(&worker_log).unwrap_or_default();
                    let (started, ended) = job_counts(&log);
                    let sample = Sample {
                        t: t0.elapsed().as_secs_f64(),
                        worker_ticks: proc_ticks(worker).unwrap_or(0),
                        worker_rss_kib: proc_status_kib(worker, "VmRSS").unwrap_or(0),
                        callers_ticks: last_caller.values().sum(),
                        server_ticks: server.and_then(proc_ticks).unwrap_or(0),
                        bench_ticks: proc_ticks(me).unwrap_or(0),
                        machine: machine_ticks(),
                        active_calls: started.saturating_sub(ended),
                    };
                    lock(&samples).push(sample);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        Sampler {
            samples,
            callers,
            stop,
            thread: Some(thread),
        }
    }

    fn add_caller(&self, pid: u32) {
        lock(&self.callers).push(pid);
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.samples).clone()
    }
}

/// CPU use between two samples, in cores.
struct Usage {
    seconds: f64,
    worker: f64,
    callers: f64,
    server: f64,
    bench: f64,
    machine_busy: f64,
}

fn usage(a: &Sample, b: &Sample, tick: f64, nproc: f64) -> Usage {
    let seconds = b.t - a.t;
    let cores = |x: u64, y: u64| y.saturating_sub(x) as f64 / tick / seconds;
    let all = b.machine.0.saturating_sub(a.machine.0) as f64;
    let idle = b.machine.1.saturating_sub(a.machine.1) as f64;
    Usage {
        seconds,
        worker: cores(a.worker_ticks, b.worker_ticks),
        callers: cores(a.callers_ticks, b.callers_ticks),
        server: cores(a.server_ticks, b.server_ticks),
        bench: cores(a.bench_ticks, b.bench_ticks),
        machine_busy: if all > 0.0 {
            nproc * (all - idle) / all
        } else {
            f64::NAN
        },
    }
}

impl Usage {
    fn to_json(&self) -> Value {
        json!({
            "seconds": round(self.seconds, 3),
            "worker_cores": round(self.worker, 4),
            "callers_cores": round(self.callers, 4),
            "livekit_server_cores": round(self.server, 4),
            "bench_process_cores": round(self.bench, 4),
            "machine_busy_cores": round(self.machine_busy, 3),
        })
    }
}

// ---- analysis ----------------------------------------------------------------------------

/// One caller turn as the caller experienced it.
#[derive(Debug, Clone)]
struct Turn {
    caller: usize,
    utterance: usize,
    /// Caller's last word -> agent's first audio at the caller, ms; None: no reply heard.
    latency_ms: Option<f64>,
    /// The agent was already audible while this utterance was spoken.
    overlapped: bool,
    /// The caller's last word -> the agent's `lk.agent.state` turning `thinking` (the turn
    /// committed), as the caller saw it, ms.
    to_thinking_ms: Option<f64>,
    /// `thinking` -> `speaking` (the reply's first frame written), ms.
    thinking_to_speaking_ms: Option<f64>,
    /// `speaking` -> the reply's first audio in the caller's recording, ms.
    speaking_to_heard_ms: Option<f64>,
}

/// Where the agent's speech starts in `audio` between `from` and `to` seconds: the first
/// sample louder than [`ONSET_LEVEL`] followed by 20 ms of tone-like energy.
fn onset(audio: &AudioFrame, from: f64, to: f64) -> Option<f64> {
    let rate = f64::from(audio.sample_rate());
    let samples = audio.samples();
    let start = ((from * rate).max(0.0) as usize).min(samples.len());
    let end = ((to * rate) as usize).min(samples.len());
    let window = (0.02 * rate) as usize;
    let mut i = start;
    while i < end {
        if samples[i].unsigned_abs() > ONSET_LEVEL.unsigned_abs() {
            let stop = (i + window).min(samples.len());
            let energy: f64 = samples[i..stop]
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>()
                / (stop - i).max(1) as f64;
            if energy.sqrt() > f64::from(ONSET_LEVEL) / 2.0 {
                return Some(i as f64 / rate);
            }
        }
        i += 1;
    }
    None
}

fn loudest(audio: &AudioFrame, from: f64, to: f64) -> i16 {
    let rate = f64::from(audio.sample_rate());
    let samples = audio.samples();
    let start = ((from * rate).max(0.0) as usize).min(samples.len());
    let end = ((to * rate).max(0.0) as usize).min(samples.len());
    samples[start..end]
        .iter()
        .map(|s| s.saturating_abs())
        .max()
        .unwrap_or(0)
}

/// The caller's turns: utterance ends on its WAV timeline (from its `speech_start` event)
/// against the agent's speech onsets in its recording.
fn caller_turns(
    index: usize,
    heard: &Value,
    recording: &AudioFrame,
    marks: &[(f64, f64)],
) -> Vec<Turn> {
    let speech_start = heard["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["event"] == "speech_start")
        .and_then(|e| e["t"].as_f64());
    let Some(speech_start) = speech_start else {
        eprintln!("caller {index}: no speech_start event; its turns are left out");
        return Vec::new();
    };
    let recording_end = recording.duration().as_secs_f64();
    let states: Vec<(f64, &str)> = heard["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["t"].as_f64()?, a["changed"]["lk.agent.state"].as_str()?)))
        .collect();
    let state_after = |state: &str, from: f64, to: f64| {
        states
            .iter()
            .find(|(t, s)| *s == state && *t >= from && *t < to)
            .map(|(t, _)| *t)
    };
    marks
        .iter()
        .enumerate()
        .map(|(j, &(start, end))| {
            let said_from = speech_start + start;
            let said_to = speech_start + end;
            let next = marks
                .get(j + 1)
                .map_or(recording_end, |&(next_start, _)| speech_start + next_start);
            let overlapped = loudest(recording, said_from, said_to) > ONSET_LEVEL;
            let heard_at = onset(recording, said_to, next);
            let latency_ms = heard_at.map(|t| 1000.0 * (t - said_to));
            let thinking = state_after("thinking", said_to, next);
            let speaking = thinking.and_then(|t| state_after("speaking", t, next));
            let ms = |a: Option<f64>, b: Option<f64>| Some(1000.0 * (b? - a?));
            Turn {
                caller: index,
                utterance: j,
                latency_ms,
                overlapped,
                to_thinking_ms: ms(Some(said_to), thinking),
                thinking_to_speaking_ms: ms(thinking, speaking),
                speaking_to_heard_ms: ms(speaking, heard_at),
            }
        })
        .collect()
}

/// A `Duration`'s `Debug` text (`512.3ms`, `1.2s`, `800µs`, `12ns`) in milliseconds.
fn debug_duration_ms(text: &str) -> Option<f64> {
    let units = [("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6), ("s", 1000.0)];
    units.iter().find_map(|(unit, scale)| {
        let number = text.strip_suffix(unit)?;
        number.parse::<f64>().ok().map(|n| n * scale)
    })
}

/// The worker's view of each caller turn, from its `turn` log lines: metric name -> values.
fn worker_turn_metrics(log: &str) -> BTreeMap<String, Vec<f64>> {
    let names = [
        "end_of_utterance_delay",
        "stt",
        "llm_first_token",
        "tts_first_byte",
        "commit_to_audio",
        "end_to_end",
    ];
    let mut metrics: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(" turn metrics=")) {
        if line.contains("caller=None") {
            continue; // the greeting
        }
        for name in names {
            let key = format!(" {name}: Some(");
            let Some(at) = line.find(&key) else { continue };
            let rest = &line[at + key.len()..];
            let Some(value) = rest.split(')').next().and_then(debug_duration_ms) else {
                continue;
            };
            metrics.entry(name.to_string()).or_default().push(value);
        }
    }
    metrics
}

// ---- the run -----------------------------------------------------------------------------

struct Plan {
    callers: usize,
    utterances: usize,
    quick: bool,
    /// `--no-dtx`: the callers publish without discontinuous transmission (a copy of
    /// caller.py with `dtx=False`); by default they use the SDK's default (DTX on).
    no_dtx: bool,
}

fn parse_args() -> Plan {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut callers = if quick { CALLERS.1 } else { CALLERS.0 };
    let mut utterances = if quick { UTTERANCES.1 } else { UTTERANCES.0 };
    let no_dtx = args.iter().any(|a| a == "--no-dtx");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--callers" => {
                callers = it.next().and_then(|v| v.parse().ok()).expect("--callers N");
            }
            "--utterances" => {
                utterances = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--utterances N")
            }
            _ => {}
        }
    }
    assert!(callers >= 1, "--callers must be at least 1");
    assert!(
        (1..=LINES.len()).contains(&utterances),
        "--utterances must be 1..={}",
        LINES.len()
    );
    Plan {
        callers,
        utterances,
        quick,
        no_dtx,
    }
}

fn main() {
    let plan = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(plan));
}

async fn run(plan: Plan) {
    let t0 = Instant::now();
    let machine = machine::machine();
    let nproc = machine["nproc"].as_f64().unwrap_or(1.0);
    let k = plan.callers;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-livekit");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    let speech = CallerSpeech::write(&dir, plan.utterances);
    let caller_script = caller_script(&dir, plan.no_dtx);
    let stack = Stack::start(&dir, k, plan.utterances).await;
    let sampler = Sampler::start(
        t0,
        stack.worker.pid(),
        stack.worker.log.clone(),
        stack.server_pid,
    );
    let idle = IdleWorker::measure(&stack.worker).await;
    let calls_from = t0.elapsed().as_secs_f64();
    let heard = run_callers(&stack, &caller_script, &dir, &speech, k, &sampler).await;
    let ended = stack.finish(&dir, k, sampler).await;

    let cpu = CpuFigures::of(&ended.samples, calls_from, k, clock_tick(), nproc);
    let callers = CallerFigures::of(&heard, &speech.marks);
    assert!(
        !callers.measured.is_empty(),
        "no caller turn got a reply; worker log:\n{}",
        ended.worker_log
    );
    let report = build_report(&plan, machine, &speech, &idle, &ended, &cpu, &callers);
    print_report(&report, &cpu.samples_summary);
    write_report(&report, &report_path(plan.no_dtx), &dir);
    if callers.missing > 0 || callers.greeted < k || ended.jobs_ended < k {
        eprintln!(
            "WARNING: {} turns without a reply heard, {}/{k} callers greeted, {}/{k} jobs ended",
            callers.missing, callers.greeted, ended.jobs_ended
        );
    }
}

/// The caller's speech: the utterances with pauses, written to `caller.wav`, and where
/// each one's sound is.
struct CallerSpeech {
    wav: PathBuf,
    /// (start, end) of each utterance's sound in the WAV, in seconds.
    marks: Vec<(f64, f64)>,
    /// How long each caller stays in the call.
    call_seconds: f64,
    utterances: usize,
}

impl CallerSpeech {
    fn write(dir: &Path, utterances: usize) -> Self {
        eprintln!("caller audio: espeak-ng ...");
        let parts: Vec<(AudioFrame, Duration)> = LINES[..utterances]
            .iter()
            .map(|line| (espeak_to_frame(line), PAUSE))
            .collect();
        let (speech, marks) = concat_with_pauses_marked(&parts);
        let marks = marks
            .iter()
            .map(|m| (m.start.as_secs_f64(), m.end.as_secs_f64()))
            .collect();
        let wav = dir.join("caller.wav");
        write_wav(&wav, &speech).expect("write caller wav");
        let call_seconds = SPEAK_AFTER.as_secs_f64() + speech.duration().as_secs_f64() + 0.5;
        CallerSpeech {
            wav,
            marks,
            call_seconds,
            utterances,
        }
    }
}

/// What the callers talk to: livekit-server, the fake OpenAI server, and the registered
/// worker.
struct Stack {
    server: LiveKit,
    server_pid: Option<u32>,
    /// Kept alive for the worker.
    _fake: FakeOpenAi,
    worker: Worker,
    max_jobs: usize,
    endpointing: Endpointing,
}

impl Stack {
    async fn start(dir: &Path, k: usize, utterances: usize) -> Self {
        eprintln!("livekit-server, fake OpenAI server, worker ...");
        let server = LiveKit::start();
        let server_pid = std::fs::read_to_string(server.path("livekit.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let fake = FakeOpenAi::start().await;
        let turns_expected = k * (utterances + 1);
        for _ in 0..(3 * turns_expected + 50) {
            fake.push(
                Endpoint::ChatCompletions,
                Response::Stream(text_chunks(&[REPLY])),
            );
            fake.push(
                Endpoint::Transcriptions,
                Response::Transcript(TRANSCRIPT.into()),
            );
        }
        // livekit-server (v1.13.5) offers jobs only to workers whose reported load (ours:
        // running / max_jobs) is under its target load, 0.7 by default: size max_jobs so K
        // calls stay under it.
        let max_jobs = ((k as f64 / SERVER_TARGET_LOAD).floor() as usize + 1).max(16);
        let mut worker = Worker::start(dir, &server, &fake.base_url(), max_jobs);
        worker.wait_registered().await;
        let config = Config::load(Some(&dir.join("worker.toml"))).expect("config");
        Stack {
            server,
            server_pid,
            _fake: fake,
            worker,
            max_jobs,
            endpointing: Endpointing::of(&config),
        }
    }

    /// Waits for the worker to see every caller leave, then stops everything and keeps
    /// what the figures need.
    async fn finish(self, dir: &Path, k: usize, sampler: Sampler) -> Ended {
        let Stack {
            server,
            mut worker,
            max_jobs,
            endpointing,
            ..
        } = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.job_counts().1 < k && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let peak_hwm_kib = proc_status_kib(worker.pid(), "VmHWM").unwrap_or(0);
        let samples = sampler.finish();
        let exit = worker.stop(Duration::from_secs(15));
        let worker_log = worker.log_text();
        let (jobs_started, jobs_ended) = job_counts(&worker_log);
        drop(worker);
        // Keep the server's log with the others.
        let _ = std::fs::copy(server.path("livekit.log"), dir.join("livekit-server.log"));
        drop(server);
        Ended {
            samples,
            peak_hwm_kib,
            exit,
            worker_log,
            jobs_started,
            jobs_ended,
            max_jobs,
            endpointing,
        }
    }
}

/// How long the pipeline waits after the last voiced frame before a turn commits.
struct Endpointing {
    min_silence_ms: f64,
    min_delay_ms: f64,
    /// Speech is reported ended min_silence after its last voiced frame, and a finished
    /// sentence is committed min_delay after that same frame: the wait is the larger.
    wait_ms: f64,
}

impl Endpointing {
    fn of(config: &Config) -> Self {
        let min_silence_ms = config.voice.speech.min_silence_ms as f64;
        let min_delay_ms = config.voice.endpointing.min_delay_ms as f64;
        Endpointing {
            min_silence_ms,
            min_delay_ms,
            wait_ms: min_silence_ms.max(min_delay_ms),
        }
    }
}

/// The registered worker doing nothing for 3 s: its memory, the baseline of the figures.
struct IdleWorker {
    rss_kib: u64,
    /// Whether its peak RSS could be reset, so VmHWM at the end is the peak during calls.
    hwm_reset: bool,
}

impl IdleWorker {
    async fn measure(worker: &Worker) -> Self {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_kib = proc_status_kib(worker.pid(), "VmRSS").unwrap_or(0);
        let hwm_reset = std::fs::write(format!("/proc/{}/clear_refs", worker.pid()), "5").is_ok();
        IdleWorker { rss_kib, hwm_reset }
    }
}

/// What one caller took home: its room, its JSON log and its recording of the agent.
struct Heard {
    room: String,
    json: Value,
    recording: AudioFrame,
}

/// Starts the K callers [`STAGGER`] apart and waits for all of them.
async fn run_callers(
    stack: &Stack,
    script: &Path,
    dir: &Path,
    speech: &CallerSpeech,
    k: usize,
    sampler: &Sampler,
) -> Vec<Heard> {
    eprintln!(
        "{k} callers x {} utterances, {:.1} s each, started {} ms apart ...",
        speech.utterances,
        speech.call_seconds,
        STAGGER.as_millis()
    );
    let mut callers = Vec::new();
    for index in 0..k {
        let caller = start_caller(
            &stack.server,
            script,
            dir,
            index,
            &speech.wav,
            speech.call_seconds,
        );
        if let Some(pid) = caller.child.id() {
            sampler.add_caller(pid);
        }
        callers.push(caller);
        tokio::time::sleep(STAGGER).await;
    }
    let mut heard = Vec::new();
    for mut caller in callers {
        let status = tokio::time::timeout(
            Duration::from_secs_f64(speech.call_seconds + 60.0),
            caller.child.wait(),
        )
        .await
        .expect("caller finishes")
        .expect("caller status");
        let log = std::fs::read_to_string(&caller.log).unwrap_or_default();
        assert!(status.success(), "caller {} failed: {log}", caller.room);
        let text = std::fs::read_to_string(&caller.json)
            .unwrap_or_else(|_| panic!("no JSON from caller {}; log: {log}", caller.room));
        heard.push(Heard {
            room: caller.room.clone(),
            json: serde_json::from_str(&text).expect("caller JSON"),
            recording: read_wav(&caller.heard).expect("caller recording"),
        });
    }
    heard
}

/// What is left when the calls are over and the worker stopped.
struct Ended {
    samples: Vec<Sample>,
    peak_hwm_kib: u64,
    exit: Option<std::process::ExitStatus>,
    worker_log: String,
    jobs_started: usize,
    jobs_ended: usize,
    max_jobs: usize,
    endpointing: Endpointing,
}

/// CPU and memory from the samples: idle, the steady window with all calls running, and
/// the whole run.
struct CpuFigures {
    tick: f64,
    idle: Option<Usage>,
    steady: Option<Usage>,
    whole: Option<Usage>,
    /// Calls in the steady window (K, or the most that ever ran at once).
    concurrent: usize,
    steady_peak_rss: u64,
    call_seconds_run: f64,
    worker_cpu_s_whole: Option<f64>,
    samples_summary: Value,
}

impl CpuFigures {
    fn of(samples: &[Sample], calls_from: f64, k: usize, tick: f64, nproc: f64) -> Self {
        let call_samples: Vec<&Sample> = samples.iter().filter(|s| s.t >= calls_from).collect();
        let idle_samples: Vec<&Sample> = samples.iter().filter(|s| s.t < calls_from).collect();
        let idle = match (idle_samples.first(), idle_samples.last()) {
            (Some(a), Some(b)) if b.t > a.t => Some(usage(a, b, tick, nproc)),
            _ => None,
        };
        // The steady window: from the first to the last sample with all K calls running
        // (with fewer, when not all K ever ran at once: the most that did).
        let concurrent = call_samples
            .iter()
            .map(|s| s.active_calls)
            .max()
            .unwrap_or(0)
            .clamp(1, k);
        if concurrent < k {
            eprintln!("WARNING: only {concurrent} of {k} calls ever ran at once");
        }
        let full: Vec<&Sample> = call_samples
            .iter()
            .copied()
            .filter(|s| s.active_calls >= concurrent)
            .collect();
        let steady = match (full.first(), full.last()) {
            (Some(a), Some(b)) if b.t - a.t > 1.0 => Some(usage(a, b, tick, nproc)),
            _ => None,
        };
        let steady_peak_rss = full.iter().map(|s| s.worker_rss_kib).max().unwrap_or(0);
        // The whole run: CPU from the first caller's start to the last job's end, per second
        // of call (the integral of running calls over time).
        let run_from = call_samples.first().copied();
        let last_active = call_samples.iter().rposition(|s| s.active_calls > 0);
        let run_to =
            last_active.and_then(|i| call_samples.get((i + 1).min(call_samples.len() - 1)));
        let call_seconds_run: f64 = call_samples
            .windows(2)
            .map(|w| w[0].active_calls as f64 * (w[1].t - w[0].t))
            .sum();
        let whole = match (run_from, run_to) {
            (Some(a), Some(b)) if b.t > a.t => Some(usage(a, b, tick, nproc)),
            _ => None,
        };
        let worker_cpu_s_whole = whole.as_ref().map(|u| u.worker * u.seconds);
        CpuFigures {
            tick,
            idle,
            steady,
            whole,
            concurrent,
            steady_peak_rss,
            call_seconds_run,
            worker_cpu_s_whole,
            samples_summary: samples_summary(&call_samples),
        }
    }

    /// Worker cores per call in the steady window.
    fn per_call_cores(&self) -> Option<f64> {
        self.steady
            .as_ref()
            .map(|u| u.worker / self.concurrent as f64)
    }
}

/// Latency and the rest, as the callers heard it.
struct CallerFigures {
    turns: Vec<Turn>,
    /// Latencies of the turns that count (a reply heard, the agent silent during the
    /// utterance).
    measured: Vec<f64>,
    /// Turns without a reply heard.
    missing: usize,
    overlapped: usize,
    greeted: usize,
    /// Dispatch to the agent joining the room, per caller (ms).
    joins: Vec<f64>,
    /// Per agent track: how far the recording's timeline could be off (ms).
    slack: Vec<f64>,
}

impl CallerFigures {
    fn of(heard: &[Heard], marks: &[(f64, f64)]) -> Self {
        let mut turns = Vec::new();
        let mut greeted = 0;
        let mut joins = Vec::new();
        let mut slack = Vec::new();
        for (
            index,
            Heard {
                room,
                json,
                recording,
            },
        ) in heard.iter().enumerate()
        {
            let caller_identity = format!("caller-{index:02}");
            let agent_said: Vec<&str> = json["transcriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["identity"].as_str() != Some(caller_identity.as_str()))
                .filter_map(|t| t["text"].as_str())
                .collect();
            if agent_said.contains(&REPLY) {
                greeted += 1;
            } else {
                eprintln!("{room}: the agent said nothing the caller saw: {agent_said:?}");
            }
            let events = json["events"].as_array().cloned().unwrap_or_default();
            let joined = events.iter().find(|e| {
                e["event"] == "participant_connected"
                    && e["identity"].as_str() != Some(caller_identity.as_str())
            });
            if let (Some(joined), Some(dispatched)) = (joined, json["dispatch"]["t"].as_f64()) {
                joins.push(1000.0 * (joined["t"].as_f64().unwrap_or(f64::NAN) - dispatched));
            }
            // The recorder places the agent's frames on the timeline by arrival and
            // appends; audio received vs. time spanned shows how far the timeline could be
            // off.
            for track in json["tracks"].as_array().into_iter().flatten() {
                if track["participant"].as_str() == Some(caller_identity.as_str()) {
                    continue;
                }
                if let (Some(first), Some(seconds)) =
                    (track["first_frame_s"].as_f64(), track["seconds"].as_f64())
                {
                    let span = recording.duration().as_secs_f64() - first;
                    slack.push(1000.0 * (span - seconds));
                }
            }
            turns.extend(caller_turns(index, json, recording, marks));
        }
        let measured = turns
            .iter()
            .filter(|t| !t.overlapped)
            .filter_map(|t| t.latency_ms)
            .collect();
        let missing = turns
            .iter()
            .filter(|t| !t.overlapped && t.latency_ms.is_none())
            .count();
        let overlapped = turns.iter().filter(|t| t.overlapped).count();
        CallerFigures {
            turns,
            measured,
            missing,
            overlapped,
            greeted,
            joins,
            slack,
        }
    }

    /// The statistics of one part of the measured turns.
    fn part(&self, f: fn(&Turn) -> Option<f64>) -> Stats {
        let values: Vec<f64> = self
            .turns
            .iter()
            .filter(|t| !t.overlapped && t.latency_ms.is_some())
            .filter_map(f)
            .collect();
        Stats::of(&values)
    }
}

/// The JSON report: the setup, the headline figures, and every figure with its method.
fn build_report(
    plan: &Plan,
    machine: Value,
    speech: &CallerSpeech,
    idle: &IdleWorker,
    ended: &Ended,
    cpu: &CpuFigures,
    callers: &CallerFigures,
) -> Value {
    let k = plan.callers;
    let latency = Stats::of(&callers.measured);
    let parts = json!({
        "last_word_to_thinking": callers.part(|t| t.to_thinking_ms).to_json("ms", 3),
        "thinking_to_speaking": callers.part(|t| t.thinking_to_speaking_ms).to_json("ms", 3),
        "speaking_to_heard": callers.part(|t| t.speaking_to_heard_ms).to_json("ms", 3),
        "note": "from the caller's own timeline: lk.agent.state attribute changes as the caller \
                 received them (the worker sets `thinking` when the turn commits and `speaking` \
                 when the reply's first frame is written; the attribute travels by the \
                 signalling WebSocket, a few ms on loopback)",
    });
    let endpointing = &ended.endpointing;
    let latency_net = latency.shifted(-endpointing.wait_ms);
    let worker_stats: BTreeMap<String, Stats> = worker_turn_metrics(&ended.worker_log)
        .iter()
        .map(|(name, values)| (name.clone(), Stats::of(values)))
        .collect();
    let join_stats = Stats::of(&callers.joins);
    let concurrent = cpu.concurrent;
    let per_call_cores = cpu.per_call_cores();
    let per_call_kib =
        (cpu.steady_peak_rss.saturating_sub(idle.rss_kib)) as f64 / concurrent as f64;
    let per_call_kib_hwm =
        (ended.peak_hwm_kib.saturating_sub(idle.rss_kib)) as f64 / concurrent as f64;
    let livekit = (
        LIVEKIT_CORES / LIVEKIT_SESSIONS.1,
        LIVEKIT_CORES / LIVEKIT_SESSIONS.0,
    );
    let loadavg_end = machine::loadavg();
    json!({
        "bench": "livekit",
        "version": 1,
        "quick": plan.quick,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine,
        "loadavg_at_end": loadavg_end,
        "setup": {
            "callers": k,
            "worker_max_jobs": ended.max_jobs,
            "utterances_per_caller": plan.utterances,
            "caller_says": &LINES[..plan.utterances],
            "caller_call_s": round(speech.call_seconds, 3),
            "speak_after_s": SPEAK_AFTER.as_secs_f64(),
            "pause_after_each_utterance_s": PAUSE.as_secs_f64(),
            "caller_start_stagger_ms": STAGGER.as_millis() as u64,
            "callers_are": "caller.py (official Python SDK, livekit 1.2.1), one process each",
            "caller_dtx": !plan.no_dtx,
            "caller_dtx_note": "DTX on is the SDK's default: while the caller is silent its \
                                microphone track sends a packet every 400 ms instead of every 20 ms",
            "server": "livekit-server v1.13.5 --dev on 127.0.0.1 (scripts/livekit/start.sh)",
            "worker": "bella-vista start (release build), RUST_LOG=warn,bella_vista=info, one process, \
                       tokio multi-thread runtime (one worker thread per CPU)",
            "stt": format!("fake server, instant: {TRANSCRIPT:?}"),
            "llm": format!("fake server, instant, streamed: {REPLY:?} (the greeting too)"),
            "tts": "fake server, instant: a 220 Hz tone, 60 ms per character, 24 kHz PCM",
            "endpointing": {
                "min_silence_ms": endpointing.min_silence_ms,
                "min_delay_ms": endpointing.min_delay_ms,
                "wait_ms": endpointing.wait_ms,
                "note": "speech is reported ended min_silence after its last voiced 20 ms frame; a \
                         sentence-like transcript is committed min_delay after that same frame, so \
                         with instant STT the wait is max(min_silence, min_delay)",
            },
        },
        "headline": {
            "worker_cores_per_call": per_call_cores.map(|x| round(x, 4)),
            "worker_calls_per_core": per_call_cores.map(|c| round(1.0 / c, 3)),
            "worker_kib_per_call": round(per_call_kib, 3),
            "latency_last_word_to_agent_audio": latency.to_json("ms", 3),
            "latency_minus_endpointing_wait": latency_net.to_json("ms", 3),
        },
        "cpu": {
            "method": "utime+stime of each process from /proc/PID/stat (all threads), sampled \
                       every 100 ms; the steady window runs from the first to the last sample \
                       with all K calls running in the worker (job started - job ended in its \
                       log); cores = CPU s / wall s",
            "clock_ticks_per_s": cpu.tick,
            "idle_worker": cpu.idle.as_ref().map(Usage::to_json),
            "steady_all_calls_running": cpu.steady.as_ref().map(Usage::to_json),
            "calls_in_steady_window": concurrent,
            "whole_run": cpu.whole.as_ref().map(Usage::to_json),
            "worker_cpu_s_whole_run": cpu.worker_cpu_s_whole.map(|x| round(x, 3)),
            "call_seconds_whole_run": round(cpu.call_seconds_run, 3),
            "worker_cpu_ms_per_call_s": cpu
                .worker_cpu_s_whole
                .map(|cpu_s| round(1000.0 * cpu_s / cpu.call_seconds_run, 3)),
        },
        "memory": {
            "method": "VmRSS of the idle registered worker; peak VmRSS sampled while all K calls \
                       ran; VmHWM at the end (reset through /proc/PID/clear_refs before the calls)",
            "idle_rss_kib": idle.rss_kib,
            "steady_peak_rss_kib": cpu.steady_peak_rss,
            "hwm_kib": ended.peak_hwm_kib,
            "hwm_reset": idle.hwm_reset,
            "kib_per_call_steady": round(per_call_kib, 3),
            "kib_per_call_hwm": round(per_call_kib_hwm, 3),
        },
        "latency": {
            "method": "per caller: utterance j ends at speech_start (caller.py event, when its \
                       WAV starts playing into its microphone track) + the end of utterance j's \
                       sound in the WAV (last sample above -40 dBFS); the agent's reply starts \
                       at the first sample of the caller's recording of the agent (48 kHz, one \
                       timeline from the script's start) louder than 2000 with 20 ms of energy, \
                       searched up to the next utterance. Turns where the agent was already \
                       audible during the utterance are left out",
            "caller_last_word_to_agent_audio": latency.to_json("ms", 3),
            "minus_endpointing_wait": latency_net.to_json("ms", 3),
            "parts_seen_by_caller": parts,
            "turns": callers.turns.len(),
            "measured": callers.measured.len(),
            "no_reply_heard": callers.missing,
            "left_out_overlapping": callers.overlapped,
            "per_turn_ms_columns": ["caller", "utterance", "latency", "overlapped", "to_thinking", "thinking_to_speaking", "speaking_to_heard"],
            "per_turn_ms": callers.turns.iter().map(|t| json!([
                t.caller, t.utterance, t.latency_ms.map(|x| round(x, 3)), t.overlapped,
                t.to_thinking_ms.map(|x| round(x, 3)), t.thinking_to_speaking_ms.map(|x| round(x, 3)),
                t.speaking_to_heard_ms.map(|x| round(x, 3)),
            ])).collect::<Vec<_>>(),
            "worker_view": worker_stats.iter().map(|(n, s)| (n.clone(), s.to_json("ms", 3))).collect::<serde_json::Map<_, _>>(),
            "worker_view_note": "from the worker's `turn` log lines: end_to_end = the VAD's last \
                                 voiced frame -> first agent frame out of the pipeline; \
                                 end_of_utterance_delay = that frame -> turn committed",
            "recorder_slack_ms": Stats::of(&callers.slack).to_json("ms", 3),
            "recorder_slack_note": "per agent track: time from its first frame to the end of the \
                                    recording minus audio received; near 0 means the recording's \
                                    timeline followed arrival (no gaps it had to bridge)",
        },
        "agent_join_after_dispatch_ms": join_stats.to_json("ms", 3),
        "checks": {
            "calls_running_at_once": concurrent,
            "greeted": callers.greeted,
            "jobs_started": ended.jobs_started,
            "jobs_ended": ended.jobs_ended,
            "jobs_failed": ended.worker_log.lines().filter(|l| l.contains("job failed")).count(),
            "worker_exit": ended.exit.map(|s| s.to_string()),
        },
        "comparison": {
            "livekit_python_worker": {
                "cores": LIVEKIT_CORES,
                "sessions": [LIVEKIT_SESSIONS.0, LIVEKIT_SESSIONS.1],
                "cores_per_session": [round(livekit.0, 3), round(livekit.1, 3)],
                "process_model": "each job in its own process",
            },
            "ours_cores_per_call": per_call_cores.map(|x| round(x, 4)),
            "ratio": per_call_cores.map(|c| [round(livekit.0 / c, 3), round(livekit.1 / c, 3)]),
            "caveat": "ours: instant local providers (no real STT/TTS/LLM clients, no TLS), \
                       webrtc-vad, no turn-detector model, loopback network; both include WebRTC \
                       transport and Opus. The Python callers run on the same CPUs.",
        },
    })
}

/// Writes the JSON report and says where it and the logs are.
fn write_report(report: &Value, path: &Path, dir: &Path) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = serde_json::to_string_pretty(report).expect("report serializes");
    std::fs::write(path, text + "\n").expect("write the JSON report");
    println!(
        "\nwritten: {} (logs and recordings: {})",
        path.display(),
        dir.display()
    );
}

/// Most calls seen running at once.
fn samples_summary(samples: &[&Sample]) -> Value {
    json!({
        "max_active_calls": samples.iter().map(|s| s.active_calls).max().unwrap_or(0),
        "samples": samples.len(),
    })
}

/// The whole report: the setup, CPU, memory, latency as the callers heard it, the
/// comparison with LiveKit's Python worker, and the checks that the calls went as planned.
fn print_report(report: &Value, samples: &Value) {
    print_setup(report, samples);
    print_cpu(report);
    print_memory(report);
    print_latency(report);
    print_comparison(report);
    print_checks(report);
}

/// A number of the report (NaN when absent).
fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// The callers at once.
fn callers(report: &Value) -> u64 {
    report["setup"]["callers"].as_u64().unwrap_or(0)
}

/// What ran, on what machine, how busy it was.
fn print_setup(report: &Value, samples: &Value) {
    let k = callers(report);
    let machine = &report["machine"];
    let setup = &report["setup"];
    println!(
        "\nBella Vista LiveKit worker: {k} Python callers at once (most seen running: {}), {} \
         utterances each, {:.1} s calls, caller DTX {}; instant fake STT/LLM/TTS",
        samples["max_active_calls"],
        setup["utterances_per_caller"],
        num(&setup["caller_call_s"]),
        if setup["caller_dtx"] == true {
            "on (SDK default)"
        } else {
            "off"
        },
    );
    println!(
        "machine: {} x {}, {} MiB, {}, commit {}{}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_mib"],
        machine["rustc"].as_str().unwrap_or("rustc ?"),
        machine["git_commit"]
            .as_str()
            .map_or("?", |c| &c[..c.len().min(10)]),
        if machine["git_dirty"] == true {
            " (dirty)"
        } else {
            ""
        },
    );
    println!(
        "load average: {} at start, {} at end",
        machine["loadavg_at_start"], report["loadavg_at_end"]
    );
}

/// Cores used by each process, in the steady window and over the whole run.
fn print_cpu(report: &Value) {
    let k = callers(report);
    let per_call = num(&report["headline"]["worker_cores_per_call"]);
    let cpu = &report["cpu"];
    let steady = &cpu["steady_all_calls_running"];
    println!("\nCPU (cores), sampled from /proc every 100 ms");
    println!(
        "{:<34} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8}",
        "window", "seconds", "worker", "callers", "server", "bench", "machine", "other"
    );
    for (name, usage) in [
        ("idle worker, before the calls", &cpu["idle_worker"]),
        (
            "all K calls running (steady)",
            &cpu["steady_all_calls_running"],
        ),
        ("whole run (first start..last end)", &cpu["whole_run"]),
    ] {
        if usage.is_null() {
            println!("{name:<34} (no such window)");
            continue;
        }
        let ours = num(&usage["worker_cores"])
            + num(&usage["callers_cores"])
            + num(&usage["livekit_server_cores"])
            + num(&usage["bench_process_cores"]);
        println!(
            "{:<34} {:>8.1} {:>8.3} {:>9.3} {:>8.3} {:>8.3} {:>9.2} {:>8.2}",
            name,
            num(&usage["seconds"]),
            num(&usage["worker_cores"]),
            num(&usage["callers_cores"]),
            num(&usage["livekit_server_cores"]),
            num(&usage["bench_process_cores"]),
            num(&usage["machine_busy_cores"]),
            (num(&usage["machine_busy_cores"]) - ours).max(0.0),
        );
    }
    println!(
        "worker: the bella-vista process; callers: all {k} caller.py processes; server: \
         livekit-server; bench: this process (fake OpenAI server, sampling); machine: all \
         CPU use on the machine (/proc/stat); other: machine - the rest (other work, kernel)"
    );
    let kk = k as f64;
    println!(
        "\nworker per concurrent call: {:.4} cores ({:.1} calls per core); whole run {:.2} ms CPU \
         per second of call",
        per_call,
        1.0 / per_call,
        num(&cpu["worker_cpu_ms_per_call_s"]),
    );
    println!(
        "each Python caller: {:.4} cores (steady window)",
        num(&steady["callers_cores"]) / kk
    );
}

/// The worker's memory, idle and per call.
fn print_memory(report: &Value) {
    let memory = &report["memory"];
    println!(
        "worker memory: idle {:.1} MiB, peak while all calls ran {:.1} MiB (VmHWM {:.1} MiB) -> \
         {:.0} KiB per call ({:.0} by VmHWM)",
        num(&memory["idle_rss_kib"]) / 1024.0,
        num(&memory["steady_peak_rss_kib"]) / 1024.0,
        num(&memory["hwm_kib"]) / 1024.0,
        num(&memory["kib_per_call_steady"]),
        num(&memory["kib_per_call_hwm"]),
    );
}

/// Caller's last word to the agent's first audio, and its parts.
fn print_latency(report: &Value) {
    let setup = &report["setup"];
    let latency = &report["latency"];
    println!(
        "\nlatency, caller's last word -> agent's first audio at the caller ({} turns measured, \
         {} without a reply heard, {} left out: agent audible during the utterance)",
        latency["measured"], latency["no_reply_heard"], latency["left_out_overlapping"]
    );
    println!(
        "{:<46} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p90", "p99", "max"
    );
    let row = |name: &str, s: &Value| {
        println!(
            "{:<46} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            name,
            num(&s["median_ms"]),
            num(&s["p90_ms"]),
            num(&s["p99_ms"]),
            num(&s["max_ms"]),
        );
    };
    row(
        "at the caller (ms)",
        &latency["caller_last_word_to_agent_audio"],
    );
    let wait = num(&setup["endpointing"]["wait_ms"]);
    row(
        &format!("  minus the endpointing wait ({wait:.0} ms)"),
        &latency["minus_endpointing_wait"],
    );
    let parts = &latency["parts_seen_by_caller"];
    row(
        "  last word -> `thinking` (turn committed)",
        &parts["last_word_to_thinking"],
    );
    row(
        "  `thinking` -> `speaking` (first frame written)",
        &parts["thinking_to_speaking"],
    );
    row(
        "  `speaking` -> first audio heard",
        &parts["speaking_to_heard"],
    );
    let view = &latency["worker_view"];
    for (name, label) in [
        ("end_to_end", "worker: last voiced frame -> first frame out"),
        (
            "end_of_utterance_delay",
            "worker: last voiced frame -> turn committed",
        ),
        ("commit_to_audio", "worker: committed -> first frame out"),
    ] {
        if !view[name].is_null() {
            row(label, &view[name]);
        }
    }
    row(
        "agent joined after dispatch (ms)",
        &report["agent_join_after_dispatch_ms"],
    );
    println!(
        "recorder timeline slack per agent track: median {:.0} ms, max {:.0} ms",
        num(&latency["recorder_slack_ms"]["median_ms"]),
        num(&latency["recorder_slack_ms"]["max_ms"]),
    );
    println!(
        "p99 is nearest rank: with fewer than 100 turns it is the largest or next to largest."
    );
}

/// Cores per call against LiveKit's Python worker.
fn print_comparison(report: &Value) {
    let per_call = num(&report["headline"]["worker_cores_per_call"]);
    let cmp = &report["comparison"];
    println!(
        "\ncomparison: LiveKit's Python worker, ~{LIVEKIT_CORES:.0} cores for {:.0}-{:.0} \
         sessions = {:.3}-{:.3} cores per session (a process per job); ours {:.4} cores per call \
         = {:.0}-{:.0}x less",
        LIVEKIT_SESSIONS.0,
        LIVEKIT_SESSIONS.1,
        num(&cmp["livekit_python_worker"]["cores_per_session"][0]),
        num(&cmp["livekit_python_worker"]["cores_per_session"][1]),
        per_call,
        num(&cmp["ratio"][0]),
        num(&cmp["ratio"][1]),
    );
    println!("  ({})", cmp["caveat"].as_str().unwrap_or(""));
}

/// Whether every caller was greeted and every job ended.
fn print_checks(report: &Value) {
    let k = callers(report);
    let checks = &report["checks"];
    println!(
        "checks: {} of {k} callers greeted; jobs started {}, ended {}, reported failed {}; \
         worker exit: {}",
        checks["greeted"],
        checks["jobs_started"],
        checks["jobs_ended"],
        checks["jobs_failed"],
        checks["worker_exit"].as_str().unwrap_or("did not exit"),
    );
}
