//! Bad input from the model becomes a tool error the model reads; the order is untouched
//! and the conversation recovers.

mod common;

use bella_vista::agent::SessionEvent;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

fn task_completions(events: &[SessionEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SessionEvent::TaskCompleted { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn item_errors_are_returned_to_the_model_and_the_item_task_goes_on() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        // unknown dish, quantity 0, quantity 1000, malformed JSON, unknown tool: one reply
        Step::reply()
            .call("confirm_item", json!({"name": "salmon steak", "quantity": 1, "modifications": [], "more_items": false}))
            .call("confirm_item", json!({"name": "Tiramisu", "quantity": 0, "modifications": [], "more_items": false}))
            .call("confirm_item", json!({"name": "Tiramisu", "quantity": 1000, "modifications": [], "more_items": false}))
            .call_raw("confirm_item", "{\"name\": \"Tiramisu\", \"quantity\": ")
            .call("order_pizza", json!({})),
        Step::reply()
            .expect(|r| last_tool_output_contains(r, "no tool named"))
            .text("Sorry, which dish and how many?"),
        confirm_item("Tiramisu", 2, &[], false),
        payment_enters("$20.00"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.session.run("order").await;
    let result = call.session.run("salmon steak").await;
    let errors = result.function_outputs("confirm_item");
    assert_eq!(errors.len(), 4);
    assert!(errors.iter().all(|(_, is_error)| *is_error));
    assert!(errors[0].0.contains("Grilled Salmon"), "{}", errors[0].0);
    assert!(errors[1].0.contains("quantity"), "{}", errors[1].0);
    assert!(errors[2].0.contains("1000"), "{}", errors[2].0);
    assert!(errors[3].0.contains("invalid arguments"), "{}", errors[3].0);
    assert_eq!(
        task_completions(result.events()),
        0,
        "the item task is still running"
    );
    assert_eq!(result.messages(), vec!["Sorry, which dish and how many?"]);

    let result = call.session.run("two tiramisu").await;
    assert_eq!(result.tasks_started(), vec!["payment"]);
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn payment_errors_are_returned_to_the_model_and_payment_goes_on() {
    let mut steps = greet_and_start();
    steps.extend([
        item_enters("What would you like?"),
        confirm_item("Cheesecake", 2, &[], false),
        payment_enters("$18.00"),
        Step::reply()
            .call(
                "confirm_payment",
                json!({"method": "card", "tip_percentage": -10}),
            )
            .call(
                "confirm_payment",
                json!({"method": "bitcoin", "tip_percentage": 15}),
            )
            .call("confirm_payment", json!({"method": "card"})),
        Step::reply().text("Sorry, could you repeat the payment method and tip?"),
        confirm_payment("Card", 15.0),
        review_enters("Total: $20.70"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["order", "two cheesecakes"]).await;
    let result = call.session.run("bitcoin, minus ten percent").await;
    let errors = result.function_outputs("confirm_payment");
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|(_, is_error)| *is_error));
    assert!(errors[0].0.contains("between 0 and 50"), "{}", errors[0].0);
    assert!(errors[1].0.contains("card"), "{}", errors[1].0);
    assert!(errors[2].0.contains("tip_percentage"), "{}", errors[2].0);
    assert_eq!(task_completions(result.events()), 0);

    let result = call.session.run("card, fifteen percent").await;
    assert_eq!(result.tasks_started(), vec!["review"]);
    llm.verify().unwrap();
    assert!(
        call.stored_orders().is_empty(),
        "nothing stored before the final yes"
    );
}

#[tokio::test(start_paused = true)]
async fn check_menu_with_an_unknown_category_lists_the_real_ones() {
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome!"),
        Step::reply()
            .call("check_menu", json!({"category": "drinks"}))
            .call("check_menu", json!({"category": "dessert"})),
        Step::reply().text("We have tiramisu, cheesecake and panna cotta."),
    ]);
    let mut call = start(&llm).await;
    let result = call
        .session
        .run("what drinks and desserts do you have?")
        .await;
    let outputs = result.function_outputs("check_menu");
    assert!(
        outputs[0].1 && outputs[0].0.contains("desserts"),
        "{:?}",
        outputs[0]
    );
    assert!(
        !outputs[1].1 && outputs[1].0.contains("Tiramisu: $10.00"),
        "{:?}",
        outputs[1]
    );
    llm.verify().unwrap();
}
