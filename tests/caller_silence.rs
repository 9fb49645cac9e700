//! A caller who goes quiet: the first silence gets "are you still there?", a second one in
//! a row a goodbye and a hang-up; speaking in between starts the count again. The order in
//! progress is not stored.

mod common;

use bella_vista::agent::SessionEvent;
use bella_vista::agent::SessionOptions;
use bella_vista::llm::scripted::ScriptedLlm;
use common::bella::*;

#[tokio::test]
async fn silence_twice_in_a_row_ends_the_call_and_stores_nothing() {
    let (steps, lines) = tiramisu_up_to_read_back();
    let llm = ScriptedLlm::new(steps.into_iter().take(5));
    let mut call = start_phone(&llm, "+15550142", None).await;
    call.say_all(&lines[..2]).await;
    let options = SessionOptions::default();

    let first = call.session.silence().await;
    assert_eq!(first.messages(), vec![options.still_there.as_str()]);
    assert!(!first.events().contains(&SessionEvent::HangUpRequested));

    let second = call.session.silence().await;
    let mut expect = second.expect();
    assert_eq!(expect.next_message(), options.goodbye);
    expect.next_hang_up();
    assert_eq!(second.events().last(), Some(&SessionEvent::SessionEnded));
    llm.verify().unwrap();
    assert!(call.stored_orders().is_empty());
}

#[tokio::test]
async fn speaking_after_the_prompt_starts_the_count_again() {
    let (steps, lines) = tiramisu_up_to_read_back();
    let llm = ScriptedLlm::new(steps.into_iter().take(5));
    let mut call = start_phone(&llm, "+15550142", None).await;
    call.say_all(&lines[..1]).await;
    call.session.silence().await;
    call.session.run(lines[1]).await;
    let again = call.session.silence().await;
    assert_eq!(
        again.messages(),
        vec![SessionOptions::default().still_there.as_str()]
    );
    llm.verify().unwrap();
}
