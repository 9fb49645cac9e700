//! The HTTP transport under the async-openai client, and how its failures become
//! [`LlmError`]s.
//!
//! async-openai's default transport retries 429, 5xx and connection failures by itself
//! (three times, with its own backoff) before the caller sees anything. The adapter retries
//! on its own terms, so it installs this transport instead: one HTTP attempt per request,
//! a connect time-out, and every non-success status turned into an error that keeps the
//! status and the server's message, whatever shape the error body has (async-openai alone
//! loses the status of a 4xx whose body is not OpenAI's `{"error": {...}}`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError, StreamError};
use async_openai::middleware::HttpRequestFactory;
use serde_json::Value;

use crate::llm::LlmError;

/// Longest server error text kept in an error.
const MAX_MESSAGE_CHARS: usize = 600;

/// One HTTP attempt per request, no retries.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
}

impl Transport {
    /// A transport whose connections must be established within `connect_timeout`.
    pub(super) fn new(connect_timeout: Duration) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|error| LlmError::Connection(describe(&error)))?;
        Ok(Self { http })
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = http.execute(request).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.bytes().await?;
            let message = error_message(&body)
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_else(|| "no error message".to_owned());
            Err(OpenAIError::ApiError(ApiErrorResponse {
                status_code: status,
                api_error: ApiError {
                    message,
                    ..ApiError::default()
                },
            }))
        })
    }
}

/// The adapter's error for an async-openai failure.
///
/// `connect_timeout` is the only time-out the transport itself enforces, so a timed-out
/// transport error is reported with it.
pub(super) fn llm_error(error: OpenAIError, connect_timeout: Duration) -> LlmError {
    match error {
        OpenAIError::ApiError(response) => LlmError::Http {
            status: response.status_code.as_u16(),
            message: response.api_error.message,
        },
        OpenAIError::Reqwest(error) if error.is_timeout() => LlmError::Timeout(connect_timeout),
        OpenAIError::Reqwest(error) => LlmError::Connection(describe(&error)),
        OpenAIError::StreamError(error) => match *error {
            StreamError::EventStream(message) => LlmError::Connection(message),
            unknown @ StreamError::UnknownEvent(_) => {
                LlmError::InvalidResponse(unknown.to_string())
            }
        },
        OpenAIError::JSONDeserialize(error, content) => match error_message(content.as_bytes()) {
            Some(message) => {
                LlmError::InvalidResponse(format!("the server reported an error: {message}"))
            }
            None => LlmError::InvalidResponse(format!("{error} in {}", truncated(&content))),
        },
        other => LlmError::InvalidResponse(other.to_string()),
    }
}

/// The error text in a server's error body.
///
/// Understands OpenAI's `{"error": {"message": ..}}` and the shapes other compatible
/// servers use (`{"error": ".."}`, `{"message": ..}`, `{"detail": ..}`); falls back to the
/// body as text. `None` for an empty body.
fn error_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|json| {
        [
            json.pointer("/error/message"),
            json.get("error"),
            json.get("message"),
            json.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|value| value.as_str().map(str::to_owned))
    });
    Some(truncated(from_json.as_deref().unwrap_or(text)))
}

fn truncated(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An error with its chain of causes: reqwest's own text rarely says what went wrong.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_found_in_the_usual_shapes() {
        let cases: [(&str, Option<&str>); 6] = [
            (
                r#"{"error":{"message":"Rate limit reached","type":"x"}}"#,
                Some("Rate limit reached"),
            ),
            (
                r#"{"error":{"code":400,"message":"too long"}}"#,
                Some("too long"),
            ),
            (r#"{"error":"model not found"}"#, Some("model not found")),
            (
                r#"{"object":"error","message":"bad","code":400}"#,
                Some("bad"),
            ),
            ("upstream exploded\n", Some("upstream exploded")),
            ("  ", None),
        ];
        for (body, expected) in cases {
            assert_eq!(
                error_message(body.as_bytes()).as_deref(),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let message = error_message("é".repeat(2000).as_bytes()).expect("message");
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn api_errors_keep_status_and_message() {
        let error = OpenAIError::ApiError(ApiErrorResponse {
            status_code: reqwest::StatusCode::TOO_MANY_REQUESTS,
            api_error: ApiError {
                message: "slow down".into(),
                ..ApiError::default()
            },
        });
        let error = llm_error(error, Duration::from_secs(1));
        assert_eq!(
            error,
            LlmError::Http {
                status: 429,
                message: "slow down".into()
            }
        );
        assert!(error.is_retryable());
    }
}
