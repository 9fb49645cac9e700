//! A language model that follows a script: the testing double for everything above the
//! [`Llm`] seam.
//!
//! Each step optionally checks the request it receives (which tools are offered, what the
//! caller said, the purpose) and answers with text, tool calls, or an error. Mismatches
//! do not panic inside the session: they are answered with [`LlmError::Script`] and
//! recorded, and [`ScriptedLlm::verify`] reports them at the end of the test.
//!
//! ```
//! use bella_vista::llm::scripted::{ScriptedLlm, Step};
//! use serde_json::json;
//!
//! let llm = ScriptedLlm::new([
//!     Step::reply().text("Welcome to Bella Vista!"),
//!     Step::reply()
//!         .expect_user("I'd like to order")
//!         .expect_tool("take_order")
//!         .call("take_order", json!({})),
//! ]);
//! assert_eq!(llm.remaining(), 2);
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream;
use serde_json::Value;

use super::{ChatRequest, Llm, LlmError, LlmEvent, LlmStream, RequestPurpose, ToolCall};

type Check = Box<dyn Fn(&ChatRequest) -> Result<(), String> + Send + Sync>;

/// One expected request and the answer to it.
pub struct Step {
    checks: Vec<Check>,
    events: Vec<LlmEvent>,
    error: Option<LlmError>,
    chunk_delay: Option<Duration>,
}

impl Step {
    /// A step answering a reply request (checks that the request is a reply).
    pub fn reply() -> Self {
        Self::new().expect_purpose(RequestPurpose::Reply)
    }

    /// A step answering a summary request with `summary`.
    pub fn summary(summary: impl Into<String>) -> Self {
        Self::new()
            .expect_purpose(RequestPurpose::Summary)
            .text(summary)
    }

    /// A step with no checks and no answer yet.
    pub fn new() -> Self {
        Step {
            checks: Vec::new(),
            events: Vec::new(),
            error: None,
            chunk_delay: None,
        }
    }

    /// Answers with this text (streamed word by word).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut rest = text.as_str();
        while let Some(first) = rest.chars().next() {
            // Each piece is a word with the space before it: split before the next space
            // after the first character (which may take more than one byte).
            let skip = first.len_utf8();
            let end = rest[skip..].find(' ').map_or(rest.len(), |i| i + skip);
            self.events
                .push(LlmEvent::TextDelta(rest[..end].to_string()));
            rest = &rest[end..];
        }
        self
    }

    /// Answers with a call to `name` with these arguments.
    pub fn call(self, name: &str, arguments: Value) -> Self {
        self.call_raw(name, &arguments.to_string())
    }

    /// Answers with a call whose argument text is given verbatim (for malformed JSON).
    pub fn call_raw(mut self, name: &str, arguments: &str) -> Self {
        let call_id = format!("call_{}_{}", name, self.events.len());
        self.events.push(LlmEvent::ToolCall(ToolCall {
            call_id,
            name: name.to_string(),
            arguments: arguments.to_string(),
        }));
        self
    }

    /// Answers with an error instead of a response.
    pub fn fail(mut self, error: LlmError) -> Self {
        self.error = Some(error);
        self
    }

    /// Waits this long before each streamed event (a slow model).
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = Some(delay);
        self
    }

    /// Checks the request with a custom predicate.
    pub fn expect(
        mut self,
        check: impl Fn(&ChatRequest) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Box::new(check));
        self
    }

    /// Checks the request's purpose.
    pub fn expect_purpose(self, purpose: RequestPurpose) -> Self {
        self.expect(move |request| {
            if request.purpose == purpose {
                Ok(())
            } else {
                Err(format!(
                    "expected a {purpose:?} request, got {:?}",
                    request.purpose
                ))
            }
        })
    }

    /// Checks that the tool is offered.
    pub fn expect_tool(self, name: &'static str) -> Self {
        self.expect(move |request| {
            if request.offers_tool(name) {
                Ok(())
            } else {
                Err(format!(
                    "expected tool {name} to be offered; offered: {}",
                    names(request)
                ))
            }
        })
    }

    /// Checks that the tool is not offered.
    pub fn expect_no_tool(self, name: &'static str) -> Self {
        self.expect(move |request| {
            if request.offers_tool(name) {
                Err(format!(
                    "tool {name} must not be offered; offered: {}",
                    names(request)
                ))
            } else {
                Ok(())
            }
        })
    }

    /// Checks the last caller message.
    pub fn expect_user(self, text: &'static str) -> Self {
        self.expect(move |request| match request.last_user_text() {
            Some(last) if last == text => Ok(()),
            other => Err(format!("expected last user text {text:?}, got {other:?}")),
        })
    }

    /// Checks that the instructions contain `fragment`.
    pub fn expect_instructions(self, fragment: &'static str) -> Self {
        self.expect(move |request| {
            if request.instructions.contains(fragment) {
                Ok(())
            } else {
                Err(format!(
                    "instructions lack {fragment:?}: {:?}",
                    request.instructions
                ))
            }
        })
    }
}

impl Default for Step {
    fn default() -> Self {
        Self::new()
    }
}

fn names(request: &ChatRequest) -> String {
    let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    requests: Vec<ChatRequest>,
    failures: Vec<String>,
}

/// A model that answers from a script of [`Step`]s. Cheap to clone; clones share the script.
#[derive(Clone, Default)]
pub struct ScriptedLlm {
    script: Arc<Mutex<Script>>,
}

impl ScriptedLlm {
    /// A model that will answer these steps, in order.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let llm = Self::default();
        llm.push_steps(steps);
        llm
    }

    /// Appends more steps to the script.
    pub fn push_steps(&self, steps: impl IntoIterator<Item = Step>) {
        self.lock().steps.extend(steps);
    }

    /// Steps not yet consumed.
    pub fn remaining(&self) -> usize {
        self.lock().steps.len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// `Ok` when every step was consumed and every check passed; otherwise what went wrong.
    pub fn verify(&self) -> Result<(), String> {
        let script = self.lock();
        let mut problems = script.failures.clone();
        if !script.steps.is_empty() {
            problems.push(format!(
                "{} scripted step(s) never requested",
                script.steps.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Llm for ScriptedLlm {
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let mut script = self.lock();
        let index = script.requests.len();
        script.requests.push(request.clone());
        let Some(step) = script.steps.pop_front() else {
            let message = format!("request #{index} has no scripted step");
            script.failures.push(message.clone());
            return Box::pin(stream::iter([Err(LlmError::Script(message))]));
        };
        let problems: Vec<String> = step
            .checks
            .iter()
            .filter_map(|check| check(&request).err())
            .collect();
        if !problems.is_empty() {
            let message = format!("request #{index}: {}", problems.join("; "));
            script.failures.push(message.clone());
            return Box::pin(stream::iter([Err(LlmError::Script(message))]));
        }
        if let Some(error) = step.error {
            return Box::pin(stream::iter([Err(error)]));
        }
        let events = step.events.into_iter().map(Ok);
        match step.chunk_delay {
            None => Box::pin(stream::iter(events)),
            Some(delay) => Box::pin(stream::unfold(events, move |mut events| async move {
                tokio::time::sleep(delay).await;
                events.next().map(|event| (event, events))
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_starting_with_a_multibyte_character_streams_word_by_word() {
        let step = Step::reply().text("€5 für zwei Crêpes");
        let pieces: Vec<&str> = step
            .events
            .iter()
            .filter_map(|e| match e {
                LlmEvent::TextDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(pieces, ["€5", " für", " zwei", " Crêpes"]);
    }
    use crate::llm::collect_text;

    fn request(purpose: RequestPurpose) -> ChatRequest {
        ChatRequest {
            instructions: String::new(),
            items: Vec::new(),
            tools: Vec::new(),
            purpose,
            fill: None,
        }
    }

    #[tokio::test]
    async fn answers_in_order_and_records_requests() {
        let llm = ScriptedLlm::new([Step::reply().text("hello there"), Step::summary("sum")]);
        let first = collect_text(llm.chat(request(RequestPurpose::Reply))).await;
        assert_eq!(first, Ok("hello there".to_string()));
        let second = collect_text(llm.chat(request(RequestPurpose::Summary))).await;
        assert_eq!(second, Ok("sum".to_string()));
        assert_eq!(llm.requests().len(), 2);
        assert_eq!(llm.verify(), Ok(()));
    }

    #[tokio::test]
    async fn a_failed_check_is_an_error_and_is_reported() {
        let llm = ScriptedLlm::new([Step::reply().expect_tool("take_order").text("x")]);
        let answer = collect_text(llm.chat(request(RequestPurpose::Reply))).await;
        assert!(matches!(answer, Err(LlmError::Script(_))));
        assert!(llm.verify().is_err());
    }

    #[tokio::test]
    async fn an_exhausted_script_is_reported() {
        let llm = ScriptedLlm::new([]);
        let answer = collect_text(llm.chat(request(RequestPurpose::Reply))).await;
        assert!(answer.is_err());
        assert!(llm.verify().unwrap_err().contains("no scripted step"));
    }
}
