//! The turn benchmark: the framework's own time per caller turn and its memory per call.
//!
//! A scripted Bella Vista order of exactly 20 caller turns (menu questions, three items, a
//! bad-input error and recovery, a change of item 1 during payment, a refused payment
//! method, the read-back, the confirmation, small talk) runs against the real order taker
//! with an instant model (`ScriptedLlm`), so every microsecond measured is the
//! framework's: the session engine, tasks, task groups, tools, the order store.
//!
//! ```text
//! cargo bench --bench turns              # 200 conversations per configuration
//! cargo bench --bench turns -- --quick   # 20 conversations per configuration
//! ```
//!
//! Prints a table and writes every figure, with the machine and the commit, to
//! `target/bench-turns.json`. Every conversation is verified (each scripted request was
//! made and matched its checks, each turn made the expected number of model requests,
//! the order was stored with the expected number and total), so a broken conversation
//! fails the benchmark instead of being measured.
//!
//! Memory: the crate forbids `unsafe` code (`[lints.rust] unsafe_code = "forbid"` in
//! Cargo.toml, which covers benches too), so a counting `#[global_allocator]` cannot be
//! written here. Memory is measured from the resident set instead: 100 calls run
//! round-robin on one runtime in a fresh child process with a compact glibc malloc (one
//! arena, no caches, trimmed on every free), and the growth of the peak RSS (`VmHWM`,
//! reset through `/proc/self/clear_refs`) divided by 100 is the memory of one call.
//! See `benches/README.md`.

#[path = "common/machine.rs"]
mod machine;
#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bella_vista::agent::testing::TestSession;
use bella_vista::bella_vista::menu::Menu;
use bella_vista::bella_vista::order::OrderLimits;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::store::OrderStore;
use bella_vista::bella_vista::{Restaurant, WallClock, order_taker};
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRequest, Llm, LlmStream};
use procfs::{reset_peak_rss, rss_now, rss_peak};
use serde_json::{Value, json};
use stats::{Stats, round};

/// Caller turns in the scripted order.
const CALLER_TURNS: usize = 20;
/// Conversations per timing configuration, full run and `--quick`.
const CONVERSATIONS: (usize, usize) = (200, 20);
/// Unmeasured conversations before each timing configuration.
const WARMUP: usize = 5;
/// Sessions held open at once for the per-session memory figure.
const CONCURRENT_SESSIONS: usize = 100;
/// Caller turns each concurrent session is driven through before it is held: the
/// caller has just changed item 1 during payment and payment was re-entered.
const HELD_AFTER_TURNS: usize = 12;
/// Caller turns after which the per-session memory is measured: greeted, ordering,
/// items, mid-order, read-back entered (the call's largest state), confirmed and
/// summarized, end of call.
const MEMORY_PROFILE: [usize; 7] = [0, 4, 8, 12, 15, 16, 20];
/// Malloc settings of the memory child: one arena, memory returned on every free.
const COMPACT_MALLOC: &str = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=0:\
     glibc.malloc.top_pad=0:glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let model = Model::from_arg(&args[i + 1]);
        let turns = args[i + 2].parse().expect("caller turns");
        println!("{}", memory_child(model, turns));
        return;
    }
    run_benchmark(quick);
}

// ---------------------------------------------------------------------------------------
// The scripted call
// ---------------------------------------------------------------------------------------

/// One caller turn: what the caller says, and the model's answers until the agent
/// listens again (one answer per model request).
struct Turn {
    says: &'static str,
    answers: Vec<Step>,
}

/// The model's answers to the greeting.
fn greeting() -> Vec<Step> {
    vec![say("Welcome to Bella Vista! What can I get you?")]
}

/// Caller turn `number` (1 to 20) of the scripted order. `order_number` is the id the
/// store will give this order. Built only when the turn is sent, so that no session
/// carries its future script around (it would count in the memory figures).
///
/// The order ends as Caesar Salad ($10) + Grilled Salmon ($28) + Tiramisu ($10) = $48.00,
/// card with a 15% tip: $55.20.
fn caller_turn(number: usize, order_number: i64) -> Turn {
    match number {
        1 => turn(
            "Hi! What appetizers do you have?",
            vec![
                menu_lookup("appetizers"),
                say("Bruschetta, Caesar salad and calamari."),
            ],
        ),
        2 => turn(
            "And the mains?",
            vec![
                menu_lookup("mains"),
                say("Salmon, ribeye, pasta primavera and pizza."),
            ],
        ),
        3 => turn(
            "Are you open on Sundays?",
            vec![say("Yes, every day from noon to ten.")],
        ),
        4 => turn(
            "Great, I'd like to order",
            vec![
                Step::reply()
                    .expect_tool("take_order")
                    .call("take_order", json!({})),
                item_enters("What would you like first?"),
            ],
        ),
        5 => turn(
            "What comes on the bruschetta?",
            vec![
                menu_lookup("appetizers"),
                say("Tomatoes, garlic, basil and olive oil."),
            ],
        ),
        6 => turn(
            "Two bruschetta, no garlic, and something else",
            vec![
                confirm_item("Bruschetta", 2, &["no garlic"], true),
                item_enters("And the next item?"),
            ],
        ),
        7 => turn(
            "The salmon steak",
            vec![
                bad_item_calls(),
                Step::reply()
                    .expect(|r| last_tool_output_contains(r, "no tool named"))
                    .text("Sorry, which dish was that?"),
            ],
        ),
        8 => turn(
            "The grilled salmon, sauce on the side, and one more thing",
            vec![
                confirm_item("Grilled Salmon", 1, &["sauce on the side"], true),
                item_enters("What else?"),
            ],
        ),
        9 => turn(
            "Which desserts do you have?",
            vec![
                menu_lookup("desserts"),
                say("Tiramisu, cheesecake and panna cotta."),
            ],
        ),
        10 => turn(
            "A tiramisu, that's all",
            vec![
                confirm_item("Tiramisu", 1, &[], false),
                payment_enters("$62.00"),
            ],
        ),
        11 => turn(
            "Actually, change my first item",
            vec![
                regress_to_item_1(),
                item_enters("Sure, what instead of the bruschetta?"),
            ],
        ),
        12 => turn(
            "A Caesar salad instead, dressing on the side",
            vec![
                confirm_item("Caesar Salad", 1, &["dressing on the side"], false),
                payment_enters("$48.00"),
            ],
        ),
        13 => turn(
            "Bitcoin, with a 15 percent tip",
            vec![
                Step::reply().call(
                    "confirm_payment",
                    json!({"method": "bitcoin", "tip_percentage": 15}),
                ),
                Step::reply()
                    .expect(|r| last_tool_output_contains(r, "not a payment method"))
                    .text("Sorry, we take card, cash or mobile."),
            ],
        ),
        14 => turn(
            "Card then, 15 percent",
            vec![
                confirm_payment("card", 15.0),
                review_enters("Total: $55.20"),
            ],
        ),
        15 => turn(
            "Could you repeat the total?",
            vec![say("The total is $55.20.")],
        ),
        16 => turn("Yes, place it", confirm_and_announce(order_number)),
        17 => turn("How long will it take?", vec![say("About thirty minutes.")]),
        18 => turn(
            "Do you have parking?",
            vec![say("Yes, right behind the restaurant.")],
        ),
        19 => turn(
            "Is the tiramisu homemade?",
            vec![say("Made fresh every morning.")],
        ),
        20 => turn(
            "Thanks, bye!",
            vec![say("Thank you for calling Bella Vista. Goodbye!")],
        ),
        _ => panic!("the script has {CALLER_TURNS} caller turns, not {number}"),
    }
}

/// Every caller turn, for the report.
fn all_turns() -> Vec<Turn> {
    (1..=CALLER_TURNS).map(|n| caller_turn(n, 1)).collect()
}

fn turn(says: &'static str, answers: Vec<Step>) -> Turn {
    Turn { says, answers }
}

/// A plain text reply.
fn say(text: &str) -> Step {
    Step::reply().text(text)
}

/// The model looks up a menu category.
fn menu_lookup(category: &str) -> Step {
    Step::reply()
        .expect_tool("check_menu")
        .call("check_menu", json!({ "category": category }))
}

/// An item task entering: it asks, with `confirm_item` and `out_of_scope` withheld.
fn item_enters(question: &str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_item")
        .expect_no_tool("out_of_scope")
        .text(question)
}

/// The model confirms an item.
fn confirm_item(name: &str, quantity: i64, modifications: &[&str], more_items: bool) -> Step {
    Step::reply().call(
        "confirm_item",
        json!({"name": name, "quantity": quantity, "modifications": modifications,
               "more_items": more_items}),
    )
}

/// Bad input from the model in one reply: an unknown dish, a zero quantity, malformed
/// JSON and an unknown tool; each becomes a tool error the model reads.
fn bad_item_calls() -> Step {
    Step::reply()
        .call(
            "confirm_item",
            json!({"name": "salmon steak", "quantity": 1, "modifications": [], "more_items": true}),
        )
        .call(
            "confirm_item",
            json!({"name": "Grilled Salmon", "quantity": 0, "modifications": [], "more_items": true}),
        )
        .call_raw("confirm_item", "{\"name\": \"Grilled Salmon\", \"quantity\": ")
        .call("order_pizza", json!({}))
}

/// During payment the caller changes item 1: `out_of_scope` offers the three items.
fn regress_to_item_1() -> Step {
    Step::reply()
        .expect(|r| match regression_choices(r) {
            Some(ids) if ids == ["item_1", "item_2", "item_3"] => Ok(()),
            other => Err(format!("regression choices {other:?}")),
        })
        .call("out_of_scope", json!({"task_ids": ["item_1"]}))
}

/// The payment task entering; checks the subtotal in its instructions.
fn payment_enters(subtotal: &'static str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_payment")
        .expect_instructions(subtotal)
        .text("How would you like to pay?")
}

/// The model confirms payment.
fn confirm_payment(method: &str, tip: f64) -> Step {
    Step::reply().call(
        "confirm_payment",
        json!({"method": method, "tip_percentage": tip}),
    )
}

/// The read-back entering; checks the total in its instructions.
fn review_enters(total: &'static str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_order")
        .expect_instructions(total)
        .text("Shall I place the order?")
}

/// The caller's yes, the task group's summary, and the order taker announcing the
/// number the store gave the order.
fn confirm_and_announce(order_number: i64) -> Vec<Step> {
    vec![
        Step::reply()
            .expect_tool("confirm_order")
            .call("confirm_order", json!({})),
        Step::summary("The caller ordered and confirmed."),
        Step::reply()
            .expect(move |r| last_tool_output_contains(r, &format!("order number {order_number}")))
            .text(format!("Your order number is {order_number}. Thank you!")),
    ]
}

/// Whether the last tool output in the request contains `text`.
fn last_tool_output_contains(request: &ChatRequest, text: &str) -> Result<(), String> {
    let last = request.items.iter().rev().find_map(|item| match item {
        ChatItem::FunctionOutput { output, .. } => Some(output.as_str()),
        _ => None,
    });
    match last {
        Some(output) if output.contains(text) => Ok(()),
        other => Err(format!("last tool output {other:?} lacks {text:?}")),
    }
}

/// The enum of `out_of_scope`'s `task_ids`, if offered.
fn regression_choices(request: &ChatRequest) -> Option<Vec<String>> {
    let tool = request.tools.iter().find(|t| t.name == "out_of_scope")?;
    let values = tool.parameters["properties"]["task_ids"]["items"]["enum"].clone();
    serde_json::from_value(values).ok()
}

// ---------------------------------------------------------------------------------------
// The instant model
// ---------------------------------------------------------------------------------------

/// Which test double answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// The plain `ScriptedLlm`: it keeps a copy of every request it received.
    Recording,
    /// The same steps and checks, one `ScriptedLlm` per request, keeping nothing: memory
    /// figures then show the framework rather than the double's request log.
    Forgetful,
}

impl Model {
    /// How the memory child is told which double to use.
    fn arg(self) -> &'static str {
        match self {
            Model::Recording => "recording",
            Model::Forgetful => "forgetful",
        }
    }

    fn from_arg(arg: &str) -> Model {
        match arg {
            "recording" => Model::Recording,
            "forgetful" => Model::Forgetful,
            other => panic!("unknown model {other:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Model::Recording => "ScriptedLlm",
            Model::Forgetful => "ScriptedLlm, requests not kept",
        }
    }
}

/// An instant model that answers from a script and counts the requests it gets.
#[derive(Clone)]
struct InstantLlm {
    answers: Answers,
    requests: Arc<AtomicUsize>,
}

#[derive(Clone)]
enum Answers {
    Recording(ScriptedLlm),
    Forgetful(Arc<Forgetful>),
}

/// Steps answered one `ScriptedLlm` at a time; check failures are collected.
struct Forgetful {
    steps: Mutex<VecDeque<Step>>,
    failures: Mutex<Vec<String>>,
}

impl InstantLlm {
    fn new(model: Model, steps: Vec<Step>) -> Self {
        let answers = match model {
            Model::Recording => Answers::Recording(ScriptedLlm::new(steps)),
            Model::Forgetful => Answers::Forgetful(Arc::new(Forgetful {
                steps: Mutex::new(steps.into()),
                failures: Mutex::default(),
            })),
        };
        InstantLlm {
            answers,
            requests: Arc::default(),
        }
    }

    /// Appends the answers of the next caller turn.
    fn push(&self, steps: Vec<Step>) {
        match &self.answers {
            Answers::Recording(llm) => llm.push_steps(steps),
            Answers::Forgetful(forgetful) => lock(&forgetful.steps).extend(steps),
        }
    }

    /// Requests received so far.
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `Ok` when every step was requested and every check passed.
    fn verify(&self) -> Result<(), String> {
        match &self.answers {
            Answers::Recording(llm) => llm.verify(),
            Answers::Forgetful(forgetful) => forgetful.verify(),
        }
    }
}

impl Llm for InstantLlm {
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let index = self.requests.fetch_add(1, Ordering::SeqCst);
        match &self.answers {
            Answers::Recording(llm) => llm.chat(request),
            Answers::Forgetful(forgetful) => forgetful.chat(index, request),
        }
    }
}

impl Forgetful {
    /// Answers with the next step through a one-step `ScriptedLlm` (same checks, same
    /// stream), notes any mismatch, and lets the request go.
    fn chat(&self, index: usize, request: ChatRequest) -> LlmStream {
        let step = lock(&self.steps).pop_front();
        let one = ScriptedLlm::new(step);
        let stream = one.chat(request);
        if let Err(problem) = one.verify() {
            lock(&self.failures).push(format!("request #{index}: {problem}"));
        }
        stream
    }

    /// Like [`ScriptedLlm::verify`]: every step requested and every check passed.
    fn verify(&self) -> Result<(), String> {
        let mut problems = lock(&self.failures).clone();
        let left = lock(&self.steps).len();
        if left > 0 {
            problems.push(format!("{left} scripted step(s) never requested"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Driving a call
// ---------------------------------------------------------------------------------------

/// Where confirmed orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// SQLite in memory: no disk, no fsync.
    InMemory,
    /// SQLite in a temp file, WAL with `synchronous=FULL`: one fsync'd commit per order.
    File,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::InMemory => "in-memory store",
            StoreKind::File => "file store (fsync)",
        }
    }
}

/// The restaurant as configured in `config/`, and the temp folder of its database.
struct Bella {
    restaurant: Arc<Restaurant>,
    _dir: Option<TempDir>,
}

impl Bella {
    fn open(kind: StoreKind) -> Bella {
        let (store, dir) = match kind {
            StoreKind::InMemory => (OrderStore::open_in_memory().expect("store opens"), None),
            StoreKind::File => {
                let dir = TempDir::new();
                let store = OrderStore::open(&dir.path.join("orders.db")).expect("store opens");
                (store, Some(dir))
            }
        };
        let menu_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/menu.toml");
        let restaurant = Restaurant {
            menu: Menu::load(&menu_path).expect("config/menu.toml loads"),
            limits: OrderLimits::default(),
            prompts: Prompts::default(),
            store,
            transfer_to: None,
            small_model: false,
            clock: WallClock::system(),
        };
        Bella {
            restaurant: Arc::new(restaurant),
            _dir: dir,
        }
    }

    /// Checks that exactly `count` orders are stored, each for the scripted $55.20.
    fn verify_orders(&self, count: usize) {
        let orders = self
            .restaurant
            .store
            .sqlite()
            .expect("a SQLite store")
            .list_all()
            .expect("orders list");
        assert_eq!(orders.len(), count, "one order stored per conversation");
        for order in &orders {
            assert_eq!(order.total().0, 5520, "order {} total", order.id());
        }
    }
}

/// A unique folder under the system temp dir, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("bella-vista-bench-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A call in progress: the session, its model, and how far the script has got.
struct Call {
    session: TestSession,
    llm: InstantLlm,
    order_number: i64,
    turns_sent: usize,
}

impl Call {
    /// Answers the call for order `order_number`: builds the order taker and runs until
    /// it listens.
    async fn start(restaurant: &Arc<Restaurant>, model: Model, order_number: i64) -> Call {
        let llm = InstantLlm::new(model, greeting());
        let agent = order_taker(restaurant.clone());
        let (session, _greeting) = TestSession::start(agent, llm.clone()).await;
        Call {
            session,
            llm,
            order_number,
            turns_sent: 0,
        }
    }

    /// Sends the next caller turn; returns the time until the agent listened again.
    /// Checks that the turn made exactly the scripted number of model requests.
    async fn step(&mut self) -> Duration {
        let number = self.turns_sent + 1;
        let Turn { says, answers } = caller_turn(number, self.order_number);
        let expected = answers.len();
        self.llm.push(answers);
        let before = self.llm.requests();
        let started = Instant::now();
        let result = self.session.run(says).await;
        let elapsed = started.elapsed();
        drop(result);
        let made = self.llm.requests() - before;
        assert_eq!(
            made,
            expected,
            "turn {number} ({says:?}) made {made} model requests, expected {expected}; {:?}",
            self.llm.verify()
        );
        self.turns_sent = number;
        elapsed
    }

    /// Checks that the script ran fully, then hangs up.
    async fn finish(self) {
        assert_eq!(self.turns_sent, CALLER_TURNS, "every caller turn was sent");
        if let Err(problems) = self.llm.verify() {
            panic!("the scripted conversation went wrong:\n{problems}");
        }
        self.session.hang_up().await;
    }
}

/// The times of one full conversation.
struct ConversationTimes {
    start: Duration,
    turns: Vec<Duration>,
}

/// Runs one whole, verified conversation for order `order_number`.
async fn conversation(
    restaurant: &Arc<Restaurant>,
    model: Model,
    order_number: i64,
) -> ConversationTimes {
    let started = Instant::now();
    let mut call = Call::start(restaurant, model, order_number).await;
    let start = started.elapsed();
    let mut turns = Vec::with_capacity(CALLER_TURNS);
    for _ in 0..CALLER_TURNS {
        turns.push(call.step().await);
    }
    call.finish().await;
    ConversationTimes { start, turns }
}

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

/// Which tokio runtime drives the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeKind {
    CurrentThread,
    MultiThread,
}

impl RuntimeKind {
    fn name(self) -> &'static str {
        match self {
            RuntimeKind::CurrentThread => "current_thread",
            RuntimeKind::MultiThread => "multi_thread",
        }
    }

    fn build(self) -> tokio::runtime::Runtime {
        let mut builder = match self {
            RuntimeKind::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            RuntimeKind::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build().expect("tokio runtime")
    }
}

/// All the times of one configuration.
struct TimingRun {
    runtime: RuntimeKind,
    store: StoreKind,
    conversations: usize,
    /// Every turn of every conversation.
    turns: Vec<Duration>,
    /// Per caller turn (index 0 = turn 1), over all conversations.
    by_turn: Vec<Vec<Duration>>,
    /// Session start (agent built, greeting) per conversation.
    starts: Vec<Duration>,
}

/// Runs `conversations` verified conversations (after a warm-up) one after another on
/// a fresh runtime; the driver itself runs as a spawned task, as a server's would.
fn time_configuration(runtime: RuntimeKind, store: StoreKind, conversations: usize) -> TimingRun {
    let bella = Bella::open(store);
    let restaurant = bella.restaurant.clone();
    let rt = runtime.build();
    let times = rt.block_on(async move {
        let driver = tokio::spawn(async move {
            let mut order_number = 0;
            for _ in 0..WARMUP {
                order_number += 1;
                conversation(&restaurant, Model::Recording, order_number).await;
            }
            let mut times = Vec::with_capacity(conversations);
            for _ in 0..conversations {
                order_number += 1;
                times.push(conversation(&restaurant, Model::Recording, order_number).await);
            }
            times
        });
        driver.await.expect("the benchmark task panicked")
    });
    drop(rt);
    bella.verify_orders(WARMUP + conversations);
    let by_turn = (0..CALLER_TURNS)
        .map(|i| times.iter().map(|c| c.turns[i]).collect())
        .collect();
    TimingRun {
        runtime,
        store,
        conversations,
        turns: times.iter().flat_map(|c| c.turns.iter().copied()).collect(),
        by_turn,
        starts: times.iter().map(|c| c.start).collect(),
    }
}

/// The statistics of `durations`, in microseconds.
fn micros(durations: &[Duration]) -> Stats {
    let us: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    Stats::of(&us)
}

impl TimingRun {
    fn to_json(&self) -> Value {
        json!({
            "runtime": self.runtime.name(),
            "store": self.store.name(),
            "llm": Model::Recording.name(),
            "conversations": self.conversations,
            "warmup_conversations": WARMUP,
            "per_turn": micros(&self.turns).to_json_with_mean("us", 1),
            "session_start": micros(&self.starts).to_json_with_mean("us", 1),
            "per_caller_turn_median_us": self.by_turn.iter()
                .map(|t| round(micros(t).median, 1)).collect::<Vec<_>>(),
            "per_caller_turn_p99_us": self.by_turn.iter()
                .map(|t| round(micros(t).p99, 1)).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Memory (in a child process)
// ---------------------------------------------------------------------------------------

/// Runs `work` and returns how much the RSS peaked above, and ended above, the RSS
/// before it, in KiB.
async fn rss_growth<F: Future<Output = T>, T>(work: F) -> (u64, i64, T) {
    let base = rss_now();
    assert!(
        reset_peak_rss(),
        "cannot reset VmHWM via /proc/self/clear_refs"
    );
    let output = work.await;
    let peak = rss_peak().saturating_sub(base);
    let held = rss_now() as i64 - base as i64;
    (peak, held, output)
}

/// Memory per session: [`CONCURRENT_SESSIONS`] calls on one runtime, started and driven
/// round-robin, one caller turn each at a time, through `turns` caller turns and kept
/// open; the figure is the RSS peak growth divided by the number of calls. The calls
/// are then finished and verified.
///
/// Many calls rather than one: a single call fits in memory the allocator already
/// holds, which RSS cannot see. Round-robin rather than one call after the other: all
/// calls are at the same point at any time, so the peak is N times the largest
/// footprint of one call up to that turn; driven one after the other, a call would
/// reuse the memory the previous call freed and hide it. Each turn's script is built
/// just before it is sent, so the sessions count, not their scripts (but the request
/// log of [`Model::Recording`] does).
async fn held_sessions(model: Model, turns: usize) -> Value {
    let bella = Bella::open(StoreKind::InMemory);
    let (peak, held, calls) = rss_growth(async {
        let mut calls = Vec::with_capacity(CONCURRENT_SESSIONS);
        for order_number in 1..=CONCURRENT_SESSIONS as i64 {
            calls.push(Call::start(&bella.restaurant, model, order_number).await);
        }
        for _ in 0..turns {
            for call in &mut calls {
                call.step().await;
            }
        }
        calls
    })
    .await;
    for mut call in calls {
        for _ in turns..CALLER_TURNS {
            call.step().await;
        }
        call.finish().await;
    }
    bella.verify_orders(CONCURRENT_SESSIONS);
    let n = CONCURRENT_SESSIONS as f64;
    json!({
        "after_caller_turns": turns,
        "sessions": CONCURRENT_SESSIONS,
        "peak_kib": peak,
        "held_kib": held,
        "per_session_peak_kib": round(peak as f64 / n, 1),
        "per_session_held_kib": round(held as f64 / n, 1),
    })
}

/// The memory child: one warm-up call, then [`held_sessions`]; prints one JSON line.
fn memory_child(model: Model, turns: usize) -> Value {
    let rt = RuntimeKind::CurrentThread.build();
    let mut figures = rt.block_on(async {
        let bella = Bella::open(StoreKind::InMemory);
        conversation(&bella.restaurant, model, 1).await;
        drop(bella);
        held_sessions(model, turns).await
    });
    figures["child_peak_rss_kib"] = json!(rss_peak());
    figures
}

/// Per-session memory along the call: with the framework-only double after several
/// caller turns (the call's peak is the largest of these), and with the plain
/// `ScriptedLlm` mid-order and at the end for contrast. Each figure comes from its own
/// child process, so that no measurement runs in memory a previous one freed (RSS
/// would not see it).
fn measure_memory() -> Value {
    let points = MEMORY_PROFILE
        .iter()
        .map(|&turns| (Model::Forgetful, turns))
        .chain([HELD_AFTER_TURNS, CALLER_TURNS].map(|turns| (Model::Recording, turns)));
    let profile: Vec<Value> = points
        .map(|(model, turns)| {
            let mut figure = run_memory_child(model, turns);
            figure["llm"] = json!(model.name());
            figure
        })
        .collect();
    let framework = |turns: usize| {
        profile
            .iter()
            .filter(|f| f["llm"] == Model::Forgetful.name())
            .find(|f| f["after_caller_turns"] == turns)
            .map(|f| f["per_session_peak_kib"].clone())
    };
    let peak = profile
        .iter()
        .filter(|f| f["llm"] == Model::Forgetful.name())
        .max_by(|a, b| kib(a, "per_session_peak_kib").total_cmp(&kib(b, "per_session_peak_kib")))
        .cloned()
        .unwrap_or_default();
    json!({
        "method": "RSS growth / sessions with all sessions open at once; VmHWM reset via \
                   /proc/self/clear_refs; one current-thread runtime; a fresh child process \
                   per figure with compact glibc malloc",
        "malloc": COMPACT_MALLOC,
        "sessions": CONCURRENT_SESSIONS,
        "one_conversation_peak_kib": peak["per_session_peak_kib"],
        "one_conversation_peak_after_caller_turns": peak["after_caller_turns"],
        "per_session_mid_order_kib": framework(HELD_AFTER_TURNS),
        "per_session_mid_order_after_caller_turns": HELD_AFTER_TURNS,
        "profile": profile,
    })
}

/// A KiB figure of a memory result (NaN if absent).
fn kib(figure: &Value, field: &str) -> f64 {
    figure[field].as_f64().unwrap_or(f64::NAN)
}

/// Runs one memory child and reads its figures.
fn run_memory_child(model: Model, turns: usize) -> Value {
    let exe = std::env::current_exe().expect("own executable");
    let output = Command::new(exe)
        .args(["--memory-child", model.arg(), &turns.to_string()])
        .env("GLIBC_TUNABLES", COMPACT_MALLOC)
        .output()
        .expect("memory child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "memory child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("memory child said {line:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Machine, report
// ---------------------------------------------------------------------------------------

fn run_benchmark(quick: bool) {
    let conversations = if quick {
        CONVERSATIONS.1
    } else {
        CONVERSATIONS.0
    };
    let machine = machine::machine();
    let turns = all_turns();
    let requests: Vec<usize> = turns.iter().map(|t| t.answers.len()).collect();

    let mut runs = Vec::new();
    for store in [StoreKind::InMemory, StoreKind::File] {
        for runtime in [RuntimeKind::CurrentThread, RuntimeKind::MultiThread] {
            eprintln!("timing: {} / {} ...", runtime.name(), store.name());
            runs.push(time_configuration(runtime, store, conversations));
        }
    }
    eprintln!("memory: child process ...");
    let memory = measure_memory();
    let bench_peak_rss = rss_peak();

    print_report(&machine, &turns, &runs, &memory, bench_peak_rss);
    let report = json!({
        "bench": "turns",
        "version": 1,
        "quick": quick,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine,
        "conversation": {
            "caller_turns": CALLER_TURNS,
            "llm_requests": 1 + requests.iter().sum::<usize>(),
            "llm_requests_greeting": 1,
            "llm_requests_per_caller_turn": requests,
            "caller_says": turns.iter().map(|t| t.says).collect::<Vec<_>>(),
        },
        "timing": runs.iter().map(TimingRun::to_json).collect::<Vec<_>>(),
        "memory": memory,
        "bench_process_peak_rss_kib": bench_peak_rss,
    });
    let path = machine::report_path("bench-turns.json");
    let text = serde_json::to_string_pretty(&report).expect("report serializes");
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, text + "\n").expect("write the JSON report");
    println!("\nwritten: {}", path.display());
}

fn print_report(machine: &Value, turns: &[Turn], runs: &[TimingRun], memory: &Value, rss: u64) {
    let total_requests = 1 + turns.iter().map(|t| t.answers.len()).sum::<usize>();
    println!(
        "\nBella Vista turns: {CALLER_TURNS} caller turns, {total_requests} model requests \
         (instant ScriptedLlm)"
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

    println!("\ntime per caller turn, send -> listening again (µs)");
    println!(
        "{:<15} {:<19} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "runtime", "store", "turns", "median", "p90", "p99", "max", "start med"
    );
    for run in runs {
        let s = micros(&run.turns);
        let start = micros(&run.starts);
        println!(
            "{:<15} {:<19} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
            run.runtime.name(),
            run.store.name(),
            s.count,
            s.median,
            s.p90,
            s.p99,
            s.max,
            start.median
        );
    }

    if let Some(main) = runs.first() {
        println!(
            "\nper caller turn ({}, {}): model requests, median and p99 (µs)",
            main.runtime.name(),
            main.store.name()
        );
        for (i, (turn, times)) in turns.iter().zip(&main.by_turn).enumerate() {
            let s = micros(times);
            println!(
                "{:>3} {:>3} req {:>8.1} {:>8.1}  {}",
                i + 1,
                turn.answers.len(),
                s.median,
                s.p99,
                turn.says
            );
        }
    }

    print_memory(memory);
    let child_peak = memory["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["child_peak_rss_kib"].as_u64())
        .max()
        .unwrap_or(0);
    println!("process peak RSS (VmHWM): bench {rss} KiB, largest memory child {child_peak} KiB");
}

/// The memory table: per-session KiB after each measured caller turn, for each double.
fn print_memory(memory: &Value) {
    println!(
        "\nmemory per call, KiB ({CONCURRENT_SESSIONS} calls open at once on one \
         current-thread runtime; peak RSS growth / calls)"
    );
    let profile = memory["profile"].as_array().cloned().unwrap_or_default();
    print!("{:<32}", "after caller turn");
    for turns in MEMORY_PROFILE {
        print!(" {turns:>7}");
    }
    println!();
    for model in [Model::Forgetful, Model::Recording] {
        print!("{:<32}", model.name());
        for turns in MEMORY_PROFILE {
            let figure = profile
                .iter()
                .find(|f| f["llm"] == model.name() && f["after_caller_turns"] == turns);
            match figure {
                Some(f) => print!(" {:>7.1}", kib(f, "per_session_peak_kib")),
                None => print!(" {:>7}", "-"),
            }
        }
        println!();
    }
    println!(
        "one conversation's peak: {} KiB (after caller turn {}); per session mid-order \
         (turn {HELD_AFTER_TURNS}): {} KiB",
        memory["one_conversation_peak_kib"],
        memory["one_conversation_peak_after_caller_turns"],
        memory["per_session_mid_order_kib"],
    );
}
