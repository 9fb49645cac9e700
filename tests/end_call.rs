//! `end_call`: after the order is stored, "that's all, bye" ends the call with the goodbye
//! said from code; during the order it ends the call and stores nothing. Withheld while a
//! task enters.

mod common;

use bella_vista::agent::SessionEvent;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn after_the_order_the_caller_says_goodbye_and_the_agent_hangs_up() {
    let (mut steps, lines) = tiramisu_up_to_read_back();
    steps.extend(confirm_and_announce(1));
    steps.push(
        Step::reply()
            .expect_tool("end_call")
            .call("end_call", json!({})),
    );
    let llm = ScriptedLlm::new(steps);
    let mut call = start_phone(&llm, "+15550142", None).await;
    call.say_all(&lines).await;
    call.session.run("Yes, that's right").await;

    let result = call.session.run("Thanks, that's all. Bye!").await;
    let mut expect = result.expect();
    expect.next_function_call("end_call");
    assert_eq!(expect.next_message(), Prompts::default().goodbye);
    expect.next_hang_up();
    expect.no_more();
    assert_eq!(result.events().last(), Some(&SessionEvent::SessionEnded));
    llm.verify().unwrap();
    assert_eq!(call.stored_orders().len(), 1, "the order stays stored");
}

#[tokio::test(start_paused = true)]
async fn hanging_up_in_the_middle_of_the_order_stores_nothing() {
    let (mut steps, lines) = tiramisu_up_to_read_back();
    steps.truncate(5);
    steps.push(
        Step::reply()
            .expect_tool("end_call")
            .call("end_call", json!({})),
    );
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&lines[..2]).await;

    let result = call.session.run("Actually never mind, bye.").await;
    let mut expect = result.expect();
    expect.next_function_call("end_call");
    expect.next_message();
    expect.next_hang_up();
    assert_eq!(result.events().last(), Some(&SessionEvent::SessionEnded));
    llm.verify().unwrap();
    assert!(call.stored_orders().is_empty());
}

#[tokio::test(start_paused = true)]
async fn end_call_is_withheld_while_a_task_enters() {
    let llm = ScriptedLlm::new([
        Step::reply().expect_no_tool("end_call").text("Welcome!"),
        Step::reply()
            .expect_tool("end_call")
            .call("take_order", json!({})),
        Step::reply()
            .expect_no_tool("end_call")
            .expect_no_tool("transfer_to_staff")
            .text("What would you like?"),
        Step::reply()
            .expect_tool("end_call")
            .expect_tool("transfer_to_staff")
            .text("Sure."),
    ]);
    let mut call = start(&llm).await;
    call.say_all(&["I want to order", "Hmm, let me think"])
        .await;
    llm.verify().unwrap();
}
