//! The order store through the flow: a repeated confirmation writes one row, and the row
//! is on disk before the agent can tell the caller the order number.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bella_vista::bella_vista::WallClock;
use bella_vista::bella_vista::store::SqliteOrders;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn confirming_twice_writes_one_row_and_it_is_durable_before_the_announcement() {
    let db_path: Arc<Mutex<Option<PathBuf>>> = Arc::new(Mutex::new(None));
    let seen_rows = Arc::new(Mutex::new(None));
    let (path_for_check, rows_for_check) = (db_path.clone(), seen_rows.clone());
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        confirm_item("Margherita Pizza", 3, &["extra basil"], false),
        payment_enters("$48.00"),
        confirm_payment("card", 20.0),
        review_enters("Total: $57.60"),
        // a retried tool call: the model asks twice in one response
        Step::reply()
            .call("confirm_order", json!({}))
            .call("confirm_order", json!({})),
        // the first request after the tool returned: the row must already be on disk
        Step::summary("Three pizzas, confirmed.").expect(move |_| {
            let path = path_for_check.lock().unwrap().clone().expect("path set");
            let rows = SqliteOrders::open(&path)
                .map_err(|e| e.to_string())?
                .list_all()
                .map_err(|e| e.to_string())?;
            *rows_for_check.lock().unwrap() = Some(rows.len());
            Ok(())
        }),
        Step::reply()
            .expect(|r| last_tool_output_contains(r, "order number 1"))
            .text("Your order number is 1."),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    *db_path.lock().unwrap() = Some(call.db.clone());
    call.say_all(&["order", "three margheritas, extra basil", "card, 20%"])
        .await;
    let result = call.session.run("yes").await;
    let outputs = result.function_outputs("confirm_order");
    assert_eq!(outputs.len(), 2);
    assert_eq!(
        outputs[0].0, outputs[1].0,
        "the retry reports the same order"
    );
    llm.verify().unwrap();
    assert_eq!(*seen_rows.lock().unwrap(), Some(1));
    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(as_json(&orders[0])["total_cents"], 5760);
}

#[tokio::test(start_paused = true)]
async fn hanging_up_mid_order_stores_nothing() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        confirm_item("Bruschetta", 1, &[], false),
        payment_enters("$12.00"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "one bruschetta"]).await;
    let Bella { session, db, .. } = &mut call;
    let db = db.clone();
    let session = std::mem::replace(session, {
        let (s, _) = bella_vista::agent::testing::TestSession::start(
            bella_vista::agent::Agent::new("Idle", "idle"),
            ScriptedLlm::new([]),
        )
        .await;
        s
    });
    let ended = session.hang_up().await;
    assert!(
        ended
            .events()
            .iter()
            .any(|e| matches!(e, bella_vista::agent::SessionEvent::SessionEnded))
    );
    llm.verify().unwrap();
    assert!(
        SqliteOrders::open(&db)
            .unwrap()
            .list_all()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn an_order_is_stamped_by_the_restaurants_clock() {
    let (mut steps, turns) = tiramisu_up_to_read_back();
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    // 2026-12-03T12:00:00Z
    let noon = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_299_200);
    let mut call = start_with_clock(&llm, WallClock::from_fn(move || noon)).await;
    call.say_all(&turns).await;
    call.session.run("yes").await;
    llm.verify().unwrap();
    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].created_at(), "2026-12-03T12:00:00Z");
}
