//! What a session reports while it runs: the observable side of the conversation.

use serde::Serialize;

/// What the agent is doing, as a caller-facing status (LiveKit frontends show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Waiting for the caller.
    Listening,
    /// Working on a reply (model, tools).
    Thinking,
    /// Reply audio is playing (set by the voice layer).
    Speaking,
}

/// How a task ended, as reported in [`SessionEvent::TaskCompleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    /// The task completed with a result.
    Done,
    /// The task failed with this message.
    Failed(String),
    /// A regression (or `regress()` from code) ended it before it completed.
    Interrupted,
}

/// Something that happened in a session, in the order it happened.
///
/// Events are reports, not commands; dropping them changes nothing in the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    /// The agent's state changed.
    AgentStateChanged {
        /// The new state.
        state: AgentState,
    },
    /// A caller turn (typed text or a final transcript) reached the active agent.
    UserTurnReceived {
        /// What the caller said.
        text: String,
    },
    /// The caller pressed a key on their phone keypad and the active task got it.
    KeyPressReceived {
        /// The key: `0`-`9`, `*`, `#`, `A`-`D`.
        key: char,
    },
    /// A piece of reply text as the model streams it (for speech and live display).
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A complete agent message.
    AgentMessage {
        /// The full text.
        text: String,
    },
    /// The model called a tool.
    FunctionCalled {
        /// Pairs the call with its output.
        call_id: String,
        /// Tool name.
        name: String,
        /// Arguments as the model wrote them.
        arguments: String,
    },
    /// A tool finished; the model will read `output`.
    FunctionReturned {
        /// The call this answers.
        call_id: String,
        /// Tool name.
        name: String,
        /// What the model reads.
        output: String,
        /// Whether `output` is an error.
        is_error: bool,
    },
    /// A task took over the conversation.
    TaskStarted {
        /// The task's name (for example `CollectOrderItem`).
        name: String,
        /// Its id within a task group, if it runs in one.
        group_id: Option<String>,
    },
    /// A task gave the conversation back.
    TaskCompleted {
        /// The task's name.
        name: String,
        /// Its id within a task group, if it runs in one.
        group_id: Option<String>,
        /// How it ended.
        end: TaskEnd,
    },
    /// A task group went back to earlier tasks.
    Regressed {
        /// The group task that was interrupted.
        from: String,
        /// The tasks to run again, in order.
        targets: Vec<String>,
    },
    /// A completed task is run again because a task it depends on ran again.
    DependentInvalidated {
        /// The dependent task.
        task_id: String,
        /// The task that re-ran.
        because_of: String,
    },
    /// The caller talked over the agent; the conversation keeps only `heard` of the reply
    /// (cancelled while generating, or cut after it was generated).
    ReplyInterrupted {
        /// What the caller heard of it.
        heard: String,
    },
    /// The reply check kept a sentence of the model's reply from the caller (it stated
    /// something no tool produced); `replacement` was said instead, if anything.
    ReplyCorrected {
        /// What the model wrote.
        sentence: String,
        /// What was said in its place.
        replacement: Option<String>,
    },
    /// The model could not produce a reply; the caller got an apology instead.
    ReplyFailed {
        /// Why.
        error: String,
    },
    /// The agent ended the call. A voice transport hangs up once everything said before
    /// this event has played out to the caller; the session ends right after.
    HangUpRequested,
    /// The agent asked to hand the caller over to `to` (a phone number or SIP address),
    /// after what was said before this event has played. The transport carries it out
    /// and answers with [`SessionInput::TransferFinished`].
    ///
    /// [`SessionInput::TransferFinished`]: super::SessionInput::TransferFinished
    TransferRequested {
        /// Where to.
        to: String,
    },
    /// The session is over (the caller left, the input ended, or the agent hung up).
    SessionEnded,
}
