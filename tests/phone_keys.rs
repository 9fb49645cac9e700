//! Key presses from a phone caller (DTMF): during the read-back 1 places the order without
//! asking the model, 2 goes back to change an item; any other key reaches the model as a
//! key press, never as words the caller said.

mod common;

use bella_vista::agent::SessionEvent;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRole};
use common::bella::*;
use serde_json::json;

fn last_user_text(request: &bella_vista::llm::ChatRequest) -> Option<String> {
    request.items.iter().rev().find_map(|item| match item {
        ChatItem::Message {
            role: ChatRole::User,
            text,
        } => Some(text.clone()),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn pressing_1_during_the_read_back_places_the_order() {
    let (mut steps, lines) = tiramisu_up_to_read_back();
    steps[6] = review_enters("Total: $20.00").expect_instructions("press 1 to confirm");
    steps.extend([
        Step::summary("Two tiramisu, cash, order 1."),
        Step::reply()
            .expect(|request| last_tool_output_contains(request, "order number 1"))
            .text("Your order number is 1. Thank you!"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start_phone(&llm, "+15550142", None).await;
    call.say_all(&lines).await;

    let result = call.session.press('1').await;
    let mut expect = result.expect();
    expect.next_function_call("confirm_order");
    assert!(
        expect
            .next_function_output("confirm_order")
            .contains("Order number 1")
    );
    expect.next_task_completed("review");
    assert!(
        result
            .events()
            .contains(&SessionEvent::KeyPressReceived { key: '1' })
    );
    assert_eq!(
        result.messages().last(),
        Some(&"Your order number is 1. Thank you!")
    );
    llm.verify().unwrap();
    let orders = call.stored_orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(as_json(&orders[0])["caller_phone"], "+15550142");
}

#[tokio::test(start_paused = true)]
async fn pressing_2_during_the_read_back_goes_back_to_change_an_item() {
    let (mut steps, lines) = tiramisu_up_to_read_back();
    steps.extend([
        Step::reply()
            .expect(|request| match last_user_text(request) {
                Some(text) if text.contains("pressed 2") && text.contains("change") => Ok(()),
                other => Err(format!("the key press as told to the model: {other:?}")),
            })
            .expect_tool("out_of_scope")
            .call("out_of_scope", json!({"task_ids": ["item_1"]})),
        item_enters("Which dessert would you like instead?"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start_phone(&llm, "+15550142", None).await;
    call.say_all(&lines).await;

    let result = call.session.press('2').await;
    let mut expect = result.expect();
    expect.next_function_call("out_of_scope");
    expect.skip_to_task_started("item_1");
    llm.verify().unwrap();
    assert!(call.stored_orders().is_empty());
}

#[tokio::test(start_paused = true)]
async fn other_keys_reach_the_model_as_key_presses_not_speech() {
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply()
            .expect(|request| match last_user_text(request) {
                Some(text) if text.contains("pressed the key 5") && text.contains("not speech") => {
                    Ok(())
                }
                other => Err(format!("the key press as told to the model: {other:?}")),
            })
            .text("That key does nothing here; just tell me what you'd like."),
    ]);
    let mut call = start_phone(&llm, "+15550142", None).await;
    let result = call.session.press('5').await;
    assert_eq!(result.messages().len(), 1);
    llm.verify().unwrap();
}
