//! The engine's side of an interruption: a reply being generated is cancelled and only
//! the heard part stays in the conversation; a reply already generated is cut to what was
//! heard; caller turns that arrive during a reply wait their turn.

use std::time::Duration;

use bella_vista::agent::testing::TestSession;
use bella_vista::agent::{Agent, SessionEvent, SessionInput};
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRequest, ChatRole};

fn assistant_texts(request: &ChatRequest) -> Vec<String> {
    request
        .items
        .iter()
        .filter_map(|item| match item {
            ChatItem::Message {
                role: ChatRole::Assistant,
                text,
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn host() -> Agent {
    Agent::new("Host", "Answer the caller.")
}

#[tokio::test]
async fn interrupting_a_reply_in_generation_cancels_it_and_keeps_only_what_was_heard() {
    let llm = ScriptedLlm::new([
        Step::reply()
            .chunk_delay(Duration::from_millis(40))
            .text("Our specials today are the salmon, the ribeye and the tiramisu."),
        Step::reply()
            .expect(|r| match assistant_texts(r).as_slice() {
                [only] if only == "Our specials" => Ok(()),
                other => Err(format!("{other:?}")),
            })
            .text("Sure."),
    ]);
    let (mut session, _) = TestSession::start(host(), llm.clone()).await;
    let handle = session.handle();
    handle
        .send_input(SessionInput::UserTurn("What are the specials?".into()))
        .await
        .unwrap();
    // wait for the reply to start streaming
    loop {
        match handle.next_event().await {
            Some(SessionEvent::TextDelta { .. }) => break,
            Some(_) => {}
            None => panic!("the session ended before the reply started streaming"),
        }
    }
    handle
        .send_input(SessionInput::Interrupted {
            heard: "Our specials".into(),
        })
        .await
        .unwrap();
    let events = handle.until_listening().await;
    assert!(events.iter().any(|e| matches!(e,
        SessionEvent::ReplyInterrupted { heard } if heard == "Our specials")));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::AgentMessage { .. }))
    );
    let result = session.run("Just the salmon, please.").await;
    assert_eq!(result.messages(), vec!["Sure."]);
    llm.verify().unwrap();
}

#[tokio::test]
async fn interrupting_playback_after_generation_cuts_the_stored_reply() {
    let llm = ScriptedLlm::new([
        Step::reply().text("We are open from noon until ten at night."),
        Step::reply()
            .expect(|r| match assistant_texts(r).as_slice() {
                [only] if only == "We are open from noon" => Ok(()),
                other => Err(format!("{other:?}")),
            })
            .text("Yes, on Sundays too."),
    ]);
    let (mut session, _) = TestSession::start(host(), llm.clone()).await;
    session.run("When are you open?").await;
    session
        .handle()
        .send_input(SessionInput::Interrupted {
            heard: "We are open from noon".into(),
        })
        .await
        .unwrap();
    let cut = session.wait().await;
    assert!(cut.events().iter().any(|e| matches!(e,
        SessionEvent::ReplyInterrupted { heard } if heard == "We are open from noon")));
    let result = session.run("On Sundays too?").await;
    assert_eq!(result.messages(), vec!["Yes, on Sundays too."]);
    llm.verify().unwrap();
}

#[tokio::test]
async fn a_turn_arriving_during_a_reply_is_answered_after_it() {
    let llm = ScriptedLlm::new([
        Step::reply()
            .chunk_delay(Duration::from_millis(20))
            .text("Welcome to Bella Vista."),
        Step::reply().expect_user("second").text("Got it."),
    ]);
    let (mut session, _) = TestSession::start(host(), llm.clone()).await;
    let handle = session.handle();
    handle
        .send_input(SessionInput::UserTurn("first".into()))
        .await
        .unwrap();
    handle
        .send_input(SessionInput::UserTurn("second".into()))
        .await
        .unwrap();
    let first = handle.until_listening().await;
    assert!(first.iter().any(
        |e| matches!(e, SessionEvent::AgentMessage { text } if text == "Welcome to Bella Vista.")
    ));
    let second = handle.until_listening().await;
    assert!(
        second
            .iter()
            .any(|e| matches!(e, SessionEvent::AgentMessage { text } if text == "Got it."))
    );
    llm.verify().unwrap();
}
