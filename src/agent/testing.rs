//! The testing API for agents built on this framework: run a turn against a scripted
//! model, then assert on what happened.
//!
//! ```
//! use bella_vista::agent::testing::TestSession;
//! use bella_vista::agent::{Agent, OnEnter, tool_fn, NoArgs};
//! use bella_vista::llm::scripted::{ScriptedLlm, Step};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let llm = ScriptedLlm::new([
//!     Step::reply().text("Hi! What can I do for you?"),
//!     Step::reply().expect_tool("hours").call("hours", json!({})),
//!     Step::reply().text("We are open from noon to ten."),
//! ]);
//! let agent = Agent::new("Host", "Answer questions.")
//!     .on_enter(OnEnter::Reply("Greet the caller.".into()))
//!     .with_tool(tool_fn("hours", "Opening hours.", |_ctx, _: NoArgs| Ok("12-22".into())));
//! let (mut session, greeting) = TestSession::start(agent, llm.clone()).await;
//! assert_eq!(greeting.messages(), vec!["Hi! What can I do for you?"]);
//! let result = session.run("When are you open?").await;
//! let mut expect = result.expect();
//! expect.next_function_call("hours");
//! expect.next_function_output("hours");
//! assert!(expect.next_message().contains("noon"));
//! expect.no_more();
//! llm.verify().unwrap();
//! # });
//! ```

use serde_json::Value;

use super::events::{SessionEvent, TaskEnd};
use super::session::{AgentSession, SessionHandle, SessionInput, SessionOptions};
use super::task::Agent;
use crate::llm::Llm;

/// A session driven turn by turn from a test.
pub struct TestSession {
    handle: SessionHandle,
}

impl TestSession {
    /// Starts `agent` on `llm` and returns what it did before it first listened.
    pub async fn start(agent: Agent, llm: impl Llm) -> (Self, RunResult) {
        Self::start_with(agent, llm, SessionOptions::default()).await
    }

    /// Like [`TestSession::start`], with engine options.
    pub async fn start_with(
        agent: Agent,
        llm: impl Llm,
        options: SessionOptions,
    ) -> (Self, RunResult) {
        let mut handle = AgentSession::new(llm).options(options).start(agent);
        let events = handle.until_listening().await;
        (TestSession { handle }, RunResult { events })
    }

    /// Sends one caller turn and returns everything that happened until the agent
    /// listened again.
    pub async fn run(&mut self, text: &str) -> RunResult {
        RunResult {
            events: self.handle.send(text).await,
        }
    }

    /// Presses a key on the caller's phone keypad and returns everything that happened
    /// until the agent listened again.
    pub async fn press(&mut self, key: char) -> RunResult {
        RunResult {
            events: self.handle.press_key(key).await,
        }
    }

    /// Reports the caller silent (as the voice pipeline does after a quiet spell) and
    /// returns everything that happened until the agent listened again or the session
    /// ended.
    pub async fn silence(&mut self) -> RunResult {
        let _ = self.handle.send_input(SessionInput::CallerSilent).await;
        RunResult {
            events: self.handle.until_listening().await,
        }
    }

    /// The underlying handle, to send other inputs (such as an interruption) and read
    /// events one by one.
    pub fn handle(&mut self) -> &mut SessionHandle {
        &mut self.handle
    }

    /// Waits, without sending anything, until the agent listens again (after something
    /// other than the caller woke it, such as a `regress()` from code).
    pub async fn wait(&mut self) -> RunResult {
        RunResult {
            events: self.handle.until_listening().await,
        }
    }

    /// Ends the session as a caller hanging up would, returning the final events.
    pub async fn hang_up(self) -> RunResult {
        RunResult {
            events: self.handle.close().await,
        }
    }
}

/// The events of one turn.
#[derive(Debug, Clone)]
pub struct RunResult {
    events: Vec<SessionEvent>,
}

impl RunResult {
    /// Every event, including streaming deltas and state changes.
    pub fn events(&self) -> &[SessionEvent] {
        &self.events
    }

    /// A cursor over the significant events (messages, calls, outputs, tasks,
    /// regressions, failures), for assertions in order.
    pub fn expect(&self) -> EventCursor<'_> {
        EventCursor {
            events: self.events.iter().filter(|e| is_significant(e)).collect(),
            position: 0,
        }
    }

    /// The agent's complete messages, in order.
    pub fn messages(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|event| match event {
                SessionEvent::AgentMessage { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Names of the tools called, in order.
    pub fn function_calls(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|event| match event {
                SessionEvent::FunctionCalled { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Outputs of the calls to `name` with whether each was an error, in order.
    pub fn function_outputs(&self, name: &str) -> Vec<(&str, bool)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                SessionEvent::FunctionReturned {
                    name: n,
                    output,
                    is_error,
                    ..
                } if n == name => Some((output.as_str(), *is_error)),
                _ => None,
            })
            .collect()
    }

    /// Whether `name` was called.
    pub fn contains_function_call(&self, name: &str) -> bool {
        self.function_calls().contains(&name)
    }

    /// Group ids of the tasks started, in order.
    pub fn tasks_started(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|event| match event {
                SessionEvent::TaskStarted { name, group_id } => {
                    Some(group_id.clone().unwrap_or_else(|| name.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

fn is_significant(event: &SessionEvent) -> bool {
    match event {
        SessionEvent::AgentMessage { .. }
        | SessionEvent::FunctionCalled { .. }
        | SessionEvent::FunctionReturned { .. }
        | SessionEvent::TaskStarted { .. }
        | SessionEvent::TaskCompleted { .. }
        | SessionEvent::Regressed { .. }
        | SessionEvent::DependentInvalidated { .. }
        | SessionEvent::ReplyInterrupted { .. }
        | SessionEvent::ReplyFailed { .. }
        | SessionEvent::HangUpRequested
        | SessionEvent::TransferRequested { .. }
        | SessionEvent::ReplyCorrected { .. } => true,
        SessionEvent::AgentStateChanged { .. }
        | SessionEvent::UserTurnReceived { .. }
        | SessionEvent::KeyPressReceived { .. }
        | SessionEvent::TextDelta { .. }
        | SessionEvent::SessionEnded => false,
    }
}

/// Walks the significant events of a turn in order; every method panics with the full
/// event list when the next event is not what the test expects.
pub struct EventCursor<'a> {
    events: Vec<&'a SessionEvent>,
    position: usize,
}

impl<'a> EventCursor<'a> {
    /// The next significant event.
    pub fn next_event(&mut self) -> &'a SessionEvent {
        let Some(event) = self.events.get(self.position) else {
            self.fail("another event");
        };
        self.position += 1;
        event
    }

    /// Expects an agent message; returns its text.
    pub fn next_message(&mut self) -> &'a str {
        match self.next_event() {
            SessionEvent::AgentMessage { text } => text,
            _ => self.fail_previous("an agent message"),
        }
    }

    /// Expects a call to `name`; returns its parsed arguments (`Value::Null` if malformed).
    pub fn next_function_call(&mut self, name: &str) -> Value {
        match self.next_event() {
            SessionEvent::FunctionCalled {
                name: called,
                arguments,
                ..
            } if called == name => serde_json::from_str(arguments).unwrap_or(Value::Null),
            _ => self.fail_previous(&format!("a call to {name}")),
        }
    }

    /// Expects the output of a call to `name`; returns the output text.
    pub fn next_function_output(&mut self, name: &str) -> &'a str {
        match self.next_event() {
            SessionEvent::FunctionReturned {
                name: called,
                output,
                is_error: false,
                ..
            } if called == name => output,
            _ => self.fail_previous(&format!("a successful output of {name}")),
        }
    }

    /// Expects an error output of a call to `name`; returns the error text.
    pub fn next_function_error(&mut self, name: &str) -> &'a str {
        match self.next_event() {
            SessionEvent::FunctionReturned {
                name: called,
                output,
                is_error: true,
                ..
            } if called == name => output,
            _ => self.fail_previous(&format!("an error output of {name}")),
        }
    }

    /// Expects a task (by group id, or by name outside groups) to start.
    pub fn next_task_started(&mut self, id: &str) {
        match self.next_event() {
            SessionEvent::TaskStarted { name, group_id }
                if group_id.as_deref().unwrap_or(name) == id => {}
            _ => self.fail_previous(&format!("task {id} starting")),
        }
    }

    /// Expects a task (by group id, or by name) to end; returns how it ended.
    pub fn next_task_completed(&mut self, id: &str) -> TaskEnd {
        match self.next_event() {
            SessionEvent::TaskCompleted {
                name,
                group_id,
                end,
            } if group_id.as_deref().unwrap_or(name) == id => end.clone(),
            _ => self.fail_previous(&format!("task {id} completing")),
        }
    }

    /// Expects a regression; returns its targets.
    pub fn next_regression(&mut self) -> Vec<String> {
        match self.next_event() {
            SessionEvent::Regressed { targets, .. } => targets.clone(),
            _ => self.fail_previous("a regression"),
        }
    }

    /// Expects the agent to hang up.
    pub fn next_hang_up(&mut self) {
        if !matches!(self.next_event(), SessionEvent::HangUpRequested) {
            self.fail_previous("the agent hanging up");
        }
    }

    /// Expects a transfer request; returns where to.
    pub fn next_transfer(&mut self) -> &'a str {
        match self.next_event() {
            SessionEvent::TransferRequested { to } => to,
            _ => self.fail_previous("a transfer request"),
        }
    }

    /// Skips events until a call to `name`; returns its parsed arguments.
    pub fn skip_to_function_call(&mut self, name: &str) -> Value {
        while let Some(event) = self.events.get(self.position) {
            if matches!(event, SessionEvent::FunctionCalled { name: n, .. } if n == name) {
                return self.next_function_call(name);
            }
            self.position += 1;
        }
        self.fail(&format!("a call to {name}"))
    }

    /// Skips events until task `id` starts.
    pub fn skip_to_task_started(&mut self, id: &str) {
        while let Some(event) = self.events.get(self.position) {
            if matches!(event, SessionEvent::TaskStarted { name, group_id }
                if group_id.as_deref().unwrap_or(name) == id)
            {
                self.position += 1;
                return;
            }
            self.position += 1;
        }
        self.fail(&format!("task {id} starting"))
    }

    /// Expects no further significant events.
    pub fn no_more(&mut self) {
        if self.position < self.events.len() {
            self.fail("no more events");
        }
    }

    fn fail_previous(&mut self, expected: &str) -> ! {
        self.position -= 1;
        self.fail(expected)
    }

    fn fail(&self, expected: &str) -> ! {
        let listing: Vec<String> = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let marker = if i == self.position { ">>" } else { "  " };
                format!("{marker} {i}: {e:?}")
            })
            .collect();
        panic!(
            "expected {expected} at event {}; events:\n{}",
            self.position,
            listing.join("\n")
        );
    }
}
