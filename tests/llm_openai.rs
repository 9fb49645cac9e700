//! The OpenAI-compatible adapter against a fake server: streaming, tool calls, retries,
//! time-outs and the request it sends.

mod common;

use std::time::{Duration, Instant};

use bella_vista::llm::openai::{OpenAiLlm, OpenAiSettings};
use bella_vista::llm::{
    ChatItem, ChatRequest, ChatRole, Llm, LlmError, LlmEvent, LlmStream, RequestPurpose, ToolCall,
    ToolSpec,
};
use common::openai_server::{
    Endpoint, FakeOpenAi, Response, error_body, text_chunks, tool_call_chunks,
};
use futures_util::StreamExt;
use serde_json::json;

const SHORT: Duration = Duration::from_millis(300);

/// Settings for `server` with short time-outs and back-offs.
fn settings(server: &FakeOpenAi) -> OpenAiSettings {
    OpenAiSettings {
        base_url: Some(server.base_url()),
        model: "fake-model".into(),
        connect_timeout: SHORT,
        first_token_timeout: SHORT,
        idle_timeout: SHORT,
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..OpenAiSettings::default()
    }
}

fn llm(settings: OpenAiSettings) -> OpenAiLlm {
    OpenAiLlm::new(settings).expect("valid settings")
}

fn hello() -> ChatRequest {
    ChatRequest {
        instructions: "You answer calls for a restaurant.".into(),
        items: vec![ChatItem::message(ChatRole::User, "Hello?")],
        tools: vec![],
        purpose: RequestPurpose::Reply,
        fill: None,
    }
}

/// Every event of `stream`, and the error that ended it, if any.
async fn drain(mut stream: LlmStream) -> (Vec<LlmEvent>, Option<LlmError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "an error ends the stream");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}

fn texts(pieces: &[&str]) -> Vec<LlmEvent> {
    pieces
        .iter()
        .map(|piece| LlmEvent::TextDelta((*piece).to_owned()))
        .collect()
}

#[tokio::test]
async fn text_arrives_piece_by_piece_in_order() {
    let server = FakeOpenAi::start().await;
    let pieces = ["Good ", "evening, ", "Bella ", "Vista!"];
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&pieces)),
    );

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert_eq!(error, None);
    assert_eq!(events, texts(&pieces));
}

#[tokio::test]
async fn two_tool_calls_split_into_fragments_are_assembled() {
    let server = FakeOpenAi::start().await;
    let add = r#"{"item":"bruschetta","quantity":2,"notes":"no garlic"}"#;
    let tip = r#"{"percent":18}"#;
    let chunks = tool_call_chunks(
        &[("call_1", "add_item", add), ("call_2", "set_tip", tip)],
        4,
    );
    server.push(Endpoint::ChatCompletions, Response::Stream(chunks));

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert_eq!(error, None);
    let call = |id: &str, name: &str, arguments: &str| {
        LlmEvent::ToolCall(ToolCall {
            call_id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    };
    assert_eq!(
        events,
        [
            call("call_1", "add_item", add),
            call("call_2", "set_tip", tip)
        ]
    );
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_retry_succeeds() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::ChatCompletions,
        Response::Status(500, error_body("overloaded")),
    );
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["Hi!"])),
    );

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert_eq!((events, error), (texts(&["Hi!"]), None));
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_is_retried() {
    let server = FakeOpenAi::start().await;
    let body = error_body("Rate limit reached for requests");
    server.push(Endpoint::ChatCompletions, Response::Status(429, body));
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["Hi!"])),
    );

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert_eq!((events, error), (texts(&["Hi!"]), None));
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = FakeOpenAi::start().await;
    server.push(Endpoint::ChatCompletions, Response::Hang);
    let llm = llm(OpenAiSettings {
        max_retries: 0,
        ..settings(&server)
    });

    let started = Instant::now();
    let (events, error) = drain(llm.chat(hello())).await;

    assert_eq!((events, error), (vec![], Some(LlmError::Timeout(SHORT))));
    let elapsed = started.elapsed();
    assert!(elapsed >= SHORT, "gave up early, after {elapsed:?}");
    assert!(elapsed < SHORT * 3, "took {elapsed:?}");
}

#[tokio::test]
async fn a_permanent_server_error_is_reported_after_all_retries() {
    let server = FakeOpenAi::start().await;
    for _ in 0..3 {
        server.push(
            Endpoint::ChatCompletions,
            Response::Status(500, error_body("boom")),
        );
    }

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert!(events.is_empty());
    let expected = LlmError::Http {
        status: 500,
        message: "boom".into(),
    };
    assert_eq!(error, Some(expected));
    assert_eq!(server.chat_requests().len(), 1 + 2);
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let server = FakeOpenAi::start().await;
    let body = error_body("Unknown model 'fake-model'");
    server.push(Endpoint::ChatCompletions, Response::Status(400, body));

    let (_, error) = drain(llm(settings(&server)).chat(hello())).await;

    let expected = LlmError::Http {
        status: 400,
        message: "Unknown model 'fake-model'".into(),
    };
    assert_eq!(error, Some(expected));
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn an_error_body_that_is_not_openai_json_keeps_its_status() {
    let server = FakeOpenAi::start().await;
    let body = "upstream unavailable".to_owned();
    server.push(
        Endpoint::ChatCompletions,
        Response::Status(503, body.clone()),
    );
    server.push(Endpoint::ChatCompletions, Response::Status(422, body));

    let (_, error) = drain(llm(settings(&server)).chat(hello())).await;

    let expected = LlmError::Http {
        status: 422,
        message: "upstream unavailable".into(),
    };
    assert_eq!(error, Some(expected));
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test]
async fn a_failure_after_text_went_out_ends_the_stream_without_a_retry() {
    let server = FakeOpenAi::start().await;
    let mut chunks = text_chunks(&["Your total ", "is"]);
    chunks.pop(); // no finish reason: the server stalls mid-reply
    server.push(Endpoint::ChatCompletions, Response::StreamThenHang(chunks));
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["again"])),
    );

    let (events, error) = drain(llm(settings(&server)).chat(hello())).await;

    assert_eq!(events, texts(&["Your total ", "is"]));
    assert_eq!(error, Some(LlmError::Timeout(SHORT)));
    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_stream_stops_the_request_and_its_retries() {
    let server = FakeOpenAi::start().await;
    for _ in 0..3 {
        server.push(Endpoint::ChatCompletions, Response::Hang);
    }
    let llm = llm(OpenAiSettings {
        first_token_timeout: Duration::from_millis(100),
        ..settings(&server)
    });

    let mut stream = llm.chat(hello());
    let polled = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
    assert!(polled.is_err(), "nothing should have arrived yet");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(server.chat_requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let llm = llm(OpenAiSettings {
        base_url: Some(format!("http://127.0.0.1:{closed_port}/v1")),
        max_retries: 1,
        initial_backoff: Duration::from_millis(10),
        ..OpenAiSettings::default()
    });

    let (_, error) = drain(llm.chat(hello())).await;

    assert!(matches!(error, Some(LlmError::Connection(_))), "{error:?}");
}

#[tokio::test]
async fn the_request_carries_instructions_tools_and_paired_tool_outputs() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&["Done."])),
    );
    let parameters = json!({
        "type": "object",
        "properties": {"percent": {"type": "integer", "minimum": 0}},
        "required": ["percent"],
    });
    let request = ChatRequest {
        instructions: "You take payments.".into(),
        items: vec![
            ChatItem::message(ChatRole::User, "18 percent tip please"),
            ChatItem::message(ChatRole::Assistant, "Setting the tip."),
            ChatItem::FunctionCall {
                call_id: "call_tip".into(),
                name: "set_tip".into(),
                arguments: r#"{"percent":18}"#.into(),
            },
            ChatItem::FunctionOutput {
                call_id: "call_tip".into(),
                name: "set_tip".into(),
                output: "tip set to 18%".into(),
                is_error: false,
            },
        ],
        tools: vec![std::sync::Arc::new(ToolSpec {
            name: "set_tip".into(),
            description: "Sets the tip percentage.".into(),
            parameters: parameters.clone(),
        })],
        purpose: RequestPurpose::Reply,
        fill: None,
    };

    let (_, error) = drain(llm(settings(&server)).chat(request)).await;
    assert_eq!(error, None);

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].header("authorization"), Some("Bearer no-key"));
    let body = received[0].json();
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["parallel_tool_calls"], false);
    let messages = body["messages"].as_array().expect("messages");
    let roles: Vec<_> = messages.iter().map(|m| m["role"].as_str()).collect();
    let expected_roles = ["system", "user", "assistant", "tool"].map(Some);
    assert_eq!(roles, expected_roles);
    assert_eq!(messages[0]["content"], "You take payments.");
    assert_eq!(messages[2]["content"], "Setting the tip.");
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_tip");
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"percent":18}"#
    );
    assert_eq!(messages[3]["tool_call_id"], "call_tip");
    assert_eq!(messages[3]["content"], "tip set to 18%");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "set_tip");
    assert_eq!(body["tools"][0]["function"]["parameters"], parameters);
}
