//! The voice benchmark: what the voice pipeline itself costs per call, with instant
//! providers, on whole Bella Vista orders spoken as phone calls.
//!
//! Each call is one order of 6 caller turns (~33 s of call audio): the caller's speech
//! comes from espeak-ng, at 48 kHz, through the real inbound resampler (48 -> 16 kHz),
//! the real VAD (`VadPool`, webrtc-vad), the speech detector, endpointing, the real order
//! taker on an instant `ScriptedLlm`, sentence streaming, an instant text-to-speech (a
//! tone of 60 ms per character at 24 kHz in 50 ms frames) and the real outbound
//! resampler (24 -> 48 kHz). Speech-to-text is instant too: it returns the next line of
//! the script. Calls run on a multi-thread runtime, at `Pace::Fast` and, once, at
//! `Pace::RealTime`.
//!
//! ```text
//! cargo bench --bench voice              # about 70 s after the build
//! cargo bench --bench voice -- --quick   # fewer calls, no real-time run
//! ```
//!
//! It measures:
//! - the latency the pipeline adds: `TurnMetrics::commit_to_audio` (end-of-utterance
//!   decision -> first agent audio frame out), pooled over every caller turn;
//! - CPU per second of call audio and memory per concurrent session, with K calls at
//!   once (K = 1, 10, 50, 100 fast, and 100 in real time), each configuration in a fresh
//!   child process: process CPU time (utime + stime, `/proc/self/stat`) / call audio
//!   processed, and the growth of the peak RSS (`VmHWM`, reset through
//!   `/proc/self/clear_refs`) / K;
//! - the real-time factor with all cores busy;
//! - the audio stages alone (resampling, VAD), and LiveKit's published figure beside ours.
//!
//! Every call is verified (every transcript and model step used as scripted, no
//! interruption, the agent never talks over the caller, all synthesized audio played,
//! one correct order stored under the number the agent announced), so a broken call
//! fails the benchmark instead of being measured. Prints a table and writes every figure,
//! with the machine and the commit, to `target/bench-voice.json`. See
//! `benches/README.md`.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bella_vista::agent::AgentSession;
use bella_vista::bella_vista::menu::Menu;
use bella_vista::bella_vista::order::OrderLimits;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::store::OrderStore;
use bella_vista::bella_vista::{Restaurant, WallClock, order_taker};
use bella_vista::io::wav::read_wav;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRequest, Llm, LlmStream};
use bella_vista::voice::audio::{AudioFrame, samples_for};
use bella_vista::voice::audio_io::{AudioClosed, AudioInput, AudioOutput};
use bella_vista::voice::call::{CallReport, Pace, VoiceServices, run_call};
use bella_vista::voice::pipeline::{CALLER_RATE, PipelineConfig};
use bella_vista::voice::resample::Resampler;
use bella_vista::voice::testing::{ScriptedStt, ToneTts};
use bella_vista::voice::vad::{VadAggressiveness, VadPool};
use procfs::{
    clock_tick, process_cpu_ns, process_cpu_ticks, reset_peak_rss, rss_now, rss_peak,
    thread_cpu_ns, thread_cpu_ticks,
};
use serde_json::{Value, json};
use stats::{Stats, round};

/// Rate of the caller's audio in and of the agent's audio out (a WebRTC-like leg).
const CALL_RATE: u32 = 48_000;
/// Length of one caller frame (the pipeline's tick).
const CALLER_FRAME: Duration = Duration::from_millis(20);
/// Rate of the instant text-to-speech.
const TTS_RATE: u32 = 24_000;
/// Speech the instant text-to-speech makes per character.
const TONE_PER_CHAR: Duration = Duration::from_millis(60);
/// Length of one text-to-speech frame.
const TTS_FRAME: Duration = Duration::from_millis(50);
/// Silence after the agent's reply (estimated from its length) before the caller speaks
/// again: speech end detection (500 ms) + endpointing (300 ms) + 800 ms to spare.
const REPLY_MARGIN: Duration = Duration::from_millis(1600);
/// Concurrent calls per load configuration, with the calls run in the full and the
/// `--quick` benchmark. K = 1 runs its calls one after another: its turns give the
/// headline latency.
const LOADS: [(usize, usize, usize); 4] =
    [(1, 200, 20), (10, 100, 20), (50, 200, 50), (100, 400, 100)];
/// Concurrent calls and calls of the real-time configuration: each call takes its ~36 s
/// of wall time, so all run at once (not run with `--quick`).
const REAL_TIME_LOAD: (usize, usize) = (100, 100);
/// Delay between the starts of real-time calls: starts spread over 0.7 s, and frame
/// ticks over the whole 20 ms.
const STAGGER: Duration = Duration::from_millis(7);
/// Malloc settings of the compact-malloc memory child: one arena, memory returned on
/// every free, so that RSS follows the heap closely (as in `benches/turns.rs`).
const COMPACT_MALLOC: &str = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=0:\
     glibc.malloc.top_pad=0:glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0";
/// The figure the issue quotes: LiveKit's Python agent worker needs about 4 cores for
/// 25-30 concurrent voice sessions.
const LIVEKIT_CORES: f64 = 4.0;
const LIVEKIT_SESSIONS: (f64, f64) = (25.0, 30.0);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(i) = args.iter().position(|a| a == "--load-child") {
        let concurrency = args[i + 1].parse().expect("concurrency");
        let calls = args[i + 2].parse().expect("calls");
        let pace = match args[i + 3].as_str() {
            "fast" => Pace::Fast,
            "real-time" => Pace::RealTime,
            other => panic!("unknown pace {other:?}"),
        };
        println!("{}", load_child(concurrency, calls, pace));
        return;
    }
    run_benchmark(quick);
}

// ---------------------------------------------------------------------------------------
// The scripted call
// ---------------------------------------------------------------------------------------

/// One caller line: what espeak-ng says, what the instant STT hears, and what the agent
/// answers (for the pause the caller leaves for it).
struct CallerLine {
    says: &'static str,
    heard: &'static str,
    reply: &'static str,
}

/// The agent's greeting.
const GREETING: &str = "Welcome to Bella Vista! What can I get you?";

/// The order: 2 Bruschetta ($24) + Grilled Salmon ($28) = $52.00, card with a 15% tip:
/// $59.80.
const LINES: [CallerLine; 6] = [
    CallerLine {
        says: "Hi, I would like to order",
        heard: "Hi, I would like to order.",
        reply: "What would you like first?",
    },
    CallerLine {
        says: "Two bruschetta please, and something else",
        heard: "Two bruschetta please, and something else.",
        reply: "And the next item?",
    },
    CallerLine {
        says: "One grilled salmon, that is all",
        heard: "One grilled salmon, that is all.",
        reply: "How would you like to pay?",
    },
    CallerLine {
        says: "By card, with a fifteen percent tip",
        heard: "By card, with a fifteen percent tip.",
        reply: "Shall I place the order?",
    },
    CallerLine {
        says: "Yes, please place it",
        heard: "Yes, please place it.",
        // The real reply carries the order number the store gave (see `announce`).
        reply: "Your order number is 1000. Thank you!",
    },
    CallerLine {
        says: "Thanks, goodbye",
        heard: "Thanks, goodbye.",
        reply: "Thank you for calling Bella Vista. Goodbye!",
    },
];

/// The stored order's total, in cents.
const ORDER_TOTAL_CENTS: i64 = 5980;

/// One answer of the model: a step, built when its request arrives (so it can use it).
type Answer = Box<dyn FnOnce(&ChatRequest) -> Step + Send>;

fn fixed(step: Step) -> Answer {
    Box::new(move |_| step)
}

/// The model's answers for one call: the greeting, then each caller turn's requests.
fn script() -> VecDeque<Answer> {
    let [l1, l2, l3, l4, l5, l6] = &LINES;
    VecDeque::from([
        fixed(Step::reply().text(GREETING)),
        // 1: take_order, the first item task asks
        fixed(
            Step::reply()
                .expect_user(l1.heard)
                .expect_tool("take_order")
                .call("take_order", json!({})),
        ),
        fixed(item_enters(l1.reply)),
        // 2: item 1, the next item task asks
        fixed(confirm_item("Bruschetta", 2, true).expect_user(l2.heard)),
        fixed(item_enters(l2.reply)),
        // 3: item 2, payment asks (subtotal checked)
        fixed(confirm_item("Grilled Salmon", 1, false).expect_user(l3.heard)),
        fixed(
            Step::reply()
                .expect_no_tool("confirm_payment")
                .expect_instructions("$52.00")
                .text(l3.reply),
        ),
        // 4: payment, the read-back asks (total checked)
        fixed(Step::reply().expect_user(l4.heard).call(
            "confirm_payment",
            json!({"method": "card", "tip_percentage": 15}),
        )),
        fixed(
            Step::reply()
                .expect_no_tool("confirm_order")
                .expect_instructions("Total: $59.80")
                .text(l4.reply),
        ),
        // 5: confirmed and stored; the summary; the number announced
        fixed(
            Step::reply()
                .expect_user(l5.heard)
                .expect_tool("confirm_order")
                .call("confirm_order", json!({})),
        ),
        fixed(Step::summary("Two bruschetta and a grilled salmon, card.")),
        Box::new(announce),
        // 6: goodbye
        fixed(Step::reply().expect_user(l6.heard).text(l6.reply)),
    ])
}

/// An item task entering: it asks, with `confirm_item` and `out_of_scope` withheld.
fn item_enters(question: &str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_item")
        .expect_no_tool("out_of_scope")
        .text(question)
}

fn confirm_item(name: &str, quantity: i64, more_items: bool) -> Step {
    Step::reply().call(
        "confirm_item",
        json!({"name": name, "quantity": quantity, "modifications": [], "more_items": more_items}),
    )
}

/// The order taker announcing the number the store gave the order (concurrent calls
/// share one store, so the number is known only when the request comes).
fn announce(request: &ChatRequest) -> Step {
    match order_number_in(request) {
        Some(number) => Step::reply().text(format!("Your order number is {number}. Thank you!")),
        None => Step::reply().expect(|_| Err("no order number in the last tool output".into())),
    }
}

/// The number after "order number " in the request's last tool output.
fn order_number_in(request: &ChatRequest) -> Option<i64> {
    let output = request.items.iter().rev().find_map(|item| match item {
        ChatItem::FunctionOutput { output, .. } => Some(output.as_str()),
        _ => None,
    })?;
    number_after(output, "order number ")
}

fn number_after(text: &str, prefix: &str) -> Option<i64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How long the instant TTS speaks `text`.
fn spoken(text: &str) -> Duration {
    TONE_PER_CHAR * text.trim().chars().count() as u32
}

// ---------------------------------------------------------------------------------------
// Instant providers
// ---------------------------------------------------------------------------------------

/// An instant model: each request is answered by a one-step `ScriptedLlm` (same checks,
/// same streaming as the plain double) and then let go, so that no request log grows in
/// the memory figures. Check failures are collected for [`InstantLlm::verify`].
#[derive(Clone)]
struct InstantLlm(Arc<Mutex<LlmScript>>);

struct LlmScript {
    answers: VecDeque<Answer>,
    requests: usize,
    failures: Vec<String>,
}

impl InstantLlm {
    fn new(answers: VecDeque<Answer>) -> Self {
        InstantLlm(Arc::new(Mutex::new(LlmScript {
            answers,
            requests: 0,
            failures: Vec::new(),
        })))
    }

    fn verify(&self) -> Result<(), String> {
        let script = lock(&self.0);
        let mut problems = script.failures.clone();
        if !script.answers.is_empty() {
            let left = script.answers.len();
            problems.push(format!("{left} scripted step(s) never requested"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

impl Llm for InstantLlm {
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let mut script = lock(&self.0);
        let index = script.requests;
        script.requests += 1;
        let step = script.answers.pop_front().map(|answer| answer(&request));
        let one = ScriptedLlm::new(step);
        let stream = one.chat(request);
        if let Err(problem) = one.verify() {
            script.failures.push(format!("request #{index}: {problem}"));
        }
        stream
    }
}

// ---------------------------------------------------------------------------------------
// Audio endpoints
// ---------------------------------------------------------------------------------------

/// The caller's audio, shared by all calls, served in 20 ms frames as a network leg
/// would deliver them. (`FileInput` would first copy the whole call into frames, 96 KB per
/// second of call, which would count in the memory per session.)
struct CallerInput {
    audio: Arc<[i16]>,
    at: usize,
    /// Real-time pacing (a frame every 20 ms), as `FileInput` does it.
    pace: Option<tokio::time::Interval>,
}

impl CallerInput {
    fn new(audio: Arc<[i16]>, pace: Pace) -> Self {
        let pace = (pace == Pace::RealTime).then(|| {
            let mut interval = tokio::time::interval(CALLER_FRAME);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            interval
        });
        CallerInput { audio, at: 0, pace }
    }
}

impl AudioInput for CallerInput {
    async fn next_frame(&mut self) -> Option<AudioFrame> {
        if let Some(pace) = &mut self.pace {
            pace.tick().await;
        }
        if self.at >= self.audio.len() {
            return None;
        }
        let end = (self.at + samples_for(CALL_RATE, CALLER_FRAME)).min(self.audio.len());
        let frame = AudioFrame::mono(self.audio[self.at..end].to_vec(), CALL_RATE);
        self.at = end;
        Some(frame)
    }
}

/// The agent's audio out at [`CALL_RATE`]: counted, not kept, as a network leg would send
/// it on. (`Recording` would keep it, 96 KB per second of call.)
#[derive(Default)]
struct AgentSink {
    frames: usize,
    voiced_frames: usize,
    wrong_frames: usize,
}

impl AudioOutput for AgentSink {
    fn sample_rate(&self) -> u32 {
        CALL_RATE
    }

    fn write(&mut self, frame: AudioFrame) -> impl Future<Output = Result<(), AudioClosed>> + Send {
        self.frames += 1;
        if frame.sample_rate() != CALL_RATE
            || frame.samples().len() != samples_for(CALL_RATE, CALLER_FRAME)
        {
            self.wrong_frames += 1;
        }
        if frame.samples().iter().any(|&s| s != 0) {
            self.voiced_frames += 1;
        }
        std::future::ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------
// The caller's audio
// ---------------------------------------------------------------------------------------

/// The whole call as the caller's side hears it: silence while the agent speaks, the
/// lines spoken by espeak-ng, at [`CALL_RATE`].
struct CallerAudio {
    samples: Arc<[i16]>,
    /// Where each line's sound is, in seconds.
    spans: Vec<(f64, f64)>,
}

impl CallerAudio {
    /// Speaks the lines with espeak-ng, each after a pause long enough for the agent's
    /// previous reply, and converts the whole to [`CALL_RATE`].
    fn make() -> CallerAudio {
        let mut samples: Vec<i16> = Vec::new();
        let mut rate = 0;
        let mut spans = Vec::new();
        let mut pause = spoken(GREETING) + REPLY_MARGIN;
        for line in &LINES {
            let speech = espeak(line.says);
            rate = speech.sample_rate();
            samples.extend(std::iter::repeat_n(0, samples_for(rate, pause)));
            let offset = samples.len();
            let (first, last) = sound_span(speech.samples()).expect("espeak-ng made sound");
            let at = |i: usize| i as f64 / f64::from(rate);
            spans.push((at(offset + first), at(offset + last)));
            samples.extend(speech.samples());
            pause = spoken(line.reply) + REPLY_MARGIN;
        }
        samples.extend(std::iter::repeat_n(0, samples_for(rate, pause)));
        let mut resampler = Resampler::new(rate, CALL_RATE, 1).expect("resampler");
        let speech = AudioFrame::mono(samples, rate);
        let mut out = resampler.process(&speech).expect("resampled");
        out.append(&resampler.flush().expect("flushed"))
            .expect("same format");
        CallerAudio {
            samples: out.into_samples().into(),
            spans,
        }
    }

    fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(CALL_RATE)
    }
}

/// `text` spoken by espeak-ng (mono, 22.05 kHz), as in `tests/common/speech.rs`.
fn espeak(text: &str) -> AudioFrame {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg("--")
        .arg(text)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("espeak-ng failed ({status}) speaking {text:?}"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "espeak-ng is not installed; the voice benchmark needs it \
             (Debian/Ubuntu: apt-get install -y espeak-ng)"
        ),
        Err(err) => panic!("cannot run espeak-ng: {err}"),
    }
    let speech = read_wav(&path).expect("espeak-ng wrote a readable WAV file");
    assert_eq!(speech.channels(), 1, "espeak-ng speaks mono");
    speech
}

/// First and last sample louder than about -40 dBFS.
fn sound_span(samples: &[i16]) -> Option<(usize, usize)> {
    let loud = |s: &i16| s.unsigned_abs() > 330;
    Some((
        samples.iter().position(loud)?,
        samples.iter().rposition(loud)? + 1,
    ))
}

// ---------------------------------------------------------------------------------------
// One call
// ---------------------------------------------------------------------------------------

/// What every call of a run shares: the restaurant (one order store), the VAD thread,
/// the caller's audio and the tone.
struct Shared {
    restaurant: Arc<Restaurant>,
    vad: VadPool,
    vocabulary: Vec<String>,
    caller: CallerAudio,
    /// The speech every call's is made fresh from (they share its tone).
    tts: ToneTts,
}

impl Shared {
    fn new(caller: CallerAudio) -> Shared {
        let menu_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/menu.toml");
        let menu = Menu::load(&menu_path).expect("config/menu.toml loads");
        let vocabulary = menu.item_names().into_iter().map(String::from).collect();
        let restaurant = Restaurant {
            menu,
            limits: OrderLimits::default(),
            prompts: Prompts::default(),
            store: OrderStore::open_in_memory().expect("store opens"),
            transfer_to: None,
            small_model: false,
            clock: WallClock::system(),
        };
        Shared {
            restaurant: Arc::new(restaurant),
            vad: VadPool::start(VadAggressiveness::Aggressive),
            vocabulary,
            caller,
            tts: ToneTts::new(TTS_RATE, TONE_PER_CHAR, TTS_FRAME),
        }
    }

    /// Checks that the store holds exactly the orders announced, each the scripted one.
    fn verify_orders(&self, announced: &[i64]) {
        let orders = self
            .restaurant
            .store
            .sqlite()
            .expect("a SQLite store")
            .list_all()
            .expect("orders list");
        assert_eq!(orders.len(), announced.len(), "one order stored per call");
        let stored: BTreeSet<i64> = orders.iter().map(|o| o.id()).collect();
        let told: BTreeSet<i64> = announced.iter().copied().collect();
        assert_eq!(told.len(), announced.len(), "each call got its own number");
        assert_eq!(stored, told, "the numbers announced are the orders stored");
        for order in &orders {
            let json = serde_json::to_value(order).expect("order serializes");
            assert_eq!(json["total_cents"], ORDER_TOTAL_CENTS, "order {json}");
            assert_eq!(json["payment_method"], "card", "order {json}");
            let items: Vec<(String, i64)> = json["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap_or("").into(),
                        i["quantity"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            assert_eq!(
                items,
                [("Bruschetta".into(), 2), ("Grilled Salmon".into(), 1)],
                "order {json}"
            );
        }
    }
}

/// The figures of one verified call.
struct CallFigures {
    /// Call audio processed (stream time), seconds.
    call_audio_s: f64,
    /// Agent audio played, seconds.
    agent_audio_s: f64,
    /// The latencies of each caller turn, as in [`STAGES`].
    latencies: Vec<[Option<Duration>; 3]>,
    /// The order number the agent announced.
    order_number: i64,
}

/// Runs one whole call at `pace` and verifies it.
async fn voice_call(shared: &Shared, pace: Pace) -> CallFigures {
    let llm = InstantLlm::new(script());
    let stt = Arc::new(ScriptedStt::new(LINES.iter().map(|line| line.heard)));
    let tts = Arc::new(shared.tts.fresh());
    let services = VoiceServices {
        stt: stt.clone(),
        tts: tts.clone(),
        vad: shared.vad.clone(),
        vocabulary: shared.vocabulary.clone(),
    };
    let session = AgentSession::new(llm.clone()).start(order_taker(shared.restaurant.clone()));
    let input = CallerInput::new(shared.caller.samples.clone(), pace);
    let (report, sink) = run_call(
        session,
        &services,
        PipelineConfig::default(),
        input,
        AgentSink::default(),
        pace,
    )
    .await
    .expect("the call runs");
    if let Err(problems) = llm.verify() {
        panic!(
            "the scripted call went wrong:\n{problems}\n{}",
            describe(&report)
        );
    }
    let utterances = stt.utterances();
    assert_eq!(
        utterances,
        LINES.len(),
        "utterances sent to STT (VAD split or merged a line?)\n{}",
        describe(&report)
    );
    verify_report(&report, &shared.caller.spans);
    verify_agent_audio(&sink, &tts);
    let last = report.turns.last().expect("turns");
    let order_number = number_after(&last.agent_text, "order number is ")
        .or_else(|| {
            let turn = &report.turns[report.turns.len() - 2];
            number_after(&turn.agent_text, "order number is ")
        })
        .expect("the agent announced the order number");
    CallFigures {
        call_audio_s: report.duration_s,
        agent_audio_s: sink.voiced_frames as f64 * CALLER_FRAME.as_secs_f64(),
        latencies: report
            .turns
            .iter()
            .filter(|t| t.caller_text.is_some())
            .map(|t| {
                let m = &t.metrics;
                [m.commit_to_audio, m.llm_first_token, m.tts_first_byte]
            })
            .collect(),
        order_number,
    }
}

/// The report, for failure messages.
fn describe(report: &CallReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// The greeting, then one turn per caller line, in order; nothing interrupted; the
/// agent silent while the caller speaks; the latencies present.
fn verify_report(report: &CallReport, spans: &[(f64, f64)]) {
    let fail = |what: String| -> ! { panic!("{what}\n{}", describe(report)) };
    if report.turns.len() != LINES.len() + 1 {
        fail(format!(
            "{} turns, expected {}",
            report.turns.len(),
            LINES.len() + 1
        ));
    }
    if report.turns[0].caller_text.is_some() || report.turns[0].agent_text != GREETING {
        fail("the first turn is not the greeting".into());
    }
    if report.summary.interruptions != 0 {
        fail("a turn was interrupted".into());
    }
    for (i, turn) in report.turns.iter().enumerate() {
        let Some((start, end)) = turn.agent_audio_s else {
            fail(format!("turn {i} was not spoken"));
        };
        if i > 0 {
            let line = &LINES[i - 1];
            if turn.caller_text.as_deref() != Some(line.heard) || turn.interrupted {
                fail(format!("turn {i} is not {:?}", line.heard));
            }
            if turn.metrics.commit_to_audio.is_none() {
                fail(format!("turn {i} has no commit_to_audio"));
            }
            if start < spans[i - 1].1 {
                fail(format!(
                    "turn {i}: the agent spoke at {start:.2} s, before the caller finished"
                ));
            }
        }
        if let Some(next) = spans.get(i)
            && end > next.0
        {
            fail(format!(
                "turn {i}: the agent spoke until {end:.2} s, over the caller at {:.2} s",
                next.0
            ));
        }
    }
}

/// Everything synthesized was played, in whole frames at the call's rate.
fn verify_agent_audio(sink: &AgentSink, tts: &ToneTts) {
    assert_eq!(
        sink.wrong_frames, 0,
        "agent frames of the wrong rate or length"
    );
    let played = sink.voiced_frames as f64 * CALLER_FRAME.as_secs_f64();
    let synthesized = tts.synthesized().as_secs_f64();
    let sentences = tts.sentences() as f64;
    // Each sentence may end in a partly filled frame.
    let slack = (sentences + 1.0) * CALLER_FRAME.as_secs_f64();
    assert!(
        played >= synthesized - 0.001 && played <= synthesized + slack,
        "agent audio played {played:.3} s, synthesized {synthesized:.3} s"
    );
}

/// Runs `calls` verified calls, `concurrency` at a time (each slot takes the next call
/// when its call ends). At real-time pace, slot `i` starts `i` x [`STAGGER`] late, as
/// calls do not all start on the same millisecond.
async fn run_calls(
    shared: Arc<Shared>,
    concurrency: usize,
    calls: usize,
    pace: Pace,
) -> Vec<CallFigures> {
    let next = Arc::new(AtomicUsize::new(0));
    let slots: Vec<_> = (0..concurrency.min(calls))
        .map(|slot| {
            let shared = shared.clone();
            let next = next.clone();
            tokio::spawn(async move {
                if pace == Pace::RealTime {
                    tokio::time::sleep(STAGGER * slot as u32).await;
                }
                let mut figures = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < calls {
                    figures.push(voice_call(&shared, pace).await);
                }
                figures
            })
        })
        .collect();
    let mut figures = Vec::with_capacity(calls);
    for slot in slots {
        figures.extend(slot.await.expect("a call panicked"));
    }
    figures
}

// ---------------------------------------------------------------------------------------
// Load (in a child process)
// ---------------------------------------------------------------------------------------

/// One load configuration in this (fresh) process: a fast warm-up call, then `calls`
/// calls at `pace`, `concurrency` at a time, on a multi-thread runtime with one worker per
/// core. Process CPU time, wall time and peak RSS are taken around the calls. Prints one
/// JSON line.
fn load_child(concurrency: usize, calls: usize, pace: Pace) -> Value {
    let caller = CallerAudio::make();
    let caller_audio_s = caller.duration_s();
    let shared = Arc::new(Shared::new(caller));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = rt.metrics().num_workers();
    let (warmup, figures, measured) = rt.block_on(async {
        let warmup = run_calls(shared.clone(), 1, 1, Pace::Fast).await;
        let base_rss = rss_now();
        assert!(
            reset_peak_rss(),
            "cannot reset VmHWM via /proc/self/clear_refs"
        );
        let threads = thread_cpu_ticks();
        let (user, system) = process_cpu_ticks();
        let started = Instant::now();
        let figures = run_calls(shared.clone(), concurrency, calls, pace).await;
        let wall = started.elapsed();
        let (user_after, system_after) = process_cpu_ticks();
        let measured = Measured {
            wall,
            user_ticks: user_after - user,
            system_ticks: system_after - system,
            threads: thread_cpu_delta(&threads, &thread_cpu_ticks()),
            base_rss,
            peak_rss: rss_peak(),
            end_rss: rss_now(),
        };
        (warmup, figures, measured)
    });
    drop(rt);
    let announced: Vec<i64> = warmup
        .iter()
        .chain(&figures)
        .map(|f| f.order_number)
        .collect();
    shared.verify_orders(&announced);

    let tick = clock_tick();
    let call_audio_s: f64 = figures.iter().map(|f| f.call_audio_s).sum();
    let agent_audio_s: f64 = figures.iter().map(|f| f.agent_audio_s).sum();
    let user_s = measured.user_ticks as f64 / tick;
    let system_s = measured.system_ticks as f64 / tick;
    let latencies: BTreeMap<&str, Vec<f64>> = STAGES
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let ms = figures
                .iter()
                .flat_map(|f| f.latencies.iter().filter_map(|l| l[i]))
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
            (*stage, ms)
        })
        .collect();
    let threads: BTreeMap<String, f64> = measured
        .threads
        .iter()
        .map(|(name, ticks)| (name.clone(), *ticks as f64 / tick))
        .collect();
    json!({
        "concurrency": concurrency,
        "calls": calls,
        "pace": pace_name(pace),
        "workers": workers,
        "caller_audio_s_per_call": caller_audio_s,
        "call_audio_s": call_audio_s,
        "agent_audio_s": agent_audio_s,
        "wall_s": measured.wall.as_secs_f64(),
        "cpu_s": user_s + system_s,
        "cpu_user_s": user_s,
        "cpu_system_s": system_s,
        "cpu_s_by_thread": threads,
        "clock_ticks_per_s": tick,
        "rss_before_kib": measured.base_rss,
        "rss_peak_kib": measured.peak_rss,
        "rss_after_kib": measured.end_rss,
        "latencies_ms": latencies,
    })
}

fn pace_name(pace: Pace) -> &'static str {
    match pace {
        Pace::Fast => "fast",
        Pace::RealTime => "real-time",
    }
}

/// Process figures taken around the calls.
struct Measured {
    wall: Duration,
    user_ticks: u64,
    system_ticks: u64,
    threads: BTreeMap<String, u64>,
    base_rss: u64,
    peak_rss: u64,
    end_rss: u64,
}

/// Runs one load child and reads its figures.
fn run_load_child(concurrency: usize, calls: usize, pace: Pace, compact_malloc: bool) -> Value {
    let exe = std::env::current_exe().expect("own executable");
    let mut command = Command::new(exe);
    command.args([
        "--load-child",
        &concurrency.to_string(),
        &calls.to_string(),
        pace_name(pace),
    ]);
    if compact_malloc {
        command.env("GLIBC_TUNABLES", COMPACT_MALLOC);
    }
    let output = command.output().expect("load child runs");
    let malloc = if compact_malloc { "compact" } else { "default" };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let mut figures: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("load child said {line:?}: {e}"));
    figures["malloc"] = json!(malloc);
    figures
}

// ---------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------

/// CPU ticks per thread name between two snapshots (threads that ended in between are
/// missing; threads that started count from zero).
fn thread_cpu_delta(
    before: &HashMap<String, (String, u64)>,
    after: &HashMap<String, (String, u64)>,
) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let start = before.get(tid).map_or(0, |(_, t)| *t);
        let name = if name.starts_with("voice-") || name == "voice" {
            "main".to_string()
        } else {
            name.clone()
        };
        *by_name.entry(name).or_insert(0) += ticks.saturating_sub(start);
    }
    by_name
}

// ---------------------------------------------------------------------------------------
// Components, one at a time on this thread
// ---------------------------------------------------------------------------------------

/// The audio stages alone, on one thread, over the caller audio of one call: CPU time
/// per second of call audio (per second of agent audio for the outbound resampler).
fn measure_components(caller: &CallerAudio, repeats: usize) -> Value {
    let frame = samples_for(CALL_RATE, CALLER_FRAME);
    let call_s = caller.duration_s() * repeats as f64;
    let frames48: Vec<AudioFrame> = caller
        .samples
        .chunks(frame)
        .map(|c| {
            let mut samples = c.to_vec();
            samples.resize(frame, 0);
            AudioFrame::mono(samples, CALL_RATE)
        })
        .collect();

    // inbound: 48 -> 16 kHz
    let mut inbound = Resampler::new(CALL_RATE, CALLER_RATE, 1).expect("resampler");
    let mut frames16 = Vec::new();
    let (inbound_ns, _) = thread_cpu(|| {
        for _ in 0..repeats {
            for f in &frames48 {
                let out = inbound.process(f).expect("resampled");
                if frames16.len() < frames48.len() {
                    frames16.push(out);
                }
            }
        }
    });
    let samples16: Vec<i16> = frames16.iter().flat_map(|f| f.samples().to_vec()).collect();
    let frames16: Vec<Vec<i16>> = samples16
        .chunks_exact(samples_for(CALLER_RATE, CALLER_FRAME))
        .map(<[i16]>::to_vec)
        .collect();

    // VAD alone
    let mut vad = webrtc_vad::Vad::new_with_rate_and_mode(
        webrtc_vad::SampleRate::Rate16kHz,
        webrtc_vad::VadMode::Aggressive,
    );
    let mut speech = 0;
    let (vad_ns, _) = thread_cpu(|| {
        for _ in 0..repeats {
            for f in &frames16 {
                speech += usize::from(vad.is_voice_segment(f).unwrap_or(false));
            }
        }
    });
    assert!(speech > 0, "the VAD heard the caller");

    // VAD through the pool's thread (as the pipeline uses it): both threads' CPU
    let pool = VadPool::start(VadAggressiveness::Aggressive);
    let mut stream = pool.open_stream();
    let before = process_cpu_ns();
    let started = Instant::now();
    for _ in 0..repeats {
        for f in &frames16 {
            stream
                .classify_blocking(AudioFrame::mono(f.clone(), CALLER_RATE))
                .expect("classified");
        }
    }
    let pool_wall = started.elapsed();
    let pool_ns = process_cpu_ns() - before;
    let round_trips = (repeats * frames16.len()) as f64;

    // outbound: 24 -> 48 kHz, 50 ms tone frames, 60 s of agent audio
    let tts = ToneTts::new(TTS_RATE, TONE_PER_CHAR, TTS_FRAME);
    let tone = tts.tone_frame();
    let agent_s = 60.0;
    let tone_frames = (agent_s / TTS_FRAME.as_secs_f64()) as usize;
    let mut outbound = Resampler::new(TTS_RATE, CALL_RATE, 1).expect("resampler");
    let (outbound_ns, _) = thread_cpu(|| {
        for _ in 0..tone_frames {
            let out = outbound
                .process(&AudioFrame::mono(tone.to_vec(), TTS_RATE))
                .expect("resampled");
            assert!(!out.samples().is_empty() || tone_frames < 2);
        }
    });

    // a new outbound resampler, as each sentence makes one
    let builds = 200;
    let (build_ns, _) = thread_cpu(|| {
        for _ in 0..builds {
            drop(Resampler::new(TTS_RATE, CALL_RATE, 1).expect("resampler"));
        }
    });

    let per_call_s = |ns: u64| ns as f64 / 1000.0 / call_s;
    json!({
        "method": "one thread, /proc/thread-self/schedstat CPU time; the pool round trip \
                   sums all threads' schedstat",
        "call_audio_s": call_s,
        "inbound_resample_us_per_call_s": round(per_call_s(inbound_ns), 2),
        "vad_us_per_call_s": round(per_call_s(vad_ns), 2),
        "vad_pool_round_trip_cpu_us_per_call_s": round(per_call_s(pool_ns), 2),
        "vad_pool_round_trip_wall_us": round(pool_wall.as_secs_f64() * 1e6 / round_trips, 2),
        "outbound_resample_us_per_agent_s": round(outbound_ns as f64 / 1000.0 / agent_s, 2),
        "outbound_resampler_new_us": round(build_ns as f64 / 1000.0 / f64::from(builds), 2),
    })
}

/// Runs `work` and returns the CPU time this thread spent in it.
fn thread_cpu<T>(work: impl FnOnce() -> T) -> (u64, T) {
    let before = thread_cpu_ns().expect("/proc/thread-self/schedstat");
    let output = work();
    let after = thread_cpu_ns().expect("/proc/thread-self/schedstat");
    (after - before, output)
}

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

/// The per-turn latencies (`TurnMetrics`) collected: the figure asked for, and two of its
/// parts (turn committed -> first model token; first speech request -> its first audio).
const STAGES: [&str; 3] = ["commit_to_audio", "llm_first_token", "tts_first_byte"];

/// A number field of a child's figures (NaN if absent).
fn num(figures: &Value, field: &str) -> f64 {
    figures[field].as_f64().unwrap_or(f64::NAN)
}

/// The derived figures of one load configuration.
struct Load {
    raw: Value,
    /// `commit_to_audio`.
    latency: Stats,
    /// Every stage in [`STAGES`].
    stages: Vec<Stats>,
    cpu_per_call_s: f64,
    realtime_factor: f64,
    per_session_kib: f64,
}

impl Load {
    fn of(raw: Value) -> Load {
        let stages: Vec<Stats> = STAGES
            .iter()
            .map(|stage| {
                let ms: Vec<f64> = raw["latencies_ms"][stage]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .collect();
                Stats::of(&ms)
            })
            .collect();
        let call_s = num(&raw, "call_audio_s");
        let growth = num(&raw, "rss_peak_kib") - num(&raw, "rss_before_kib");
        Load {
            latency: stages[0],
            stages,
            cpu_per_call_s: num(&raw, "cpu_s") / call_s,
            realtime_factor: call_s / num(&raw, "wall_s"),
            per_session_kib: growth / num(&raw, "concurrency"),
            raw,
        }
    }

    fn concurrency(&self) -> usize {
        self.raw["concurrency"].as_u64().unwrap_or(0) as usize
    }

    fn to_json(&self) -> Value {
        let mut figures = self.raw.clone();
        if let Some(map) = figures.as_object_mut() {
            map.remove("latencies_ms");
        }
        for (stage, stats) in STAGES.iter().zip(&self.stages) {
            figures[*stage] = stats.to_json("ms", 3);
        }
        figures["cpu_s_per_call_s"] = json!(round(self.cpu_per_call_s, 5));
        figures["calls_per_core"] = json!(round(1.0 / self.cpu_per_call_s, 2));
        figures["realtime_factor"] = json!(round(self.realtime_factor, 2));
        figures["rss_growth_kib"] =
            json!(num(&self.raw, "rss_peak_kib") - num(&self.raw, "rss_before_kib"));
        figures["per_session_kib"] = json!(round(self.per_session_kib, 2));
        figures
    }
}

// ---------------------------------------------------------------------------------------
// Machine, report
// ---------------------------------------------------------------------------------------

fn run_benchmark(quick: bool) {
    let machine = machine::machine();
    eprintln!("caller audio: espeak-ng ...");
    let caller = CallerAudio::make();
    eprintln!("components ...");
    let components = measure_components(&caller, if quick { 2 } else { 10 });

    let mut loads = Vec::new();
    for (concurrency, full, short) in LOADS {
        let calls = if quick { short } else { full };
        eprintln!("load: {concurrency} concurrent, {calls} calls, fast (child process) ...");
        loads.push(Load::of(run_load_child(
            concurrency,
            calls,
            Pace::Fast,
            false,
        )));
    }
    let real_time = (!quick).then(|| {
        let (concurrency, calls) = REAL_TIME_LOAD;
        eprintln!("load: {concurrency} concurrent, {calls} calls, real time (child process) ...");
        Load::of(run_load_child(concurrency, calls, Pace::RealTime, false))
    });
    let (largest, _, short) = LOADS[LOADS.len() - 1];
    eprintln!("memory: {largest} concurrent, fast, compact malloc (child process) ...");
    let compact = Load::of(run_load_child(
        largest,
        short.min(largest),
        Pace::Fast,
        true,
    ));

    let sequential = &loads[0];
    let busiest = &loads[loads.len() - 1];
    // Cores per live session: the real-time run when there is one (frames arrive every
    // 20 ms, so threads sleep and wake as in a server), else the busiest fast run.
    let live = real_time.as_ref().unwrap_or(busiest);
    let cores_per_session = live.cpu_per_call_s;
    let livekit = (
        LIVEKIT_CORES / LIVEKIT_SESSIONS.1,
        LIVEKIT_CORES / LIVEKIT_SESSIONS.0,
    );
    let headline = json!({
        "commit_to_audio_median_ms": round(sequential.latency.median, 3),
        "commit_to_audio_p99_ms": round(sequential.latency.p99, 3),
        "commit_to_audio_turns": sequential.latency.count,
        "cpu_s_per_call_s": round(cores_per_session, 5),
        "calls_per_core": round(1.0 / cores_per_session, 2),
        "cpu_from": format!("{} calls at once, {}", live.concurrency(), live.raw["pace"].as_str().unwrap_or("?")),
        "cpu_s_per_call_s_fast": round(busiest.cpu_per_call_s, 5),
        "calls_per_core_fast": round(1.0 / busiest.cpu_per_call_s, 2),
        "per_session_kib_fast": round(busiest.per_session_kib, 2),
        "per_session_kib_real_time": real_time.as_ref().map(|l| round(l.per_session_kib, 2)),
        "per_session_kib_fast_compact_malloc": round(compact.per_session_kib, 2),
        "realtime_factor_all_cores": round(busiest.realtime_factor, 2),
        "realtime_factor_from_concurrency": busiest.concurrency(),
    });
    let comparison = json!({
        "livekit_python_worker": {
            "cores": LIVEKIT_CORES,
            "sessions": [LIVEKIT_SESSIONS.0, LIVEKIT_SESSIONS.1],
            "cores_per_session": [round(livekit.0, 3), round(livekit.1, 3)],
        },
        "ours_cores_per_session": round(cores_per_session, 5),
        "ours_from": headline["cpu_from"].clone(),
        "ratio": [round(livekit.0 / cores_per_session, 2), round(livekit.1 / cores_per_session, 2)],
        "caveat": "not like for like: the LiveKit figure includes real STT/TTS/LLM clients, \
                   WebRTC transport (Opus, SRTP), Silero VAD and the turn detector model; \
                   ours has instant in-process providers, webrtc-vad and no codec or network",
    });

    let mut rows: Vec<&Load> = loads.iter().collect();
    rows.extend(&real_time);
    rows.push(&compact);
    print_report(&machine, &caller, &rows, &components, &comparison);
    let report = json!({
        "bench": "voice",
        "version": 1,
        "quick": quick,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine,
        "loadavg_at_end": machine::loadavg(),
        "call": {
            "caller_turns": LINES.len(),
            "caller_says": LINES.iter().map(|l| l.says).collect::<Vec<_>>(),
            "caller_audio_s": round(caller.duration_s(), 3),
            "caller_rate_hz": CALL_RATE,
            "output_rate_hz": CALL_RATE,
            "pipeline_rate_hz": CALLER_RATE,
            "frame_ms": CALLER_FRAME.as_millis(),
            "stt": "instant, the next scripted line",
            "tts": format!("instant tone, {} ms per character at {TTS_RATE} Hz in {} ms frames",
                TONE_PER_CHAR.as_millis(), TTS_FRAME.as_millis()),
            "llm": "instant ScriptedLlm, one per request (no request log kept)",
            "vad": "webrtc-vad, Aggressive, one VadPool thread per process",
            "pace": "Fast",
        },
        "headline": headline,
        "latency_method": "TurnMetrics::commit_to_audio of every caller turn (end-of-utterance \
                           decision -> first agent audio frame out), pooled; the headline is \
                           the run with one call at a time",
        "cpu_method": "process utime+stime from /proc/self/stat (clock ticks / CLK_TCK) \
                       around the calls (warm-up call excluded), divided by the call audio \
                       processed (CallReport::duration_s summed); calls per core = 1 / that",
        "memory_method": "(VmHWM - VmRSS before) / concurrent calls; VmHWM reset via \
                          /proc/self/clear_refs after a warm-up call; a fresh child process \
                          per configuration",
        "loads": loads.iter().map(Load::to_json).collect::<Vec<_>>(),
        "real_time": real_time.as_ref().map(Load::to_json),
        "memory_compact_malloc": {
            "malloc": COMPACT_MALLOC,
            "figures": compact.to_json(),
        },
        "components": components,
        "comparison": comparison,
    });
    let path = machine::report_path("bench-voice.json");
    let text = serde_json::to_string_pretty(&report).expect("report serializes");
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, text + "\n").expect("write the JSON report");
    println!("\nwritten: {}", path.display());
}

/// The whole report, in the order a reader asks: what was measured where, the latency the
/// pipeline adds, CPU and memory per call, what the audio stages cost alone, and the
/// comparison with LiveKit's Python worker.
fn print_report(
    machine: &Value,
    caller: &CallerAudio,
    rows: &[&Load],
    components: &Value,
    comparison: &Value,
) {
    print_setup(machine, caller);
    print_latency(rows);
    print_cpu_and_memory(rows);
    print_components(components, rows);
    print_comparison(comparison);
}

/// The call, the machine and how busy it was.
fn print_setup(machine: &Value, caller: &CallerAudio) {
    println!(
        "\nBella Vista voice calls: {} caller turns, {:.1} s of caller audio per call at {} kHz, \
         agent audio out at {} kHz; instant STT/TTS/LLM",
        LINES.len(),
        caller.duration_s(),
        CALL_RATE / 1000,
        CALL_RATE / 1000,
    );
    println!(
        "machine: {} x {}, {}, commit {}{}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
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
    let nproc = machine["nproc"].as_f64().unwrap_or(1.0);
    if let Some(load) = machine["loadavg_at_start"][0].as_f64() {
        let busy = if load > 0.5 * nproc {
            "  <- the machine was busy: wall times and latencies are inflated"
        } else {
            ""
        };
        println!("load average at start: {load:.2} on {nproc} CPUs{busy}");
    }
}

/// Commit to first agent audio per load, and its parts at the lowest load.
fn print_latency(rows: &[&Load]) {
    println!("\nlatency the pipeline adds: commit -> first agent audio frame (ms)");
    println!(
        "{:>10} {:>9} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "concurrent", "pace", "calls", "turns", "median", "p90", "p99", "max"
    );
    for load in rows.iter().filter(|l| l.raw["malloc"] == "default") {
        let s = load.latency;
        println!(
            "{:>10} {:>9} {:>6} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            load.concurrency(),
            load.raw["pace"].as_str().unwrap_or("?"),
            load.raw["calls"].as_u64().unwrap_or(0),
            s.count,
            s.median,
            s.p90,
            s.p99,
            s.max
        );
    }
    if let Some(sequential) = rows.first() {
        let [_, llm, tts] = &sequential.stages[..] else {
            unreachable!("three stages")
        };
        println!(
            "parts at K = {}: commit -> first model token median {:.3}, p99 {:.3}; first \
             speech request -> its first audio median {:.3}, p99 {:.3}",
            sequential.concurrency(),
            llm.median,
            llm.p99,
            tts.median,
            tts.p99
        );
    }
}

/// CPU and memory per call, one row per load configuration.
fn print_cpu_and_memory(rows: &[&Load]) {
    let workers = rows
        .first()
        .map_or(json!("?"), |l| l.raw["workers"].clone());
    println!(
        "\nCPU and memory: K calls at once, multi-thread runtime ({workers} workers), a fresh \
         process per row"
    );
    println!(
        "{:>4} {:>9} {:>6} {:>8} {:>7} {:>6} {:>6} {:>5} {:>5} {:>9} {:>10} {:>8} {:>8}",
        "K",
        "pace",
        "calls",
        "call s",
        "wall s",
        "RTF",
        "CPU s",
        "sys%",
        "vad%",
        "CPU ms/s",
        "calls/core",
        "RSS+ MiB",
        "KiB/call"
    );
    for load in rows {
        let cpu = num(&load.raw, "cpu_s");
        let growth = num(&load.raw, "rss_peak_kib") - num(&load.raw, "rss_before_kib");
        println!(
            "{:>4} {:>9} {:>6} {:>8.0} {:>7.2} {:>6.0} {:>6.2} {:>5.0} {:>5.0} {:>9.3} {:>10.0} \
             {:>8.1} {:>8.1}{}",
            load.concurrency(),
            load.raw["pace"].as_str().unwrap_or("?"),
            load.raw["calls"].as_u64().unwrap_or(0),
            num(&load.raw, "call_audio_s"),
            num(&load.raw, "wall_s"),
            load.realtime_factor,
            cpu,
            100.0 * num(&load.raw, "cpu_system_s") / cpu,
            100.0 * load.raw["cpu_s_by_thread"]["vad"].as_f64().unwrap_or(0.0) / cpu,
            1000.0 * load.cpu_per_call_s,
            1.0 / load.cpu_per_call_s,
            growth / 1024.0,
            load.per_session_kib,
            if load.raw["malloc"] == "compact" {
                "  compact malloc"
            } else {
                ""
            },
        );
    }
    println!(
        "RTF: call audio s / wall s. CPU ms/s: CPU ms per second of call audio (= cores per \
         real-time call x 1000).\nsys%, vad%: system time, and the VAD thread, in % of CPU. \
         RSS+: peak RSS growth; KiB/call: RSS+ / K."
    );
}

/// The audio stages alone, and their share of a call's CPU.
fn print_components(components: &Value, rows: &[&Load]) {
    println!("\ncomponents alone, one thread (µs of CPU per second of call audio)");
    println!(
        "inbound resample 48 -> 16 kHz {:.0}; webrtc-vad {:.0}; outbound resample 24 -> 48 kHz \
         {:.0} per second of agent audio",
        num(components, "inbound_resample_us_per_call_s"),
        num(components, "vad_us_per_call_s"),
        num(components, "outbound_resample_us_per_agent_s"),
    );
    println!(
        "VAD through the pool thread, one frame at a time: {:.0} (a round trip takes {:.0} µs); \
         a new 24 -> 48 kHz resampler (one per sentence): {:.0} µs",
        num(components, "vad_pool_round_trip_cpu_us_per_call_s"),
        num(components, "vad_pool_round_trip_wall_us"),
        num(components, "outbound_resampler_new_us"),
    );
    let busiest = rows
        .iter()
        .filter(|l| l.raw["malloc"] == "default" && l.raw["pace"] == "fast")
        .max_by_key(|l| l.concurrency());
    let real_time = rows.iter().find(|l| l.raw["pace"] == "real-time");
    for load in busiest.into_iter().chain(real_time) {
        let agent_share = num(&load.raw, "agent_audio_s") / num(&load.raw, "call_audio_s");
        let dsp = num(components, "inbound_resample_us_per_call_s")
            + num(components, "vad_us_per_call_s")
            + agent_share * num(components, "outbound_resample_us_per_agent_s");
        let total = 1e6 * load.cpu_per_call_s;
        println!(
            "audio DSP (resampling both ways, VAD; the agent speaks {:.0}% of the call): {dsp:.0} \
             of the {total:.0} µs per second of call audio at K = {}, {} ({:.0}%)",
            100.0 * agent_share,
            load.concurrency(),
            load.raw["pace"].as_str().unwrap_or("?"),
            100.0 * dsp / total,
        );
    }
}

/// Cores per session against LiveKit's Python worker.
fn print_comparison(comparison: &Value) {
    println!(
        "\ncomparison: LiveKit's Python worker, ~{LIVEKIT_CORES:.0} cores for {:.0}-{:.0} \
         sessions = {:.3}-{:.3} cores per session;\nours {:.5} cores per session ({}) = \
         {:.0}-{:.0}x less",
        LIVEKIT_SESSIONS.0,
        LIVEKIT_SESSIONS.1,
        LIVEKIT_CORES / LIVEKIT_SESSIONS.1,
        LIVEKIT_CORES / LIVEKIT_SESSIONS.0,
        num(comparison, "ours_cores_per_session"),
        comparison["ours_from"].as_str().unwrap_or("?"),
        comparison["ratio"][0].as_f64().unwrap_or(f64::NAN),
        comparison["ratio"][1].as_f64().unwrap_or(f64::NAN),
    );
    println!("  ({})", comparison["caveat"].as_str().unwrap_or(""));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
