//! Phone calls end to end: sipp dials a trunk at a real livekit-sip, which bridges the call
//! into a LiveKit room on a real livekit-server; the dispatch rule sends the REAL worker
//! (`bella-vista start`, this package's binary) there. The caller speaks espeak-ng speech as
//! 8 kHz PCMU and presses keys as RFC 4733 events; the model, STT and TTS are the scripted
//! fake OpenAI server of `tests/common/openai_server.rs` (speech comes back as a tone,
//! 60 ms per character). What the caller hears is captured with tcpdump and measured.
//!
//! Covered: an order stored with the caller's number and the agent hanging up after its
//! goodbye has played; DTMF 2 during the read-back going back to change an item and DTMF 1
//! placing the order; a transfer reaching sipp as a REFER, and a declined one told to the
//! caller while the call goes on; a silent caller asked once, then hung up on; a caller
//! hanging up mid-order (nothing stored) and the next call answered.
//!
//! Needs root (tcpdump on `lo`) and what `scripts/sip/install.sh` installs. Files of each
//! test stay in `$CARGO_TARGET_TMPDIR/sip_calls/<test>/` for inspection.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::store::SqliteOrders;
use common::openai_server::{
    Endpoint, FakeOpenAi, Response, SPEECH_PER_CHAR, text_chunks, tool_call_chunks,
};
use common::sip::{CALLER_NUMBER, CallOutcome, CallerScript, PhoneCall, Segment, SipStack};
use common::worker::{Worker, test_dir, wait_until, write_config};
use serde_json::{Value, json};

/// Where the worker transfers callers.
const STAFF_NUMBER: &str = "+15550199";

/// One scripted model answer.
enum Reply {
    /// Text.
    Say(&'static str),
    /// One tool call with these arguments.
    Call(&'static str, Value),
}

/// Queues the model's answers, in the order the worker will ask.
fn script_model(fake: &FakeOpenAi, replies: &[Reply]) {
    for (index, reply) in replies.iter().enumerate() {
        let chunks = match reply {
            Reply::Say(text) => text_chunks(&[text]),
            Reply::Call(name, arguments) => {
                let id = format!("call_{index}");
                tool_call_chunks(&[(id.as_str(), name, &arguments.to_string())], 24)
            }
        };
        fake.push(Endpoint::ChatCompletions, Response::Stream(chunks));
    }
}

/// Queues what the transcriber hears, one utterance per line.
fn script_transcripts(fake: &FakeOpenAi, lines: &[&str]) {
    for line in lines {
        fake.push(
            Endpoint::Transcriptions,
            Response::Transcript(line.to_string()),
        );
    }
}

/// A worker for phone calls: transfers to [`STAFF_NUMBER`], silence prompt after
/// `silence_ms`.
async fn phone_worker(dir: &Path, stack: &SipStack, fake: &FakeOpenAi, silence_ms: u64) -> Worker {
    let config = write_config(
        dir,
        &[
            (
                "transfer_to = \"\"",
                format!("transfer_to = \"{STAFF_NUMBER}\""),
            ),
            (
                "silence_prompt_ms = 15000",
                format!("silence_prompt_ms = {silence_ms}"),
            ),
        ],
    );
    let worker = Worker::start(
        "phone",
        dir,
        &config,
        &stack.livekit_url(),
        &fake.base_url(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || worker.registered()).await,
        "the worker did not register\n{}",
        worker.tail()
    );
    worker
}

/// One test's phone stack: the SIP stack, the scripted providers and the worker.
struct Phone {
    dir: PathBuf,
    stack: SipStack,
    fake: FakeOpenAi,
    worker: Worker,
}

impl Phone {
    /// Starts everything for the test `name`: the model answers `replies`, the transcriber
    /// hears `lines`, the worker asks a silent caller after `silence_ms`.
    async fn start(name: &str, replies: &[Reply], lines: &[&str], silence_ms: u64) -> Self {
        let dir = test_dir("sip_calls", name);
        let stack = SipStack::start(&dir);
        let fake = FakeOpenAi::start().await;
        script_model(&fake, replies);
        script_transcripts(&fake, lines);
        let worker = phone_worker(&dir, &stack, &fake, silence_ms).await;
        Phone {
            dir,
            stack,
            fake,
            worker,
        }
    }

    /// Places a call sending `segments`, waits for it to end (within `limit`), prints its
    /// figures and returns what the caller saw.
    async fn call(
        &self,
        name: &str,
        segments: &[Segment],
        script: CallerScript,
        limit: Duration,
    ) -> CallOutcome {
        let call = PhoneCall::place(&self.stack, &self.dir.join(name), segments, script);
        let outcome = call.finish(limit).await;
        report(name, &outcome);
        outcome
    }

    fn stored_orders(&self) -> Vec<Value> {
        stored_orders(&self.dir)
    }
}

fn stored_orders(dir: &Path) -> Vec<Value> {
    SqliteOrders::open(&Worker::orders_db_in(dir, "phone"))
        .expect("orders db")
        .list_all()
        .expect("list")
        .iter()
        .map(|o| serde_json::to_value(o).expect("json"))
        .collect()
}

/// How long the fake speech server's audio for `text` plays.
fn spoken(text: &str) -> f64 {
    SPEECH_PER_CHAR.as_secs_f64() * text.chars().count() as f64
}

/// Prints the caller-side figures of a call (for the README and the notes).
fn report(name: &str, outcome: &CallOutcome) {
    let c = &outcome.capture;
    eprintln!(
        "{name}: INVITE->200 {} s, 200->first agent audio {} s, caller's last word->agent audio {:?} s, last agent audio->BYE {} s; files in {}",
        c["invite_to_200_s"],
        c["answer_to_first_audio_s"],
        outcome.response_delays(),
        c["last_audio_to_bye_s"],
        outcome.dir.display()
    );
}

fn assert_hung_up_after_playout(outcome: &CallOutcome, goodbye: &str, worker: &Worker) {
    let c = &outcome.capture;
    assert!(
        c["bye_from_sip"].as_bool() == Some(true),
        "no BYE from livekit-sip\n{c:#}\n{}",
        worker.tail()
    );
    let last = *outcome.agent_spans().last().expect("agent audio");
    assert!(
        last.1 - last.0 >= spoken(goodbye) - 0.3,
        "the goodbye was cut: heard {last:?} for {:.2} s of speech",
        spoken(goodbye)
    );
    let after = c["last_audio_to_bye_s"]
        .as_f64()
        .expect("last audio -> BYE");
    assert!(
        (0.0..2.0).contains(&after),
        "BYE {after} s after the goodbye"
    );
}

/// The order of two tiramisu paid in cash, as far as the read-back.
fn tiramisu_until_the_read_back(read_back: &'static str) -> Vec<Reply> {
    vec![
        Reply::Say("Welcome to Bella Vista!"),
        Reply::Call("take_order", json!({})),
        Reply::Say("What would you like?"),
        confirm_item("Tiramisu", 2),
        Reply::Say("Cash or card?"),
        Reply::Call(
            "confirm_payment",
            json!({"method": "cash", "tip_percentage": 0}),
        ),
        Reply::Say(read_back),
    ]
}

fn confirm_item(name: &str, quantity: u32) -> Reply {
    Reply::Call(
        "confirm_item",
        json!({"name": name, "quantity": quantity, "modifications": [], "more_items": false}),
    )
}

/// What the caller says for [`tiramisu_until_the_read_back`], with pauses for the replies.
const TIRAMISU_CALLER: [Segment; 7] = [
    Segment::Silence(3.0),
    Segment::Say("I would like to order"),
    Segment::Silence(4.5),
    Segment::Say("Two tiramisu please, that is all"),
    Segment::Silence(4.5),
    Segment::Say("Cash, and no tip"),
    Segment::Silence(5.0),
];

/// The transcripts of [`TIRAMISU_CALLER`].
const TIRAMISU_LINES: [&str; 3] = [
    "I would like to order.",
    "Two tiramisu please, that is all.",
    "Cash, and no tip.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_order_is_stored_with_the_callers_number_and_the_agent_hangs_up() {
    let mut replies = tiramisu_until_the_read_back("Is that all correct?");
    replies.extend([
        Reply::Call("confirm_order", json!({})),
        Reply::Say("Two tiramisu, cash, order 1."),
        Reply::Say("Your order number is 1."),
        Reply::Call("end_call", json!({})),
    ]);
    let mut lines = TIRAMISU_LINES.to_vec();
    lines.extend(["Yes please.", "Thank you, goodbye."]);
    let phone = Phone::start("order", &replies, &lines, 30_000).await;

    let mut caller = TIRAMISU_CALLER.to_vec();
    caller.extend([
        Segment::Say("Yes please"),
        Segment::Silence(4.5),
        Segment::Say("Thank you, goodbye"),
        Segment::Silence(10.0),
    ]);
    let outcome = phone
        .call(
            "call",
            &caller,
            CallerScript::WaitForHangUp,
            Duration::from_secs(120),
        )
        .await;

    assert_eq!(outcome.sipp_exit, 0, "sipp failed\n{}", phone.worker.tail());
    assert_hung_up_after_playout(&outcome, &Prompts::default().goodbye, &phone.worker);
    let orders = phone.stored_orders();
    assert_eq!(orders.len(), 1, "{}", phone.worker.tail());
    assert_eq!(orders[0]["caller_phone"], CALLER_NUMBER);
    assert_eq!(
        orders[0]["items"],
        json!([{"name": "Tiramisu", "quantity": 2, "modifications": [], "unit_price_cents": 1000}])
    );
    // Every utterance of the narrowband caller was cut as one, no more, no less.
    assert_eq!(
        phone.fake.transcription_requests().len(),
        lines.len(),
        "utterances cut from the phone audio"
    );
    // The caller heard the greeting and one reply per line, the goodbye last.
    assert!(
        outcome.agent_spans().len() > lines.len(),
        "{:?}",
        outcome.agent_spans()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_during_the_read_back_2_changes_an_item_and_1_places_the_order() {
    let mut replies = tiramisu_until_the_read_back("Press 1 to confirm or 2 to change.");
    replies.extend([
        // the caller pressed 2
        Reply::Call("out_of_scope", json!({"task_ids": ["item_1"]})),
        Reply::Say("What instead?"),
        confirm_item("Cheesecake", 1),
        Reply::Say("Cash or card?"),
        Reply::Call(
            "confirm_payment",
            json!({"method": "cash", "tip_percentage": 0}),
        ),
        Reply::Say("Press 1 to confirm."),
        // the caller pressed 1: confirm_order runs without the model
        Reply::Say("One cheesecake, cash, order 1."),
        Reply::Say("Your order number is 1."),
        Reply::Call("end_call", json!({})),
    ]);
    let mut lines = TIRAMISU_LINES.to_vec();
    lines.extend([
        "One cheesecake instead, that is all.",
        "Cash, and no tip.",
        "Goodbye.",
    ]);
    let phone = Phone::start("keys", &replies, &lines, 30_000).await;

    let mut caller = TIRAMISU_CALLER.to_vec();
    caller.extend([
        Segment::Keys("2"),
        Segment::Silence(4.0),
        Segment::Say("One cheesecake instead, that is all"),
        Segment::Silence(4.5),
        Segment::Say("Cash, and no tip"),
        Segment::Silence(4.5),
        Segment::Keys("1"),
        Segment::Silence(5.0),
        Segment::Say("Goodbye"),
        Segment::Silence(10.0),
    ]);
    let outcome = phone
        .call(
            "call",
            &caller,
            CallerScript::WaitForHangUp,
            Duration::from_secs(150),
        )
        .await;

    assert_eq!(outcome.sipp_exit, 0, "sipp failed\n{}", phone.worker.tail());
    let keys = phone.worker.lines_with("caller pressed a key");
    assert_eq!(keys.len(), 2, "{keys:?}\n{}", phone.worker.tail());
    let orders = phone.stored_orders();
    assert_eq!(orders.len(), 1, "{}", phone.worker.tail());
    assert_eq!(
        orders[0]["items"],
        json!([{"name": "Cheesecake", "quantity": 1, "modifications": [], "unit_price_cents": 900}])
    );
    assert_eq!(orders[0]["caller_phone"], CALLER_NUMBER);
    assert_hung_up_after_playout(&outcome, &Prompts::default().goodbye, &phone.worker);
}

/// The greeting, then the model transferring the caller.
fn asks_for_a_person() -> Vec<Reply> {
    vec![
        Reply::Say("Welcome to Bella Vista!"),
        Reply::Call("transfer_to_staff", json!({})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_reaches_the_caller_as_a_refer_after_the_notice() {
    let lines = ["Can I talk to a person, please?"];
    let phone = Phone::start("transfer", &asks_for_a_person(), &lines, 30_000).await;
    let caller = [
        Segment::Silence(3.0),
        Segment::Say("Can I talk to a person, please?"),
        Segment::Silence(12.0),
    ];
    let outcome = phone
        .call(
            "call",
            &caller,
            CallerScript::WaitForHangUp,
            Duration::from_secs(90),
        )
        .await;

    assert_eq!(outcome.sipp_exit, 0, "sipp failed\n{}", phone.worker.tail());
    let c = &outcome.capture;
    assert_eq!(c["refers"], json!([format!("tel:{STAFF_NUMBER}")]), "{c:#}");
    let refer_at = c["answer_to_refer_s"].as_f64().expect("a REFER");
    // The notice is the agent's first audio after the caller asked: whatever the agent may
    // say after the REFER (should livekit-sip report the transfer failed) is not it.
    let asked_until = outcome.caller_spans().last().expect("the caller spoke").1;
    let notice = outcome
        .agent_spans()
        .into_iter()
        .find(|span| span.0 > asked_until)
        .expect("the notice");
    let transferring = Prompts::default().transferring;
    assert!(
        notice.1 - notice.0 >= spoken(&transferring) - 0.3 && notice.1 <= refer_at + 0.1,
        "the notice {notice:?} must play whole before the REFER at {refer_at} s"
    );
    assert!(phone.stored_orders().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_transfer_is_told_to_the_caller_and_the_call_goes_on() {
    let mut replies = asks_for_a_person();
    replies.extend([
        Reply::Say("What else can I do?"),
        Reply::Call("end_call", json!({})),
    ]);
    let lines = ["Can I talk to a person, please?", "No thanks, goodbye."];
    let phone = Phone::start("transfer_declined", &replies, &lines, 30_000).await;
    let caller = [
        Segment::Silence(3.0),
        Segment::Say("Can I talk to a person, please?"),
        Segment::Silence(15.0),
        Segment::Say("No thanks, goodbye"),
        Segment::Silence(10.0),
    ];
    let outcome = phone
        .call(
            "call",
            &caller,
            CallerScript::DeclineTransfers,
            Duration::from_secs(120),
        )
        .await;

    assert_eq!(outcome.sipp_exit, 0, "sipp failed\n{}", phone.worker.tail());
    let c = &outcome.capture;
    assert_eq!(c["refers"], json!([format!("tel:{STAFF_NUMBER}")]), "{c:#}");
    let refer_at = c["answer_to_refer_s"].as_f64().expect("a REFER");
    let after_refer: f64 = outcome
        .agent_spans()
        .iter()
        .map(|(start, end)| (end - start.max(refer_at)).max(0.0))
        .sum();
    // the failure notice and the model's question, then the goodbye
    let prompts = Prompts::default();
    let expected =
        spoken(&prompts.transfer_failed) + spoken("What else can I do?") + spoken(&prompts.goodbye);
    assert!(
        after_refer >= expected - 1.0,
        "after the declined REFER the caller heard {after_refer:.1} s of the agent, \
         expected {expected:.1} s"
    );
    assert_hung_up_after_playout(&outcome, &prompts.goodbye, &phone.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_caller_is_asked_once_then_the_agent_says_goodbye_and_hangs_up() {
    let replies = [Reply::Say("Welcome to Bella Vista!")];
    let phone = Phone::start("silence", &replies, &[], 3_000).await;
    let outcome = phone
        .call(
            "call",
            &[Segment::Silence(40.0)],
            CallerScript::WaitForHangUp,
            Duration::from_secs(60),
        )
        .await;

    assert_eq!(outcome.sipp_exit, 0, "sipp failed\n{}", phone.worker.tail());
    let spans = outcome.agent_spans();
    assert_eq!(spans.len(), 3, "greeting, question, goodbye: {spans:?}");
    for pair in spans.windows(2) {
        let quiet = pair[1].0 - pair[0].1;
        assert!(
            (2.8..4.0).contains(&quiet),
            "{quiet:.2} s of silence before the agent spoke again: {spans:?}"
        );
    }
    let prompts = Prompts::default();
    assert!(spans[1].1 - spans[1].0 >= spoken(&prompts.still_there) - 0.3);
    assert_hung_up_after_playout(&outcome, &prompts.silence_goodbye, &phone.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_order_stores_nothing_and_the_next_call_is_answered() {
    let mut replies = tiramisu_until_the_read_back("Is that all correct?");
    replies.truncate(5);
    // the second call
    replies.push(Reply::Say("Welcome back to Bella Vista!"));
    let phone = Phone::start("hang_up_mid_order", &replies, &TIRAMISU_LINES[..2], 30_000).await;
    let first = phone
        .call(
            "first",
            &TIRAMISU_CALLER[..5],
            CallerScript::HangUpWhenDone,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        first.sipp_exit,
        0,
        "the caller hung up first\n{}",
        phone.worker.tail()
    );
    assert_eq!(first.capture["bye_from_caller"], true);
    assert!(
        wait_until(Duration::from_secs(10), || {
            !phone.worker.lines_with("job finished").is_empty()
        })
        .await,
        "the job did not end after the caller hung up\n{}",
        phone.worker.tail()
    );
    assert!(phone.stored_orders().is_empty(), "nothing is stored");

    let second = phone
        .call(
            "second",
            &[Segment::Silence(5.0)],
            CallerScript::HangUpWhenDone,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(second.sipp_exit, 0, "{}", phone.worker.tail());
    let greeting = second.agent_spans();
    assert!(
        greeting
            .first()
            .is_some_and(|(start, end)| *start < 2.0 && end - start >= 1.0),
        "the next caller is greeted: {greeting:?}\n{}",
        phone.worker.tail()
    );
    assert!(phone.stored_orders().is_empty());
}
