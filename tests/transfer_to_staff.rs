//! `transfer_to_staff`: a phone caller hears the notice, then the transport transfers
//! them; if that fails they hear so and the call goes on. A caller who is not on the phone
//! cannot be transferred, and the model is told so.

mod common;

use bella_vista::agent::{SessionEvent, SessionInput};
use bella_vista::bella_vista::prompts::Prompts;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use common::bella::*;
use serde_json::json;

fn asks_for_a_person() -> Vec<Step> {
    vec![
        Step::reply().text("Welcome to Bella Vista!"),
        Step::reply()
            .expect_tool("transfer_to_staff")
            .call("transfer_to_staff", json!({})),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_failed_transfer_is_told_to_the_caller_and_the_call_goes_on() {
    let mut steps = asks_for_a_person();
    steps.push(
        Step::reply()
            .expect(|request| last_tool_output_contains(request, "did not work"))
            .text("What can I get you?"),
    );
    let llm = ScriptedLlm::new(steps);
    let mut call = start_phone(&llm, "+15550142", Some("tel:+15550199")).await;
    let handle = call.session.handle();
    handle
        .send_input(SessionInput::UserTurn("Can I talk to a person?".into()))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = handle.next_event().await {
        let requested = matches!(event, SessionEvent::TransferRequested { .. });
        events.push(event);
        if requested {
            break;
        }
    }
    let prompts = Prompts::default();
    assert!(events.contains(&SessionEvent::AgentMessage {
        text: prompts.transferring.clone()
    }));
    assert_eq!(
        events.last(),
        Some(&SessionEvent::TransferRequested {
            to: "tel:+15550199".into()
        })
    );
    handle
        .send_input(SessionInput::TransferFinished(Err("603 Decline".into())))
        .await
        .unwrap();
    let rest = handle.until_listening().await;
    let said: Vec<&SessionEvent> = rest
        .iter()
        .filter(|e| matches!(e, SessionEvent::AgentMessage { .. }))
        .collect();
    assert_eq!(
        said,
        vec![
            &SessionEvent::AgentMessage {
                text: prompts.transfer_failed
            },
            &SessionEvent::AgentMessage {
                text: "What can I get you?".into()
            }
        ]
    );
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_successful_transfer_ends_the_agents_part_of_the_call() {
    let llm = ScriptedLlm::new(asks_for_a_person());
    let mut call = start_phone(&llm, "+15550142", Some("+15550199")).await;
    let handle = call.session.handle();
    handle
        .send_input(SessionInput::UserTurn("A person, please".into()))
        .await
        .unwrap();
    loop {
        match handle.next_event().await {
            Some(SessionEvent::TransferRequested { .. }) => break,
            Some(_) => {}
            None => panic!("no transfer requested"),
        }
    }
    handle
        .send_input(SessionInput::TransferFinished(Ok(())))
        .await
        .unwrap();
    let rest = handle.until_listening().await;
    assert_eq!(rest.last(), Some(&SessionEvent::SessionEnded));
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_caller_not_on_the_phone_cannot_be_transferred() {
    let mut steps = asks_for_a_person();
    steps.push(
        Step::reply()
            .expect(|request| last_tool_output_contains(request, "not on the telephone"))
            .text("I can't put you through, but I can help."),
    );
    let llm = ScriptedLlm::new(steps);
    let mut call = start(&llm).await;
    let result = call.session.run("Can I talk to a person?").await;
    assert!(
        !result
            .events()
            .iter()
            .any(|e| matches!(e, SessionEvent::TransferRequested { .. }))
    );
    llm.verify().unwrap();
}
