//! While paying, the caller changes item 1: item 1 runs again, item 2 is not asked again,
//! payment is re-entered with the new total, and the stored order has exactly the
//! corrected items. Also: a change during the read-back re-runs payment (it depends on the
//! items), and an item added during payment lands before payment.

mod common;

use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

fn two_items_then_payment() -> Vec<Step> {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like first?"),
        confirm_item("Bruschetta", 2, &[], true),
        item_enters("Next?"),
        confirm_item("Grilled Salmon", 1, &["no butter"], false),
        payment_enters("$52.00"),
    ]);
    steps
}

#[tokio::test(start_paused = true)]
async fn changing_item_one_during_payment_reruns_it_and_reenters_payment_with_the_new_total() {
    let mut steps = two_items_then_payment();
    steps.extend([
        Step::reply()
            .expect(|r| match regression_choices(r) {
                Some(ids) if ids == ["item_1", "item_2"] => Ok(()),
                other => Err(format!("choices {other:?}")),
            })
            .expect(|r| {
                let tool = r.tools.iter().find(|t| t.name == "out_of_scope").unwrap();
                match tool.description.contains("2 x Bruschetta") {
                    true => Ok(()),
                    false => Err(tool.description.clone()),
                }
            })
            .call("out_of_scope", json!({"task_ids": ["item_1"]})),
        item_enters("Sure, what instead of the bruschetta?"),
        confirm_item("Caesar Salad", 1, &["dressing on the side"], false),
        payment_enters("$38.00"),
        confirm_payment("mobile", 20.0),
        review_enters("Total: $45.60"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&[
        "order",
        "two bruschetta and more",
        "salmon, no butter, that's it",
    ])
    .await;

    let result = call.session.run("Actually, change my first item").await;
    let mut expect = result.expect();
    expect.next_function_call("out_of_scope");
    expect.next_function_output("out_of_scope");
    expect.next_task_completed("payment");
    assert_eq!(expect.next_regression(), vec!["item_1"]);
    expect.next_task_started("item_1");

    let result = call
        .session
        .run("A caesar salad, dressing on the side")
        .await;
    assert_eq!(
        result.tasks_started(),
        vec!["payment"],
        "item 2 is not asked again"
    );

    call.session.run("Mobile, 20 percent").await;
    call.session.run("Yes").await;
    llm.verify().unwrap();

    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    let order = as_json(&orders[0]);
    assert_eq!(
        order["items"],
        json!([
            {"name": "Caesar Salad", "quantity": 1, "modifications": ["dressing on the side"], "unit_price_cents": 1000},
            {"name": "Grilled Salmon", "quantity": 1, "modifications": ["no butter"], "unit_price_cents": 2800}
        ])
    );
    assert_eq!(order["subtotal_cents"], 3800);
    assert_eq!(order["tip_cents"], 760);
    assert_eq!(order["total_cents"], 4560);
    assert_eq!(order["payment_method"], "mobile");
}

#[tokio::test(start_paused = true)]
async fn changing_an_item_during_the_read_back_reruns_payment_then_the_read_back() {
    let mut steps = two_items_then_payment();
    steps.extend([
        confirm_payment("card", 15.0),
        review_enters("Total: $59.80"),
        Step::reply().call("out_of_scope", json!({"task_ids": ["item_2"]})),
        item_enters("What instead of the salmon?"),
        confirm_item("Ribeye Steak", 1, &["medium rare"], false),
        payment_enters("$59.00"),
        confirm_payment("card", 15.0),
        review_enters("Total: $67.85"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "two bruschetta", "salmon no butter", "card 15"])
        .await;
    call.session.run("wait, not the salmon").await;
    let result = call.session.run("a ribeye, medium rare").await;
    assert_eq!(result.tasks_started(), vec!["payment"]);
    call.say_all(&["card, 15", "yes"]).await;
    llm.verify().unwrap();
    let order = as_json(&call.stored_orders()[0]);
    assert_eq!(order["items"][0]["name"], "Bruschetta");
    assert_eq!(order["items"][1]["name"], "Ribeye Steak");
    assert_eq!(order["items"].as_array().unwrap().len(), 2);
    assert_eq!(order["total_cents"], 6785);
}

#[tokio::test(start_paused = true)]
async fn an_item_added_during_payment_is_taken_before_payment_resumes() {
    let mut steps = two_items_then_payment();
    steps.extend([
        Step::reply().call("add_item", json!({})),
        item_enters("What else would you like?"),
        confirm_item("Panna Cotta", 2, &[], false),
        payment_enters("$69.00"),
        confirm_payment("cash", 0.0),
        review_enters("Total: $69.00"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "two bruschetta", "salmon no butter"])
        .await;
    let result = call.session.run("oh, and add dessert").await;
    assert_eq!(result.tasks_started(), vec!["item_3"]);
    call.say_all(&["two panna cotta", "cash, no tip", "yes"])
        .await;
    llm.verify().unwrap();
    let order = as_json(&call.stored_orders()[0]);
    assert_eq!(order["items"].as_array().unwrap().len(), 3);
    assert_eq!(order["items"][2]["unit_price_cents"], 850);
    assert_eq!(order["total_cents"], 6900);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_item_leaves_no_trace_in_the_order() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("First item?"),
        confirm_item("Cheesecake", 1, &[], true),
        item_enters("Next?"),
        Step::reply().call("cancel_item", json!({})),
        payment_enters("$9.00"),
        confirm_payment("card", 0.0),
        review_enters("Total: $9.00"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&[
        "order",
        "a cheesecake and more",
        "never mind the second one",
        "card",
        "yes",
    ])
    .await;
    llm.verify().unwrap();
    let order = as_json(&call.stored_orders()[0]);
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["subtotal_cents"], 900);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_only_item_ends_the_order_with_nothing_stored() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        Step::reply().call("cancel_item", json!({})),
        Step::summary("The caller cancelled."),
        Step::reply()
            .expect(|r| last_tool_output_contains(r, "No order was placed"))
            .text("No problem. Anything else?"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "actually, never mind"]).await;
    llm.verify().unwrap();
    assert!(call.stored_orders().is_empty());
}

/// "Take the salmon off" at the read-back: `remove_item` brings item 2 back, which cancels
/// itself from code (no question about what instead), payment re-enters with the new
/// subtotal, and the stored order has only the bruschetta. A dish not in the order is
/// refused with what the order has.
#[tokio::test(start_paused = true)]
async fn a_dish_taken_off_during_the_read_back_cancels_its_item_and_reenters_payment() {
    let mut steps = two_items_then_payment();
    steps.extend([
        confirm_payment("card", 15.0),
        review_enters("Total: $59.80"),
        Step::reply().call("remove_item", json!({"name": "Tiramisu"})),
        Step::reply().text("There is no tiramisu in your order."),
        Step::reply().call("remove_item", json!({"name": "grilled salmon"})),
        payment_enters("$24.00"),
        confirm_payment("card", 15.0),
        review_enters("Total: $27.60"),
    ]);
    steps.extend(confirm_and_announce(1));
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "two bruschetta", "salmon no butter", "card 15"])
        .await;

    let result = call.session.run("take the tiramisu off").await;
    let mut expect = result.expect();
    expect.next_function_call("remove_item");
    let refused = expect.next_function_error("remove_item");
    assert!(
        refused.contains("Tiramisu is not in the order; it has: Bruschetta, Grilled Salmon"),
        "{refused}"
    );

    let result = call.session.run("sorry, I meant the salmon").await;
    let mut expect = result.expect();
    expect.next_function_call("remove_item");
    assert!(
        expect
            .next_function_output("remove_item")
            .contains("Grilled Salmon")
    );
    expect.next_task_completed("review");
    assert_eq!(expect.next_regression(), vec!["item_2"]);
    expect.next_task_started("item_2");
    expect.next_function_call("cancel_item");
    assert_eq!(
        expect.next_function_output("cancel_item"),
        "Item cancelled."
    );
    expect.skip_to_task_started("payment");

    call.say_all(&["card, 15", "yes"]).await;
    llm.verify().unwrap();
    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    let order = as_json(&orders[0]);
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["items"][0]["name"], "Bruschetta");
    assert_eq!(order["total_cents"], 2760);
}

/// A small model's script up to the read-back of two tiramisu and a cheesecake, paid in
/// cash (its openings are said from code, so only its tool calls are scripted).
fn small_model_up_to_read_back() -> (Vec<Step>, [&'static str; 4]) {
    (
        vec![
            Step::reply().call("take_order", json!({})),
            Step::reply().call(
                "confirm_item",
                json!({"name": "Tiramisu", "quantity": 2, "modifications": [], "more_items": false}),
            ),
            Step::reply().call(
                "confirm_item",
                json!({"name": "Cheesecake", "quantity": 1, "modifications": [], "more_items": false}),
            ),
            Step::reply().call("confirm_payment", json!({"method": "cash", "tip_percentage": 0})),
        ],
        [
            "I'd like to order",
            "Two tiramisu, and something else",
            "One cheesecake",
            "Cash, no tip",
        ],
    )
}

/// With a small model, "cancel the cheesecake" at the read-back often makes the model go
/// back to the item (`out_of_scope`) instead of calling `remove_item`. The item, brought
/// back on those words, cancels itself from code instead of asking "what instead?", and
/// payment re-enters with the new subtotal.
#[tokio::test(start_paused = true)]
async fn a_small_models_item_brought_back_on_cancel_words_cancels_itself() {
    let (mut steps, turns) = small_model_up_to_read_back();
    steps.extend([
        Step::reply().call("out_of_scope", json!({"task_ids": ["item_2"]})),
        Step::reply().call(
            "confirm_payment",
            json!({"method": "cash", "tip_percentage": 0}),
        ),
        Step::reply().call("confirm_order", json!({})),
        Step::summary("The caller ordered two tiramisu."),
        Step::reply().text("Your order number is 1."),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start_small(&llm).await;
    call.say_all(&turns).await;

    let result = call
        .session
        .run("Actually, cancel the cheesecake. I don't want it after all.")
        .await;
    let mut expect = result.expect();
    expect.skip_to_task_started("item_2");
    expect.next_function_call("reconsider_item");
    assert_eq!(
        expect.next_function_output("reconsider_item"),
        "Item cancelled."
    );
    expect.skip_to_task_started("payment");
    assert!(
        result
            .messages()
            .iter()
            .any(|m| m.contains("Your subtotal is $20.00")),
        "{:?}",
        result.messages()
    );
    call.say_all(&["Cash, no tip", "Yes, that's right"]).await;
    llm.verify().unwrap();
    let order = as_json(&call.stored_orders()[0]);
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["items"][0]["name"], "Tiramisu");
    assert_eq!(order["total_cents"], 2000);
}

/// Without cancel words the item brought back asks what instead, from code, and the model
/// is not asked for another reply; `reconsider_item` is never offered to the model.
#[tokio::test(start_paused = true)]
async fn a_small_models_item_brought_back_to_change_asks_what_instead() {
    let (mut steps, turns) = small_model_up_to_read_back();
    steps.push(
        Step::reply()
            .expect_no_tool("reconsider_item")
            .call("out_of_scope", json!({"task_ids": ["item_2"]})),
    );
    let llm = ScriptedLlm::new(steps);
    let mut call = start_small(&llm).await;
    call.say_all(&turns).await;
    let result = call.session.run("Actually, change the cheesecake").await;
    assert_eq!(
        result.messages().last().copied(),
        Some("What would you like instead of the Cheesecake?")
    );
    llm.verify().unwrap();
}
