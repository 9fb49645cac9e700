//! The seam between the conversation engine and a language model.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use super::{ChatItem, ToolCall, ToolSpec};

/// Why a request is made; lets scripted models and logs tell replies from summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPurpose {
    /// The agent answers the caller (or greets, on entering a task).
    Reply,
    /// A task group compresses its conversation into one message.
    Summary,
}

/// One request to a model: instructions, the conversation, and the tools it may call.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// System instructions for this request.
    pub instructions: String,
    /// The conversation, oldest first.
    pub items: Vec<ChatItem>,
    /// Tools the model may call; empty means plain text only. Shared: a task's specs are
    /// made once and offered in every request without copying their schemas.
    pub tools: Vec<Arc<ToolSpec>>,
    /// Why the request is made.
    pub purpose: RequestPurpose,
    /// The tool this step exists to call (a task's completion tool), when it is offered.
    /// A model that cannot be trusted to call tools on its own (a small local one) is asked
    /// instead to write down what the caller said for each of its arguments, and the call
    /// is made once they are all known; other models ignore this.
    pub fill: Option<String>,
}

impl ChatRequest {
    /// Whether a tool with this name is offered.
    pub fn offers_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|tool| tool.name == name)
    }

    /// The text of the last caller message, if any.
    pub fn last_user_text(&self) -> Option<&str> {
        self.items.iter().rev().find_map(|item| match item {
            ChatItem::Message {
                role: super::ChatRole::User,
                text,
            } => Some(text.as_str()),
            _ => None,
        })
    }
}

/// What a model streams back.
///
/// Interruption: a reply being generated is cancelled by dropping its stream; text already
/// received stays with the caller of the stream, nothing else is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// The next piece of reply text.
    TextDelta(String),
    /// A tool call, complete (arguments assembled from all their fragments).
    ToolCall(ToolCall),
}

/// A streamed model response. Ends after the last event; an `Err` item ends it early.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send>>;

/// Why a model request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// No answer (or no next chunk) within the allowed time.
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an HTTP error status.
    #[error("the model server answered {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's error text.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("could not reach the model server: {0}")]
    Connection(String),
    /// The response could not be understood.
    #[error("the model's response was malformed: {0}")]
    InvalidResponse(String),
    /// A scripted model was asked something its script did not expect.
    #[error("scripted model: {0}")]
    Script(String),
}

impl LlmError {
    /// Whether trying the same request again may succeed (rate limits, server errors,
    /// broken connections, time-outs).
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Timeout(_) | LlmError::Connection(_) => true,
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            LlmError::InvalidResponse(_) | LlmError::Script(_) => false,
        }
    }
}

/// A language model that streams chat completions with tool calls.
///
/// Implementations: [`crate::llm::openai::OpenAiLlm`] for any OpenAI-compatible server and
/// [`crate::llm::scripted::ScriptedLlm`] for tests. Retries and time-outs belong to the
/// implementation; the stream it returns has already survived them.
pub trait Llm: Send + Sync + 'static {
    /// Starts one completion.
    fn chat(&self, request: ChatRequest) -> LlmStream;
}

/// Drains a stream into its text, failing on the first error or on any tool call.
pub async fn collect_text(mut stream: LlmStream) -> Result<String, LlmError> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            LlmEvent::TextDelta(delta) => text.push_str(&delta),
            LlmEvent::ToolCall(call) => {
                return Err(LlmError::InvalidResponse(format!(
                    "expected text, got a call to {}",
                    call.name
                )));
            }
        }
    }
    Ok(text)
}
