//! A model that chats instead of acting does not keep the caller in a task forever: after
//! three caller turns without a tool, the item task asks its question from code; the order
//! taker starts the order itself.

mod common;

use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;

#[tokio::test(start_paused = true)]
async fn three_turns_without_a_tool_in_an_item_task_bring_the_question_from_code() {
    let mut steps = greet_and_start();
    steps.push(item_enters("What would you like?"));
    steps.extend([
        Step::reply().text("Sure!"),
        Step::reply().text("Happy to help."),
        Step::reply().text("You're welcome! Anything else?"),
    ]);
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    call.say_all(&["I'd like to order", "hmm", "thanks"]).await;
    let result = call.session.run("ok").await;
    assert_eq!(
        result.messages(),
        vec![
            "You're welcome! Anything else?",
            Prompts::default().item_stall.as_str()
        ]
    );
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_order_taker_that_never_starts_the_order_has_it_started_from_code() {
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply().text("We have great pizza."),
        Step::reply().text("Our tiramisu is lovely."),
        Step::reply().text("Sure, what else?"),
        item_enters("Which dish would you like?"),
    ]);
    let mut call = start(&llm).await;
    call.say_all(&["hi", "I want food"]).await;
    let result = call.session.run("two tiramisu").await;
    let mut expect = result.expect();
    expect.next_message();
    expect.next_function_call("take_order");
    expect.next_task_started("item_1");
    llm.verify().unwrap();
}
