//! The HTTP pieces every adapter for an OpenAI-compatible server shares (the model in
//! `llm::openai`, speech to text and text to speech in `voice`): the checked endpoint and
//! key, the error text in an error body, how a failed exchange is classified, and
//! [`retry`]: bounded retries with back-off.
//!
//! Each adapter keeps its own error enum and maps an [`EndpointError`] or an
//! [`HttpFailure`] into it; nothing here knows about chat, speech or transcription.
//!
//! ```
//! use bella_vista::openai_http::{Endpoint, EndpointError};
//!
//! let local = Endpoint::new(Some(" http://127.0.0.1:8000/v1/ "), None)?;
//! assert_eq!(local.base_url(), "http://127.0.0.1:8000/v1");
//! assert_eq!(Endpoint::new(None, None), Err(EndpointError::MissingApiKey));
//! # Ok::<(), EndpointError>(())
//! ```

pub mod retry;

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// OpenAI's API base URL, used when no base URL is set.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// Sent as the API key to servers that need none (local servers behind a base URL).
pub const PLACEHOLDER_API_KEY: &str = "no-key";

/// Longest server error text kept in an error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 600;

/// Why settings name no usable server and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The key cannot be sent in a header.
    #[error("the API key contains control characters")]
    ApiKeyWithControlCharacters,
    /// OpenAI's own server needs a key, and none was given.
    #[error("an API key is required for OpenAI's server (or set a base URL)")]
    MissingApiKey,
}

/// A server to send requests to: its base URL and the bearer token for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    base_url: String,
    api_key: String,
}

impl Endpoint {
    /// The endpoint for settings' `base_url` and `api_key`.
    ///
    /// Both are trimmed and count as absent when empty; the base URL loses trailing
    /// slashes and defaults to [`OPENAI_API_BASE`]. A key may be absent only with a base
    /// URL (local servers that check none get [`PLACEHOLDER_API_KEY`]).
    pub fn new(base_url: Option<&str>, api_key: Option<&str>) -> Result<Self, EndpointError> {
        let base_url = base_url
            .map(|url| url.trim().trim_end_matches('/'))
            .filter(|url| !url.is_empty());
        let api_key = api_key.map(str::trim).filter(|key| !key.is_empty());
        let api_key = match (api_key, base_url) {
            (Some(key), _) if key.chars().any(char::is_control) => {
                return Err(EndpointError::ApiKeyWithControlCharacters);
            }
            (Some(key), _) => key,
            (None, Some(_)) => PLACEHOLDER_API_KEY,
            (None, None) => return Err(EndpointError::MissingApiKey),
        };
        Ok(Self {
            base_url: base_url.unwrap_or(OPENAI_API_BASE).to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    /// The base URL including the version path, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The key to send as a bearer token.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The URL of `path` (such as `audio/speech`) below the base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }
}

impl fmt::Debug for Endpoint {
    /// Like a derived `Debug`, with the API key left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// An HTTP client whose connections must be established within `connect_timeout`;
/// the error is [`describe`]d.
pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|error| describe(&error))
}

/// A failed HTTP exchange, before an adapter names it in its own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// No answer within this limit.
    Timeout(Duration),
    /// The server could not be reached or the connection broke; the chain of causes.
    Connection(String),
    /// The server answered with an error status.
    Status {
        /// HTTP status code.
        status: u16,
        /// The server's error text (see [`status_message`]).
        message: String,
    },
}

impl HttpFailure {
    /// The failure of a send or body read that failed with `error`; a time-out is
    /// reported with `limit`, the limit that ran out.
    pub fn from_reqwest(error: &reqwest::Error, limit: Duration) -> Self {
        if error.is_timeout() {
            Self::Timeout(limit)
        } else {
            Self::Connection(describe(error))
        }
    }

    /// The failure of a response with the error `status` and this `body`.
    pub fn from_status(status: StatusCode, body: &[u8]) -> Self {
        Self::Status {
            status: status.as_u16(),
            message: status_message(status, body),
        }
    }
}

/// Whether a request that got `status` may succeed when tried again (429 and 5xx).
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The text for an error response: the message in `body` (see [`error_message`]), else
/// the status's reason phrase, else `"no error message"`.
pub fn status_message(status: StatusCode, body: &[u8]) -> String {
    error_message(body)
        .or_else(|| status.canonical_reason().map(str::to_owned))
        .unwrap_or_else(|| "no error message".to_owned())
}

/// The error text in a server's error body.
///
/// Understands OpenAI's `{"error": {"message": ..}}` and the shapes other compatible
/// servers use (`{"error": ".."}`, `{"message": ..}`, `{"detail": ..}`); falls back to the
/// body as text. Cut to [`MAX_MESSAGE_CHARS`]; `None` for an empty body.
pub fn error_message(body: &[u8]) -> Option<String> {
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

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters, with `...` when something was cut.
pub fn truncated(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An error with its chain of causes: reqwest's own text rarely says what went wrong.
pub fn describe(error: &dyn std::error::Error) -> String {
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
    fn openai_itself_needs_a_key_but_a_local_server_does_not() {
        assert_eq!(Endpoint::new(None, None), Err(EndpointError::MissingApiKey));
        assert_eq!(
            Endpoint::new(Some(" "), Some(" ")),
            Err(EndpointError::MissingApiKey)
        );
        let local = Endpoint::new(Some("http://127.0.0.1:9/v1//"), None).expect("local");
        assert_eq!(
            local.url("audio/speech"),
            "http://127.0.0.1:9/v1/audio/speech"
        );
        assert_eq!(local.api_key(), PLACEHOLDER_API_KEY);
        let openai = Endpoint::new(None, Some(" sk-ab\n")).expect("openai");
        assert_eq!(
            (openai.base_url(), openai.api_key()),
            (OPENAI_API_BASE, "sk-ab")
        );
    }

    #[test]
    fn a_key_with_a_control_character_inside_is_refused_and_hidden_otherwise() {
        assert_eq!(
            Endpoint::new(None, Some("sk-a\nb")),
            Err(EndpointError::ApiKeyWithControlCharacters)
        );
        let endpoint = Endpoint::new(None, Some("sk-secret")).expect("endpoint");
        assert!(!format!("{endpoint:?}").contains("sk-secret"));
    }

    #[test]
    fn error_messages_are_found_in_the_usual_shapes() {
        let cases: [(&str, Option<&str>); 7] = [
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
            (r#"{"detail":"Not Found"}"#, Some("Not Found")),
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
    fn an_empty_error_body_gives_the_reason_phrase() {
        assert_eq!(
            HttpFailure::from_status(StatusCode::SERVICE_UNAVAILABLE, b""),
            HttpFailure::Status {
                status: 503,
                message: "Service Unavailable".into()
            }
        );
        let unknown = StatusCode::from_u16(599).expect("a status");
        assert_eq!(status_message(unknown, b" "), "no error message");
    }

    #[test]
    fn rate_limits_and_server_errors_are_retryable() {
        let retryable: Vec<_> = [400, 404, 429, 500, 503]
            .into_iter()
            .filter(|&status| is_retryable_status(status))
            .collect();
        assert_eq!(retryable, [429, 500, 503]);
    }
}
