//! The [`Llm`] for any OpenAI-compatible Chat Completions server: OpenAI, Groq, vLLM,
//! the llama.cpp server, Ollama.
//!
//! Replies are streamed: text arrives as [`LlmEvent::TextDelta`](super::LlmEvent::TextDelta)s while the model writes,
//! tool calls as complete [`LlmEvent::ToolCall`](super::LlmEvent::ToolCall)s once the response is finished. A request
//! that fails with a retryable error (time-out, broken connection, 429, 5xx) is retried with
//! exponential back-off, but only while nothing has reached the consumer: once text went
//! out, a failure ends the stream with the error, so text is never repeated.
//!
//! ```no_run
//! use bella_vista::llm::openai::{OpenAiLlm, OpenAiSettings};
//! use bella_vista::llm::{ChatItem, ChatRequest, ChatRole, Llm, RequestPurpose, collect_text};
//!
//! # async fn run() -> Result<(), bella_vista::llm::LlmError> {
//! let llm = OpenAiLlm::new(OpenAiSettings {
//!     base_url: Some("http://127.0.0.1:11434/v1".into()),
//!     model: "llama3.2".into(),
//!     ..OpenAiSettings::default()
//! })?;
//! let reply: String = collect_text(llm.chat(ChatRequest {
//!     instructions: "You greet callers of a restaurant.".into(),
//!     items: vec![ChatItem::message(ChatRole::User, "Hello?")],
//!     tools: vec![],
//!     purpose: RequestPurpose::Reply,
//!     fill: None,
//! }))
//! .await?;
//! # let _ = reply;
//! # Ok(())
//! # }
//! ```

mod response_stream;
mod tool_call_assembler;
mod transport;
mod wire_request;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;

use self::response_stream::{Limits, response_stream};
use self::transport::Transport;
use self::wire_request::wire_request;
use super::{ChatRequest, Llm, LlmError, LlmStream};
use crate::openai_http::Endpoint;

/// Where and how to reach an OpenAI-compatible server.
///
/// Nothing here is read from the environment: the configuration layer resolves
/// `OPENAI_API_KEY` and `OPENAI_BASE_URL` before building these settings.
#[derive(Clone, PartialEq)]
pub struct OpenAiSettings {
    /// API base URL including the version path, such as `http://127.0.0.1:8000/v1`;
    /// `None` is OpenAI's own (`https://api.openai.com/v1`).
    pub base_url: Option<String>,
    /// API key sent as a bearer token. May be `None` only with a `base_url` (local servers
    /// that check no key get a placeholder).
    pub api_key: Option<String>,
    /// Model name, such as `gpt-4o-mini`.
    pub model: String,
    /// Sampling temperature; `None` leaves the server's default.
    pub temperature: Option<f32>,
    /// Longest wait for a TCP (and TLS) connection to the server.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to its first streamed chunk (connecting
    /// included).
    pub first_token_timeout: Duration,
    /// Longest gap between two streamed chunks.
    pub idle_timeout: Duration,
    /// Attempts after the first one, for retryable failures before anything was streamed.
    pub max_retries: u32,
    /// Pause before the first retry; it doubles for each further retry.
    pub initial_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
}

impl Default for OpenAiSettings {
    /// `gpt-4o-mini` on OpenAI; 10 s to connect, 20 s to the first token, 15 s between
    /// chunks; 2 retries after 250 ms, doubling, at most 4 s apart.
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            model: "gpt-4o-mini".to_owned(),
            temperature: None,
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl fmt::Debug for OpenAiSettings {
    /// Like a derived `Debug`, with the API key left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// A streaming chat model behind an OpenAI-compatible HTTP API.
///
/// Cheap to share: one instance serves any number of concurrent requests over a pool of
/// connections.
pub struct OpenAiLlm {
    client: Arc<Client<OpenAIConfig>>,
    model: String,
    temperature: Option<f32>,
    limits: Limits,
}

impl OpenAiLlm {
    /// A model client for `settings`.
    ///
    /// Fails with [`LlmError::Connection`] when no API key is given for OpenAI's own
    /// server, when the key cannot be sent in a header, or when the HTTP client cannot be
    /// built.
    pub fn new(settings: OpenAiSettings) -> Result<Self, LlmError> {
        let endpoint = Endpoint::new(settings.base_url.as_deref(), settings.api_key.as_deref())
            .map_err(|error| LlmError::Connection(error.to_string()))?;
        // Org and project are cleared: async-openai would read them from the environment.
        let config = OpenAIConfig::new()
            .with_api_base(endpoint.base_url())
            .with_api_key(endpoint.api_key())
            .with_org_id("")
            .with_project_id("");
        let transport = Transport::new(settings.connect_timeout)?;
        let client = Client::with_config(config).with_http_service(transport);
        Ok(Self {
            client: Arc::new(client),
            model: settings.model,
            temperature: settings.temperature,
            limits: Limits {
                connect_timeout: settings.connect_timeout,
                first_token_timeout: settings.first_token_timeout,
                idle_timeout: settings.idle_timeout,
                max_retries: settings.max_retries,
                initial_backoff: settings.initial_backoff,
                max_backoff: settings.max_backoff,
            },
        })
    }
}

impl fmt::Debug for OpenAiLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiLlm")
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Llm for OpenAiLlm {
    /// Streams the completion of `request`; see the [module docs](self) for retries.
    ///
    /// Dropping the stream cancels the request; nothing keeps running in the background.
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let wire = wire_request(&request, &self.model, self.temperature);
        response_stream(Arc::clone(&self.client), wire, self.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_itself_needs_a_key_but_a_local_server_does_not() {
        let missing = OpenAiLlm::new(OpenAiSettings::default());
        assert!(matches!(missing, Err(LlmError::Connection(_))));
        let local = OpenAiLlm::new(OpenAiSettings {
            base_url: Some("http://127.0.0.1:9/v1/".into()),
            ..OpenAiSettings::default()
        });
        assert!(local.is_ok());
    }

    #[test]
    fn a_key_with_a_newline_inside_is_refused_and_one_at_the_end_is_trimmed() {
        let settings = |key: &str| OpenAiSettings {
            api_key: Some(key.into()),
            ..OpenAiSettings::default()
        };
        assert!(OpenAiLlm::new(settings("sk-a\nb")).is_err());
        assert!(OpenAiLlm::new(settings("sk-ab\n")).is_ok());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let settings = OpenAiSettings {
            api_key: Some("sk-secret".into()),
            ..OpenAiSettings::default()
        };
        assert!(!format!("{settings:?}").contains("sk-secret"));
    }
}
