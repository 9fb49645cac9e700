//! Provider faults as the caller experiences them, against a local server speaking the
//! OpenAI wire format: a 500 is retried unnoticed, a hang times out, and a provider that
//! stays down gets an apology while the session goes on.

mod common;

use std::time::Duration;

use bella_vista::agent::testing::TestSession;
use bella_vista::agent::{Agent, OnEnter, SessionEvent, SessionOptions};
use bella_vista::llm::openai::{OpenAiLlm, OpenAiSettings};
use common::openai_server::{Endpoint, FakeOpenAi, Response, error_body, text_chunks};

const APOLOGY: &str = "Sorry, could you say that again?";

fn llm(server: &FakeOpenAi) -> OpenAiLlm {
    OpenAiLlm::new(OpenAiSettings {
        base_url: Some(server.base_url()),
        model: "fake".into(),
        connect_timeout: Duration::from_millis(300),
        first_token_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..OpenAiSettings::default()
    })
    .unwrap()
}

async fn session(server: &FakeOpenAi) -> TestSession {
    let agent = Agent::new("Host", "Answer the caller.").on_enter(OnEnter::Listen);
    let options = SessionOptions {
        apology: APOLOGY.into(),
        ..SessionOptions::default()
    };
    let (session, _) = TestSession::start_with(agent, llm(server), options).await;
    session
}

fn ok(server: &FakeOpenAi, text: &str) {
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&[text])),
    );
}

fn fail(server: &FakeOpenAi, response: Response, times: usize) {
    for _ in 0..times {
        let copy = match &response {
            Response::Status(status, body) => Response::Status(*status, body.clone()),
            Response::Hang => Response::Hang,
            _ => unreachable!("only failures here"),
        };
        server.push(Endpoint::ChatCompletions, copy);
    }
}

#[tokio::test]
async fn a_500_then_success_is_retried_and_the_caller_notices_nothing() {
    let server = FakeOpenAi::start().await;
    fail(&server, Response::Status(500, error_body("overloaded")), 1);
    ok(&server, "We open at noon.");
    let mut session = session(&server).await;
    let result = session.run("When do you open?").await;
    assert_eq!(result.messages(), vec!["We open at noon."]);
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_hanging_provider_times_out_then_the_retry_answers() {
    let server = FakeOpenAi::start().await;
    fail(&server, Response::Hang, 1);
    ok(&server, "Yes, we deliver.");
    let mut session = session(&server).await;
    let started = std::time::Instant::now();
    let result = session.run("Do you deliver?").await;
    assert_eq!(result.messages(), vec!["Yes, we deliver."]);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_provider_that_stays_down_gets_an_apology_and_the_session_goes_on() {
    let server = FakeOpenAi::start().await;
    fail(&server, Response::Status(503, error_body("down")), 3);
    ok(&server, "We are at 12 Via Roma.");
    let mut session = session(&server).await;
    let result = session.run("Where are you?").await;
    assert_eq!(result.messages(), vec![APOLOGY]);
    assert!(
        result
            .events()
            .iter()
            .any(|e| matches!(e, SessionEvent::ReplyFailed { error } if error.contains("503")))
    );
    let result = session.run("Where are you located?").await;
    assert_eq!(result.messages(), vec!["We are at 12 Via Roma."]);
    let last = server.chat_requests().pop().unwrap();
    let text = last.to_string();
    assert!(
        text.contains(APOLOGY),
        "the apology is part of the conversation: {text}"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_hanging_gets_an_apology_within_the_time_limits() {
    let server = FakeOpenAi::start().await;
    fail(&server, Response::Hang, 3);
    let mut session = session(&server).await;
    let started = std::time::Instant::now();
    let result = session.run("Hello?").await;
    assert_eq!(result.messages(), vec![APOLOGY]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
