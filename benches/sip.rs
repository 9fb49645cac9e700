//! The phone benchmark: K concurrent phone calls through the real SIP stack (redis,
//! livekit-server with redis, livekit-sip) to one `bella-vista start` worker (the release
//! binary). Each caller is a sipp process playing espeak-ng utterances as 8 kHz PCMU, then
//! hanging up; providers are instant (the fake OpenAI server in this process: a fixed
//! transcript, a short text reply, speech as a tone of 60 ms per character).
//!
//! ```text
//! cargo bench --bench sip                    # K = 4, 8, 16, 24 calls
//! cargo bench --bench sip -- --calls 10,20   # other K
//! cargo bench --bench sip -- --quick         # K = 2, 4
//! ```
//!
//! Per K it measures, while all K calls run (from the last call's answer + 6 s to the first
//! call's end - 1 s): the CPU of each process (utime + stime from `/proc/PID/stat`, sampled
//! every 100 ms) and of the machine, the worker's peak RSS; from a tcpdump capture of the
//! PCMU to and from every caller: calls answered, the time from the answer to the first
//! agent audio, and from each caller's last word to the agent's next audio (what the caller
//! hears; it includes the 500 ms VAD silence and 300 ms endpointing wait). The process
//! with the most CPU per call is the one that runs out first. Needs root (tcpdump) and
//! what `scripts/sip/install.sh` installs. Writes `target/bench-sip.json`.

#[allow(dead_code)]
#[path = "../tests/common/openai_server.rs"]
mod openai_server;
#[allow(dead_code)]
#[path = "../tests/common/sip.rs"]
mod sip;
#[allow(dead_code)]
#[path = "../tests/common/worker.rs"]
mod worker;

#[path = "common/machine.rs"]
mod machine;
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
use procfs::{clock_tick, machine_ticks, proc_status_kib, proc_ticks};
use serde_json::{Value, json};
use sip::{CallerScript, PhoneCall, Segment, SipStack};
use stats::Stats;
use worker::{Worker, test_dir, wait_until, write_config};

/// What each caller says, with pauses for the agent's reply.
const CALLER: [Segment; 9] = [
    Segment::Silence(4.0),
    Segment::Say("I would like to order please"),
    Segment::Silence(3.5),
    Segment::Say("Two bruschetta and a tiramisu"),
    Segment::Silence(3.5),
    Segment::Say("Can I pay by card"),
    Segment::Silence(3.5),
    Segment::Say("Yes that is all correct"),
    Segment::Silence(3.5),
];
/// Utterances per call.
const UTTERANCES: usize = 4;
/// What speech-to-text returns for every utterance.
const TRANSCRIPT: &str = "I would like to order.";
/// What the model answers every time (about 1 s of tone).
const REPLY: &str = "Certainly, noted.";
/// Time between two callers' starts.
const STAGGER: Duration = Duration::from_millis(400);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let calls: Vec<usize> = match args.iter().position(|a| a == "--calls") {
        Some(i) => args
            .get(i + 1)
            .map(|list| list.split(',').filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default(),
        None if quick => vec![2, 4],
        None => vec![4, 8, 16, 24],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let machine = machine::machine();
    let mut runs = Vec::new();
    for k in calls {
        let run = runtime.block_on(run(k));
        print_run(&run);
        runs.push(run);
    }
    let report = json!({"benchmark": "sip", "machine": machine, "runs": runs});
    let path = machine::report_path("bench-sip.json");
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write");
    println!("\nreport: {}", path.display());
}

/// One sample: seconds since the start, CPU ticks per process, machine ticks (all, idle).
type Point = (f64, BTreeMap<&'static str, u64>, (u64, u64));

/// CPU ticks of the processes that carry the calls, sampled over time.
#[derive(Default)]
struct Samples {
    points: Vec<Point>,
    worker_peak_rss_kib: u64,
}

fn pid_in(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn run(k: usize) -> Value {
    let dir = test_dir("bench_sip", &format!("k{k}"));
    let stack = SipStack::start(&dir);
    let fake = FakeOpenAi::start().await;
    for _ in 0..k * (UTTERANCES + 1) * 2 {
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(text_chunks(&[REPLY])),
        );
    }
    for _ in 0..k * UTTERANCES * 2 {
        fake.push(
            Endpoint::Transcriptions,
            Response::Transcript(TRANSCRIPT.into()),
        );
    }
    let config = write_config(
        &dir,
        &[
            ("max_jobs = 16", format!("max_jobs = {}", k + 2)),
            ("silence_prompt_ms = 15000", "silence_prompt_ms = 0".into()),
        ],
    );
    let worker = Worker::start(
        "bench",
        &dir,
        &config,
        &stack.livekit_url(),
        &fake.base_url(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || worker.registered()).await,
        "{}",
        worker.tail()
    );
    let (pcap, plan) = PhoneCall::prepare_audio(&dir.join("audio"), &CALLER);
    let seconds = plan["seconds"].as_f64().unwrap_or(0.0);
    // PCMU (RTP payload type 0) to and from every caller, and SIP.
    let capture = sip::capture(&stack, &dir, "(udp[8] & 0xc0 = 0x80 and udp[9] & 0x7f = 0)");

    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let worker_pid = worker.pid();
    let state = dir.join("stack");
    let mut calls = Vec::new();
    let mut sipp_pids = Vec::new();
    let mut media_ports = Vec::new();
    for i in 0..k {
        let call = PhoneCall::place_uncaptured(
            &stack,
            &dir.join(format!("call{i}")),
            &pcap,
            &plan,
            CallerScript::HangUpWhenDone,
        );
        sipp_pids.push(call.sipp_pid());
        media_ports.push(call.media_port());
        calls.push(call);
        tokio::time::sleep(STAGGER).await;
    }
    let sampler = {
        let samples = samples.clone();
        let sampling = sampling.clone();
        let pids = [
            ("worker", Some(worker_pid)),
            ("livekit-sip", pid_in(&state, "sip.pid")),
            ("livekit-server", pid_in(&state, "livekit.pid")),
            ("redis", pid_in(&state, "redis.pid")),
        ];
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let mut ticks = BTreeMap::new();
                for (name, pid) in pids {
                    if let Some(t) = pid.and_then(proc_ticks) {
                        ticks.insert(name, t);
                    }
                }
                let sipp: u64 = sipp_pids.iter().filter_map(|p| proc_ticks(*p)).sum();
                ticks.insert("sipp", sipp);
                let rss = proc_status_kib(worker_pid, "VmRSS").unwrap_or(0);
                {
                    let mut s = samples.lock().unwrap_or_else(PoisonError::into_inner);
                    s.worker_peak_rss_kib = s.worker_peak_rss_kib.max(rss);
                    s.points
                        .push((started.elapsed().as_secs_f64(), ticks, machine_ticks()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.finish(Duration::from_secs_f64(seconds + 60.0)).await);
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sip::stop_capture(capture);

    let mut answered = 0;
    let mut answer_to_audio = Vec::new();
    let mut delays = Vec::new();
    let mut turns_answered = 0;
    for (i, (outcome, media_port)) in outcomes.iter().zip(media_ports).enumerate() {
        let call_dir = dir.join(format!("call{i}"));
        let capture = sip::analyze(
            &call_dir,
            &dir.join("call.pcap"),
            stack.sip_port,
            media_port,
        );
        let outcome = sip::CallOutcome {
            sipp_exit: outcome.sipp_exit,
            capture,
            dir: call_dir,
        };
        if outcome.capture["invite_to_200_s"].is_number() {
            answered += 1;
        }
        if let Some(first) = outcome.capture["answer_to_first_audio_s"].as_f64() {
            answer_to_audio.push(first);
        }
        let call_delays = outcome.response_delays();
        turns_answered += call_delays.len().min(UTTERANCES);
        delays.extend(call_delays);
    }
    let window_start = STAGGER.as_secs_f64() * k as f64 + 6.0;
    let window_end = window_start.max(seconds - 1.0);
    let s = samples.lock().unwrap_or_else(PoisonError::into_inner);
    let cpu = cores_between(&s.points, window_start, window_end);
    let result = json!({
        "calls": k,
        "answered": answered,
        "turns_answered": turns_answered,
        "turns": k * UTTERANCES,
        "answer_to_first_audio_s": percentiles(&answer_to_audio),
        "last_word_to_agent_audio_s": percentiles(&delays),
        "cpu_cores": cpu,
        "cpu_cores_per_call": cpu.as_object().map(|o| o.iter().map(|(n, v)| (n.clone(), json!(v.as_f64().unwrap_or(0.0) / k as f64))).collect::<serde_json::Map<_, _>>()),
        "worker_peak_rss_mib": s.worker_peak_rss_kib as f64 / 1024.0,
        "window_s": [window_start, window_end],
        "files": dir.display().to_string(),
    });
    drop(s);
    drop(worker);
    result
}

/// Cores used by each process (and the machine) between two times of the sampling.
fn cores_between(points: &[Point], from: f64, to: f64) -> Value {
    let first = points.iter().find(|p| p.0 >= from);
    let last = points.iter().rev().find(|p| p.0 <= to);
    let (Some(a), Some(b)) = (first, last) else {
        return Value::Null;
    };
    let seconds = b.0 - a.0;
    if seconds <= 0.0 {
        return Value::Null;
    }
    let tick = clock_tick();
    let mut out = serde_json::Map::new();
    for (name, end) in &b.1 {
        let start = a.1.get(name).copied().unwrap_or(*end);
        out.insert(
            name.to_string(),
            json!(end.saturating_sub(start) as f64 / tick / seconds),
        );
    }
    let (all, idle) = (b.2.0 - a.2.0, b.2.1 - a.2.1);
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if all > 0 {
        out.insert(
            "machine".into(),
            json!((all - idle) as f64 / all as f64 * nproc),
        );
    }
    Value::Object(out)
}

fn percentiles(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let stats = Stats::of(values);
    json!({"n": stats.count, "median": stats.median, "p99": stats.p99, "max": stats.max})
}

fn print_run(run: &Value) {
    println!(
        "\nK = {} calls: answered {}, turns answered {}/{}; answer -> first audio {}; \
         caller's last word -> agent audio {}",
        run["calls"],
        run["answered"],
        run["turns_answered"],
        run["turns"],
        run["answer_to_first_audio_s"],
        run["last_word_to_agent_audio_s"]
    );
    println!(
        "  CPU cores while all calls run: {}\n  per call: {}\n  worker peak RSS {:.1} MiB",
        run["cpu_cores"], run["cpu_cores_per_call"], run["worker_peak_rss_mib"]
    );
}
