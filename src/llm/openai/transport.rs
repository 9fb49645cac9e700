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

use crate::llm::LlmError;
use crate::openai_http::{self as http, HttpFailure, error_message, status_message, truncated};

/// One HTTP attempt per request, no retries.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
}

impl Transport {
    /// A transport whose connections must be established within `connect_timeout`.
    pub(super) fn new(connect_timeout: Duration) -> Result<Self, LlmError> {
        let http = http::client(connect_timeout).map_err(LlmError::Connection)?;
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
            Err(OpenAIError::ApiError(ApiErrorResponse {
                status_code: status,
                api_error: ApiError {
                    message: status_message(status, &body),
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
        OpenAIError::Reqwest(error) => HttpFailure::from_reqwest(&error, connect_timeout).into(),
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

impl From<HttpFailure> for LlmError {
    fn from(failure: HttpFailure) -> Self {
        match failure {
            HttpFailure::Timeout(limit) => LlmError::Timeout(limit),
            HttpFailure::Connection(cause) => LlmError::Connection(cause),
            HttpFailure::Status { status, message } => LlmError::Http { status, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
