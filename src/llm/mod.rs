//! The language-model layer: the chat context, what a tool looks like on the wire, the
//! [`Llm`] seam, the OpenAI-compatible adapter and a scripted model for tests.
//!
//! Nothing here knows about agents or tasks: the `agent` layer builds [`ChatRequest`]s and
//! consumes [`LlmEvent`]s.

mod chat_context;
pub mod local;
pub mod openai;
mod provider;
pub mod scripted;
mod tool_spec;

pub use chat_context::{ChatContext, ChatItem, ChatRole};
pub use provider::{ChatRequest, Llm, LlmError, LlmEvent, LlmStream, RequestPurpose, collect_text};
pub use tool_spec::{ToolCall, ToolSpec};
