//! What the agent may not say on its own: an order confirmation, an order number or a
//! price no tool produced. The sentence is withheld (reported as `ReplyCorrected`) and the
//! rest of the reply is said; a reply with nothing left gets the fallback sentence.

mod common;

use std::sync::Arc;

use bella_vista::agent::testing::TestSession;
use bella_vista::agent::{SessionEvent, SessionOptions};
use bella_vista::bella_vista::order_taker;
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::bella_vista::reply_guard::OrderFactsGuard;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::restaurant;

fn guarded() -> SessionOptions {
    SessionOptions {
        reply_check: Some(Arc::new(OrderFactsGuard {
            fallback: Prompts::default().guard_fallback,
        })),
        ..SessionOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_invented_confirmation_number_and_price_are_never_said() {
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply().text(
            "Great choice. Your order has been confirmed. Your order number is 12345. \
             The total is $120.00. Anything else?",
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let agent = order_taker(restaurant(&dir.path().join("orders.db")));
    let (mut session, _) = TestSession::start_with(agent, llm.clone(), guarded()).await;
    let result = session.run("Two tiramisu, please").await;
    assert_eq!(result.messages(), vec!["Great choice. Anything else?"]);
    let withheld: Vec<&str> = result
        .events()
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ReplyCorrected { sentence, .. } => Some(sentence.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(withheld.len(), 3, "{withheld:?}");
    let spoken: String = result
        .events()
        .iter()
        .filter_map(|e| match e {
            SessionEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        !spoken.contains("12345") && !spoken.contains("$120"),
        "{spoken}"
    );
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reply_with_nothing_true_left_gets_the_fallback() {
    let llm = ScriptedLlm::new([
        Step::reply().text("Welcome!"),
        Step::reply().text("Your order is confirmed."),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let agent = order_taker(restaurant(&dir.path().join("orders.db")));
    let (mut session, _) = TestSession::start_with(agent, llm.clone(), guarded()).await;
    let result = session.run("Is my order done?").await;
    assert_eq!(
        result.messages(),
        vec![Prompts::default().guard_fallback.as_str()]
    );
    llm.verify().unwrap();
}
