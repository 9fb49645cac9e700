//! A Bella Vista session on a scripted model with a fresh order database, and script
//! pieces for the common moves of an order.

use std::path::PathBuf;
use std::sync::Arc;

use bella_vista::agent::testing::{RunResult, TestSession};
use bella_vista::agent::{Agent, CallerInfo};
use bella_vista::bella_vista::menu::Menu;
use bella_vista::bella_vista::order::OrderLimits;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::store::{OrderStore, SqliteOrders, StoredOrder};
use bella_vista::bella_vista::{Restaurant, WallClock, order_taker, order_taker_for};
use bella_vista::llm::ChatRequest;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use serde_json::{Value, json};

/// A running Bella Vista call.
pub struct Bella {
    pub session: TestSession,
    pub greeting: RunResult,
    pub db: PathBuf,
    _dir: tempfile::TempDir,
}

/// The restaurant as configured in `config/`, with its orders in `db`.
pub fn restaurant(db: &std::path::Path) -> Arc<Restaurant> {
    restaurant_transferring_to(db, None)
}

/// The restaurant, with staff transfers going to `transfer_to`.
pub fn restaurant_transferring_to(
    db: &std::path::Path,
    transfer_to: Option<&str>,
) -> Arc<Restaurant> {
    let menu = Menu::load(std::path::Path::new("config/menu.toml")).expect("menu loads");
    Arc::new(Restaurant {
        menu,
        limits: OrderLimits::default(),
        prompts: Prompts::default(),
        store: OrderStore::open(db).expect("store opens"),
        transfer_to: transfer_to.map(str::to_string),
        small_model: false,
        clock: WallClock::system(),
    })
}

/// Starts a call answered by the order taker on `llm`.
pub async fn start(llm: &ScriptedLlm) -> Bella {
    start_with(llm, |db| order_taker(restaurant(db))).await
}

/// Starts a call on a restaurant set up for a small model (openings said from code, the
/// model's arguments checked against the caller's words).
pub async fn start_small(llm: &ScriptedLlm) -> Bella {
    start_with(llm, |db| {
        let mut restaurant = Arc::into_inner(restaurant(db)).expect("not shared yet");
        restaurant.small_model = true;
        order_taker(Arc::new(restaurant))
    })
    .await
}

/// Starts a call answered by the order taker on `llm`, its orders stamped by `clock`.
pub async fn start_with_clock(llm: &ScriptedLlm, clock: WallClock) -> Bella {
    start_with(llm, |db| {
        let mut restaurant = Arc::into_inner(restaurant(db)).expect("not shared yet");
        restaurant.clock = clock;
        order_taker(Arc::new(restaurant))
    })
    .await
}

/// Starts a call from the phone number `phone`, answered by the order taker on `llm`,
/// with staff transfers going to `transfer_to`.
pub async fn start_phone(llm: &ScriptedLlm, phone: &str, transfer_to: Option<&str>) -> Bella {
    let caller = Arc::new(CallerInfo::default());
    caller.set_phone(phone);
    start_with(llm, |db| {
        order_taker_for(restaurant_transferring_to(db, transfer_to), caller)
    })
    .await
}

/// Starts a call answered by the agent `answer` makes for an order database.
async fn start_with(llm: &ScriptedLlm, answer: impl FnOnce(&std::path::Path) -> Agent) -> Bella {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orders.db");
    let (session, greeting) = TestSession::start(answer(&db), llm.clone()).await;
    Bella {
        session,
        greeting,
        db,
        _dir: dir,
    }
}

/// A whole order up to the read-back of two tiramisu paid in cash: the steps, and the
/// caller's lines that go with them.
pub fn tiramisu_up_to_read_back() -> (Vec<Step>, [&'static str; 3]) {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        confirm_item("Tiramisu", 2, &[], false),
        payment_enters("$20.00"),
        confirm_payment("cash", 0.0),
        review_enters("Total: $20.00"),
    ]);
    (
        steps,
        [
            "I'd like to order",
            "Two tiramisu, that's all",
            "Cash, no tip",
        ],
    )
}

impl Bella {
    /// Sends each turn in order; returns the result of the last.
    pub async fn say_all(&mut self, turns: &[&str]) -> RunResult {
        let mut last = None;
        for turn in turns {
            last = Some(self.session.run(turn).await);
        }
        last.expect("at least one turn")
    }

    /// The orders stored so far, read through a separate connection.
    pub fn stored_orders(&self) -> Vec<StoredOrder> {
        SqliteOrders::open(&self.db)
            .expect("store opens")
            .list_all()
            .expect("list")
    }
}

/// The greeting and the caller asking to order.
pub fn greet_and_start() -> Vec<Step> {
    vec![
        Step::reply().text("Welcome to Bella Vista! What can I get you?"),
        Step::reply()
            .expect_tool("take_order")
            .call("take_order", json!({})),
    ]
}

/// An item task entering: it asks, with `confirm_item` and `out_of_scope` withheld.
pub fn item_enters(question: &str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_item")
        .expect_no_tool("out_of_scope")
        .text(question)
}

/// The model confirms an item.
pub fn confirm_item(name: &str, quantity: i64, modifications: &[&str], more_items: bool) -> Step {
    Step::reply().call(
        "confirm_item",
        json!({"name": name, "quantity": quantity, "modifications": modifications, "more_items": more_items}),
    )
}

/// The payment task entering; checks the subtotal in its instructions.
pub fn payment_enters(subtotal: &'static str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_payment")
        .expect_instructions(subtotal)
        .text("How would you like to pay?")
}

/// The model confirms payment.
pub fn confirm_payment(method: &str, tip: f64) -> Step {
    Step::reply().call(
        "confirm_payment",
        json!({"method": method, "tip_percentage": tip}),
    )
}

/// The read-back entering; checks the total in its instructions.
pub fn review_enters(total: &'static str) -> Step {
    Step::reply()
        .expect_no_tool("confirm_order")
        .expect_instructions(total)
        .text("Shall I place the order?")
}

/// The caller's yes, the summary, and the order taker announcing the number.
pub fn confirm_and_announce(order_number: i64) -> Vec<Step> {
    vec![
        Step::reply()
            .expect_tool("confirm_order")
            .call("confirm_order", json!({})),
        Step::summary("The caller ordered and confirmed."),
        Step::reply()
            .expect(move |request| {
                last_tool_output_contains(request, &format!("order number {order_number}"))
            })
            .text(format!("Your order number is {order_number}. Thank you!")),
    ]
}

/// Whether the last tool output in the request contains `text`.
pub fn last_tool_output_contains(request: &ChatRequest, text: &str) -> Result<(), String> {
    let last = request.items.iter().rev().find_map(|item| match item {
        bella_vista::llm::ChatItem::FunctionOutput { output, .. } => Some(output.clone()),
        _ => None,
    });
    match last {
        Some(output) if output.contains(text) => Ok(()),
        other => Err(format!("last tool output {other:?} lacks {text:?}")),
    }
}

/// The enum of `out_of_scope`'s `task_ids`, if offered.
pub fn regression_choices(request: &ChatRequest) -> Option<Vec<String>> {
    let tool = request.tools.iter().find(|t| t.name == "out_of_scope")?;
    let values = tool.parameters["properties"]["task_ids"]["items"]["enum"].clone();
    serde_json::from_value::<Vec<String>>(values).ok()
}

/// The stored order as the JSON `orders list` prints.
pub fn as_json(order: &StoredOrder) -> Value {
    serde_json::to_value(order).expect("serializes")
}
