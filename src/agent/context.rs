//! [`ToolContext`]: what a tool body can do besides returning text: complete or fail its
//! task, and hand the conversation to a sub-task or a task group.

use super::activity::{self, Activity, Outcome};
use super::events::SessionEvent;
use super::session::{Inbox, SessionClosed, SessionCore};
use super::task::AgentTask;
use super::task_group::{self, TaskGroup, TaskGroupError, TaskResults};
use crate::llm::{ChatContext, ChatRole};

/// Why a sub-task did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The session ended while the task was running.
    #[error("the session ended before the task completed")]
    SessionClosed,
    /// A tool failed the task.
    #[error("the task failed: {0}")]
    Failed(String),
    /// The task was interrupted without a result (only possible inside a task group).
    #[error("the task was interrupted")]
    Interrupted,
}

impl From<SessionClosed> for TaskError {
    fn from(_: SessionClosed) -> Self {
        TaskError::SessionClosed
    }
}

/// Why the caller could not be handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The session ended while the transfer was under way.
    #[error("the session ended during the transfer")]
    SessionClosed,
    /// The transport could not transfer the caller (refused, unanswered, not a phone call).
    #[error("the transfer failed: {0}")]
    Failed(String),
}

impl From<SessionClosed> for TransferError {
    fn from(_: SessionClosed) -> Self {
        TransferError::SessionClosed
    }
}

/// Handed to every tool call. `T` is the result type of the task the tool belongs to.
pub struct ToolContext<'a, T> {
    core: &'a SessionCore,
    inbox: &'a mut Inbox,
    chat_ctx: &'a mut ChatContext,
    outcome: &'a mut Option<Outcome<T>>,
}

impl<'a, T: Send + 'static> ToolContext<'a, T> {
    pub(crate) fn new(
        core: &'a SessionCore,
        inbox: &'a mut Inbox,
        chat_ctx: &'a mut ChatContext,
        outcome: &'a mut Option<Outcome<T>>,
    ) -> Self {
        ToolContext {
            core,
            inbox,
            chat_ctx,
            outcome,
        }
    }

    /// Completes the task with `value` once the current reply's tool calls are done.
    /// Returns `false` (and changes nothing) if the task already has an outcome.
    pub fn complete(&mut self, value: T) -> bool {
        self.set_outcome(Outcome::Done(value))
    }

    /// Ends the task with a failure. Returns `false` if it already has an outcome.
    pub fn fail(&mut self, message: impl Into<String>) -> bool {
        self.set_outcome(Outcome::Failed(message.into()))
    }

    /// Whether a tool already completed, failed or interrupted the task.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The conversation of the task this tool belongs to.
    pub fn chat_context(&self) -> &ChatContext {
        self.chat_ctx
    }

    /// Ends the task without a result. Inside a task group, the group then runs what comes
    /// first (queued regressions, tasks just added before this one) and re-enters this task
    /// fresh later; outside a group, `run_task` returns [`TaskError::Interrupted`].
    /// Returns `false` if the task already has an outcome.
    pub fn interrupt(&mut self) -> bool {
        self.set_outcome(Outcome::Interrupted)
    }

    /// Says `text` to the caller now, word for word, not through the model: for sentences
    /// that must be exact (a goodbye, a notice before a transfer). It joins the
    /// conversation as the agent's words.
    pub fn say(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.core
            .emit(SessionEvent::AgentMessage { text: text.clone() });
        self.chat_ctx.add_message(ChatRole::Assistant, text);
    }

    /// Ends the call once this tool returns: a voice transport hangs up after everything
    /// said so far has played out; tasks still running end without a result (an order not
    /// yet stored stays unstored). Nothing the model would say afterwards is asked for.
    pub fn hang_up(&mut self) {
        self.core.emit(SessionEvent::HangUpRequested);
        self.inbox.close();
    }

    /// Hands the caller over to `to` (a phone number such as `tel:+15550199`, or a SIP
    /// address) once everything said so far has played, and waits for the transport. On
    /// success the agent's part of the call is over: the session ends when this tool
    /// returns. On failure the call goes on and the tool decides what the caller hears.
    pub async fn transfer(&mut self, to: &str) -> Result<(), TransferError> {
        self.core
            .emit(SessionEvent::TransferRequested { to: to.to_string() });
        let limit = self.core.options.transfer_timeout;
        match self.inbox.transfer_result(limit).await? {
            Ok(()) => {
                self.inbox.close();
                Ok(())
            }
            Err(reason) => Err(TransferError::Failed(reason)),
        }
    }

    fn set_outcome(&mut self, outcome: Outcome<T>) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        *self.outcome = Some(outcome);
        true
    }

    /// Hands the conversation to `task` until it completes, and returns its result.
    ///
    /// The task starts from a copy of this conversation; when it completes, what was said
    /// in it (not its tool calls) joins this conversation.
    pub async fn run_task<U: Send + 'static>(
        &mut self,
        task: AgentTask<U>,
    ) -> Result<U, TaskError> {
        let mut task_ctx = self.chat_ctx.clone();
        let start = task_ctx.len();
        let activity = Activity {
            core: self.core,
            inbox: &mut *self.inbox,
            chat_ctx: &mut task_ctx,
            interrupt: None,
            group_id: None,
        };
        let outcome = Box::pin(activity::run(activity, task, Vec::new())).await?;
        self.chat_ctx.merge(task_ctx.since(start), false);
        match outcome {
            Outcome::Done(value) => Ok(value),
            Outcome::Failed(message) => Err(TaskError::Failed(message)),
            Outcome::Interrupted => Err(TaskError::Interrupted),
        }
    }

    /// Runs a task group to its end and returns its results by task id.
    ///
    /// With summarization on (the default), this conversation gains one summary message
    /// for everything said in the group; otherwise the group's messages.
    pub async fn run_group(&mut self, group: TaskGroup) -> Result<TaskResults, TaskGroupError> {
        let activity = Activity {
            core: self.core,
            inbox: &mut *self.inbox,
            chat_ctx: &mut *self.chat_ctx,
            interrupt: None,
            group_id: None,
        };
        Box::pin(task_group::run(activity, group)).await
    }
}
