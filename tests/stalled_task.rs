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

/// A tool that needs something only the caller can give asks for it from code: the caller
/// hears the tool's question word for word and the model is not asked to reply again (a
/// small model would guess again, or ask in its own words about something else).
#[tokio::test(start_paused = true)]
async fn a_tool_that_asks_the_caller_is_followed_by_its_question_not_a_model_reply() {
    use bella_vista::agent::testing::TestSession;
    use bella_vista::agent::{Agent, NoArgs, OnEnter, ToolError, tool_fn};
    use serde_json::json;

    let llm = ScriptedLlm::new([
        Step::reply().text("Hello! How would you like to pay?"),
        Step::reply().call("pay", json!({})),
        Step::reply().call("pay", json!({})),
    ]);
    let agent = Agent::new("Cashier", "Take the payment.")
        .on_enter(OnEnter::Reply("Greet the caller.".into()))
        .with_tool(tool_fn("pay", "Record the payment.", |_ctx, _: NoArgs| {
            Err(ToolError::AskCaller {
                reason: "the caller has not said how they pay".into(),
                question: "How will you pay: card, cash or mobile?".into(),
            })
        }));
    let (mut session, _greeting) = TestSession::start(agent, llm.clone()).await;
    for turn in ["An eighteen percent tip, please.", "Eighteen percent."] {
        let result = session.run(turn).await;
        let mut expect = result.expect();
        expect.next_function_call("pay");
        let output = expect.next_function_error("pay");
        assert!(output.contains("has not said how they pay"), "{output}");
        assert_eq!(
            expect.next_message(),
            "How will you pay: card, cash or mobile?"
        );
        expect.no_more();
    }
    llm.verify().unwrap();
}

/// The order taker's guard starts an order for a model that only chats; once an order was
/// placed, the caller may chat as long as they like without a new order being started.
#[tokio::test(start_paused = true)]
async fn a_guard_that_calls_a_tool_retires_once_that_tool_succeeded() {
    use bella_vista::agent::testing::TestSession;
    use bella_vista::agent::{Agent, NoArgs, OnEnter, StallAction, tool_fn};
    use serde_json::json;

    let llm = ScriptedLlm::new([
        Step::reply().text("Hello! What can I get you?"),
        Step::reply().call("take_order", json!({})),
        Step::reply().text("Your order is placed."),
        Step::reply().text("Yes, it is homemade."),
        Step::reply().text("We close at ten."),
        Step::reply().text("You're welcome!"),
        Step::reply().text("Goodbye!"),
    ]);
    let agent = Agent::new("OrderTaker", "Take orders.")
        .on_enter(OnEnter::Reply("Greet the caller.".into()))
        .on_stall(3, StallAction::CallTool("take_order".into()))
        .with_tool(tool_fn(
            "take_order",
            "Take the order.",
            |_ctx, _: NoArgs| Ok("order 1 placed".into()),
        ));
    let (mut session, _greeting) = TestSession::start(agent, llm.clone()).await;
    session.run("One tiramisu, please.").await;
    for turn in [
        "Is the tiramisu homemade?",
        "When do you close?",
        "Thanks!",
        "Bye.",
    ] {
        let result = session.run(turn).await;
        let mut expect = result.expect();
        expect.next_message();
        expect.no_more();
    }
    llm.verify().unwrap();
}
