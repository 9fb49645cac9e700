//! Checking what the model says before the caller hears it.
//!
//! A model, and a small one above all, may state things no tool produced: a price, a total,
//! an order number, "your order is confirmed". An application gives the session a
//! [`ReplyCheck`]; the session then holds each reply back sentence by sentence, asks the
//! check about each one against the [`Facts`] of the conversation (the active task's
//! instructions and every tool output so far), and says only what passes, or what the check
//! says instead. What was corrected is reported as
//! [`SessionEvent::ReplyCorrected`](super::SessionEvent::ReplyCorrected), and the
//! conversation keeps what was said, not what the model wrote.

use crate::llm::{ChatItem, ChatRequest};

/// What a [`ReplyCheck`] decides about one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Say it.
    Keep,
    /// Say this instead.
    Replace(String),
    /// Say nothing in its place.
    Drop,
}

/// A check of each sentence of a model's reply against what the conversation established.
pub trait ReplyCheck: Send + Sync + 'static {
    /// Whether `sentence` may be said, given `facts`.
    fn check(&self, sentence: &str, facts: &Facts<'_>) -> Verdict;

    /// What to say when a whole reply was withheld and the model did nothing else, so the
    /// caller is not left in silence. `None`: nothing.
    fn fallback(&self) -> Option<String> {
        None
    }
}

/// What the conversation has established when a reply is generated: the instructions of
/// the request and the tool outputs in its conversation.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    request: &'a ChatRequest,
}

impl<'a> Facts<'a> {
    /// The facts of `request`.
    pub fn of(request: &'a ChatRequest) -> Self {
        Facts { request }
    }

    /// The instructions the model was given.
    pub fn instructions(&self) -> &'a str {
        &self.request.instructions
    }

    /// Every tool output so far that is not an error: `(tool name, output)`.
    pub fn tool_outputs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.request.items.iter().filter_map(|item| match item {
            ChatItem::FunctionOutput {
                name,
                output,
                is_error: false,
                ..
            } => Some((name.as_str(), output.as_str())),
            _ => None,
        })
    }

    /// Whether `text` appears in the instructions or in a tool output (case-insensitive).
    pub fn mention(&self, text: &str) -> bool {
        let needle = text.to_lowercase();
        self.instructions().to_lowercase().contains(&needle)
            || self
                .tool_outputs()
                .any(|(_, output)| output.to_lowercase().contains(&needle))
    }

    /// Whether the tool `name` has returned successfully in this conversation.
    pub fn tool_succeeded(&self, name: &str) -> bool {
        self.tool_outputs().any(|(tool, _)| tool == name)
    }
}

/// Cuts streamed text into sentences, so each can be checked before it is said: a sentence
/// ends at `.`, `!` or `?` followed by white space (the end of the text ends the last one).
#[derive(Debug, Default)]
pub(crate) struct SentenceBuffer {
    pending: String,
}

impl SentenceBuffer {
    /// Adds streamed text; returns the sentences it completed, each with its trailing space.
    pub(crate) fn push(&mut self, delta: &str) -> Vec<String> {
        self.pending.push_str(delta);
        let mut sentences = Vec::new();
        while let Some(end) = sentence_end(&self.pending) {
            let rest = self.pending.split_off(end);
            sentences.push(std::mem::replace(&mut self.pending, rest));
        }
        sentences
    }

    /// The text after the last complete sentence, if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.trim().is_empty()).then_some(rest)
    }
}

/// The byte index just after the first sentence end (and the white space after it).
fn sentence_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?')
            && let Some(&(next, following)) = chars.peek()
            && following.is_whitespace()
        {
            return Some(next + following.len_utf8());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatRole, RequestPurpose};

    #[test]
    fn sentences_end_at_punctuation_followed_by_space() {
        let mut buffer = SentenceBuffer::default();
        assert!(buffer.push("It costs $12.").is_empty(), "no space yet");
        assert_eq!(
            buffer.push("50 each. Anything"),
            vec!["It costs $12.50 each. "]
        );
        assert_eq!(buffer.push(" else? Ok"), vec!["Anything else? "]);
        assert_eq!(buffer.finish().as_deref(), Some("Ok"));
        assert_eq!(buffer.finish(), None);
    }

    #[test]
    fn facts_are_the_instructions_and_successful_tool_outputs() {
        let request = ChatRequest {
            instructions: "Subtotal: $20.00.".into(),
            items: vec![
                ChatItem::Message {
                    role: ChatRole::User,
                    text: "how much is it with $99 off".into(),
                },
                ChatItem::FunctionOutput {
                    call_id: "1".into(),
                    name: "confirm_order".into(),
                    output: "Order number 7 is confirmed.".into(),
                    is_error: false,
                },
                ChatItem::FunctionOutput {
                    call_id: "2".into(),
                    name: "check_menu".into(),
                    output: "Tiramisu $10.00".into(),
                    is_error: true,
                },
            ],
            tools: Vec::new(),
            purpose: RequestPurpose::Reply,
            fill: None,
        };
        let facts = Facts::of(&request);
        assert!(facts.mention("$20.00"));
        assert!(facts.mention("ORDER NUMBER 7"));
        assert!(!facts.mention("$99"), "the caller's words are not facts");
        assert!(!facts.mention("$10.00"), "an error output is not a fact");
        assert!(facts.tool_succeeded("confirm_order"));
        assert!(!facts.tool_succeeded("check_menu"));
    }
}
