//! A whole Bella Vista order as text: two items with modifications, payment with a tip,
//! the read-back and the confirmation; the stored order has menu prices and exact cents.

mod common;

use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn two_items_with_modifications_then_payment_with_tip() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like first?"),
        confirm_item("bruschetta", 2, &["no garlic"], true),
        item_enters("And the next item?"),
        Step::reply()
            .expect(|r| match regression_choices(r).as_deref() {
                Some([only]) if only == "item_1" => Ok(()),
                other => Err(format!("choices {other:?}")),
            })
            .call(
                "confirm_item",
                json!({"name": "Grilled Salmon", "quantity": 1,
                       "modifications": ["sauce on the side", "well done"], "more_items": false}),
            ),
        payment_enters("$52.00"),
        confirm_payment("card", 18.0),
        review_enters("Total: $61.36"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    assert_eq!(
        call.greeting.messages(),
        vec!["Welcome to Bella Vista! What can I get you?"]
    );

    let result = call.session.run("I'd like to order").await;
    let mut expect = result.expect();
    expect.next_function_call("take_order");
    expect.next_task_started("item_1");
    expect.next_message();
    expect.no_more();

    call.session
        .run("Two bruschetta, no garlic please, and something else")
        .await;
    call.session
        .run("A grilled salmon, sauce on the side, well done. That's all.")
        .await;
    call.session.run("Card, and an 18% tip").await;
    let result = call.session.run("Yes, that's right").await;
    assert_eq!(
        result.messages().last(),
        Some(&"Your order number is 1. Thank you!")
    );
    llm.verify().unwrap();

    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    let order = as_json(&orders[0]);
    assert_eq!(order["id"], 1);
    assert_eq!(
        order["items"],
        json!([
            {"name": "Bruschetta", "quantity": 2, "modifications": ["no garlic"], "unit_price_cents": 1200},
            {"name": "Grilled Salmon", "quantity": 1,
             "modifications": ["sauce on the side", "well done"], "unit_price_cents": 2800}
        ])
    );
    assert_eq!(order["subtotal_cents"], 5200);
    assert_eq!(order["tip_percent"], 18);
    assert_eq!(order["tip_cents"], 936);
    assert_eq!(order["total_cents"], 6136);
    assert_eq!(order["payment_method"], "card");
}

#[tokio::test(start_paused = true)]
async fn the_callers_context_gets_one_summary_of_the_order() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        confirm_item("Tiramisu", 1, &[], false),
        payment_enters("$10.00"),
        confirm_payment("cash", 0.0),
        review_enters("Total: $10.00"),
        Step::reply().call("confirm_order", json!({})),
        Step::summary("One tiramisu, cash, confirmed as order 1."),
        Step::reply()
            .expect(|request| {
                let text = format!("{:?}", request.items);
                let summaries = text.matches("One tiramisu, cash").count();
                let task_turns =
                    text.contains("What would you like?") || text.contains("confirm_item");
                if summaries == 1 && !task_turns {
                    Ok(())
                } else {
                    Err(text)
                }
            })
            .text("Order 1 is placed!"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order please", "one tiramisu", "cash, no tip", "yes"])
        .await;
    llm.verify().unwrap();
    assert_eq!(call.stored_orders().len(), 1);
}
