//! [`AgentSession`]: the conversation engine. One tokio task owns the session state; the
//! outside feeds it [`SessionInput`]s through a channel and reads [`SessionEvent`]s.
//!
//! The same engine serves the text console, voice and LiveKit: a caller turn is a typed
//! line or a final transcript, and a reply is streamed as [`SessionEvent::TextDelta`]s and
//! completed as [`SessionEvent::AgentMessage`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::activity::{self, Activity};
use super::events::{AgentState, SessionEvent};
use super::reply_check::ReplyCheck;
use super::summary::DEFAULT_SUMMARY_INSTRUCTIONS;
use super::task::Agent;
use crate::llm::{ChatContext, Llm};

/// What the outside tells a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInput {
    /// The caller finished a turn (typed text or a final transcript).
    UserTurn(String),
    /// The caller talked over the agent: its audio stopped, and of the reply being
    /// played only `heard` reached the caller. A reply still being generated is cancelled;
    /// the conversation keeps only what was heard.
    Interrupted {
        /// The part of the reply that was played.
        heard: String,
    },
    /// The caller pressed a key on their phone keypad (DTMF): `0`-`9`, `*`, `#`, `A`-`D`.
    /// The active task decides what it means (see [`AgentTask::on_key`]); by default the
    /// model is told, in words it cannot mistake for speech.
    ///
    /// [`AgentTask::on_key`]: super::AgentTask::on_key
    KeyPressed(char),
    /// The caller has said nothing for a while although the agent was listening. The
    /// first time they are asked whether they are still there; the second time the agent
    /// says goodbye and hangs up.
    CallerSilent,
    /// The transport's answer to [`SessionEvent::TransferRequested`]: the caller was handed
    /// over, or why not.
    ///
    /// [`SessionEvent::TransferRequested`]: super::SessionEvent::TransferRequested
    TransferFinished(Result<(), String>),
    /// End the session (the caller left); anything unfinished is abandoned, not stored.
    Close,
}

/// Settings of the conversation engine.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Most model round trips with tool calls in one reply; the last one is text only.
    pub max_tool_steps: usize,
    /// What the caller hears when the model cannot be reached.
    pub apology: String,
    /// Instructions for task-group summaries when the group has none of its own.
    pub summary_instructions: String,
    /// What the agent asks a caller who has gone quiet.
    pub still_there: String,
    /// What the agent says before it hangs up on a caller who stayed quiet.
    pub goodbye: String,
    /// How a key press is put to the model when the task gives it no meaning of its own;
    /// `{key}` is replaced by the key.
    pub key_press_note: String,
    /// Longest wait for the transport to carry out a transfer.
    pub transfer_timeout: Duration,
    /// Checks each sentence of the model's replies before the caller hears it; `None`:
    /// replies are said as the model streams them.
    pub reply_check: Option<Arc<dyn ReplyCheck>>,
}

impl std::fmt::Debug for dyn ReplyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyCheck")
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_tool_steps: 5,
            apology: "Sorry, I'm having trouble right now. Could you say that again?".into(),
            summary_instructions: DEFAULT_SUMMARY_INSTRUCTIONS.into(),
            still_there: "Are you still there?".into(),
            goodbye: "It seems we got disconnected. Goodbye!".into(),
            key_press_note: "[The caller pressed the key {key} on their phone keypad. This is \
                             a key press, not speech.]"
                .into(),
            transfer_timeout: Duration::from_secs(90),
            reply_check: None,
        }
    }
}

/// The session ended (the input closed) while something was waiting for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session ended")]
pub struct SessionClosed;

/// What every activity of one session shares: the model, the event sink, the options.
pub(crate) struct SessionCore {
    pub(crate) llm: Arc<dyn Llm>,
    pub(crate) options: SessionOptions,
    events: mpsc::UnboundedSender<SessionEvent>,
}

impl SessionCore {
    pub(crate) fn emit(&self, event: SessionEvent) {
        // A dropped receiver only means nobody watches; the session goes on.
        let _ = self.events.send(event);
    }
}

/// The caller's side of the channel, read only by the innermost running activity.
pub(crate) struct Inbox {
    input: mpsc::Receiver<SessionInput>,
    pending: VecDeque<SessionInput>,
    closed: bool,
    /// Silences in a row since the caller last said or pressed something.
    silences: u32,
}

/// What an activity waiting for the caller wakes up to.
pub(crate) enum Wakeup {
    /// The caller finished a turn.
    UserTurn(String),
    /// Code asked the running task to stop (a task group's `regress`).
    Interrupted,
    /// The caller talked over a reply that had finished generating.
    ReplyCut {
        /// What of it was heard.
        heard: String,
    },
    /// The caller pressed a key.
    KeyPressed(char),
    /// The caller has been quiet; `times` silences in a row.
    CallerSilent {
        /// 1 for the first silence, 2 for the second, ...
        times: u32,
    },
}

impl Inbox {
    /// Waits for the next caller turn, or for `interrupt` to be notified.
    pub(crate) async fn next(
        &mut self,
        interrupt: Option<&Notify>,
    ) -> Result<Wakeup, SessionClosed> {
        loop {
            if self.closed {
                return Err(SessionClosed);
            }
            let input = match self.pending.pop_front() {
                Some(input) => Some(input),
                None => match interrupt {
                    Some(interrupt) => tokio::select! {
                        biased;
                        () = interrupt.notified() => return Ok(Wakeup::Interrupted),
                        input = self.input.recv() => input,
                    },
                    None => self.input.recv().await,
                },
            };
            if let Some(wakeup) = self.wakeup(input)? {
                return Ok(wakeup);
            }
        }
    }

    /// What `input` wakes an activity up to; `None` for an input nobody waits for.
    fn wakeup(&mut self, input: Option<SessionInput>) -> Result<Option<Wakeup>, SessionClosed> {
        match input {
            Some(SessionInput::UserTurn(text)) => {
                self.silences = 0;
                Ok(Some(Wakeup::UserTurn(text)))
            }
            Some(SessionInput::KeyPressed(key)) => {
                self.silences = 0;
                Ok(Some(Wakeup::KeyPressed(key)))
            }
            Some(SessionInput::CallerSilent) => {
                self.silences += 1;
                Ok(Some(Wakeup::CallerSilent {
                    times: self.silences,
                }))
            }
            Some(SessionInput::Interrupted { heard }) => Ok(Some(Wakeup::ReplyCut { heard })),
            Some(SessionInput::TransferFinished(result)) => {
                tracing::debug!(?result, "a transfer result nobody waited for");
                Ok(None)
            }
            Some(SessionInput::Close) | None => {
                self.closed = true;
                Err(SessionClosed)
            }
        }
    }

    /// While a reply is generated: waits for an interruption (returning what was heard);
    /// caller turns that arrive meanwhile are kept for after the reply.
    pub(crate) async fn interruption(&mut self) -> Result<String, SessionClosed> {
        loop {
            if self.closed {
                return Err(SessionClosed);
            }
            match self.input.recv().await {
                Some(SessionInput::Interrupted { heard }) => return Ok(heard),
                Some(turn @ (SessionInput::UserTurn(_) | SessionInput::KeyPressed(_))) => {
                    self.pending.push_back(turn)
                }
                // Silence is only reported while the agent listens; a transfer result
                // nobody waits for has no one to tell.
                Some(SessionInput::CallerSilent | SessionInput::TransferFinished(_)) => {}
                Some(SessionInput::Close) | None => {
                    self.closed = true;
                    return Err(SessionClosed);
                }
            }
        }
    }

    /// Waits for the transport's answer to a transfer request, for at most `limit`.
    /// Caller turns and key presses that arrive meanwhile are kept for afterwards.
    pub(crate) async fn transfer_result(
        &mut self,
        limit: Duration,
    ) -> Result<Result<(), String>, SessionClosed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.closed {
                return Err(SessionClosed);
            }
            let input = match tokio::time::timeout_at(deadline, self.input.recv()).await {
                Ok(input) => input,
                Err(_) => return Ok(Err(format!("no answer within {} s", limit.as_secs()))),
            };
            match input {
                Some(SessionInput::TransferFinished(result)) => return Ok(result),
                Some(turn @ (SessionInput::UserTurn(_) | SessionInput::KeyPressed(_))) => {
                    self.pending.push_back(turn)
                }
                Some(SessionInput::Interrupted { .. } | SessionInput::CallerSilent) => {}
                Some(SessionInput::Close) | None => {
                    self.closed = true;
                    return Err(SessionClosed);
                }
            }
        }
    }

    /// Whether the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the session from inside (the agent hung up): every later read is
    /// [`SessionClosed`], so the running tasks unwind without storing anything unfinished.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }
}

/// Builds and starts sessions.
///
/// ```
/// use bella_vista::agent::{Agent, AgentSession, OnEnter};
/// use bella_vista::llm::scripted::{ScriptedLlm, Step};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let llm = ScriptedLlm::new([Step::reply().text("Hello!"), Step::reply().text("Bye!")]);
/// let agent = Agent::new("Greeter", "Greet the caller.").on_enter(OnEnter::Reply("Say hello.".into()));
/// let mut session = AgentSession::new(llm).start(agent);
/// let greeting = session.until_listening().await;
/// let reply = session.send("hi").await;
/// assert!(greeting.iter().chain(&reply).any(|e| matches!(e,
///     bella_vista::agent::SessionEvent::AgentMessage { text } if text == "Bye!")));
/// # });
/// ```
pub struct AgentSession {
    llm: Arc<dyn Llm>,
    options: SessionOptions,
}

impl AgentSession {
    /// A session that will talk through this model.
    pub fn new(llm: impl Llm) -> Self {
        Self::with_shared_llm(Arc::new(llm))
    }

    /// A session on a model shared with other sessions.
    pub fn with_shared_llm(llm: Arc<dyn Llm>) -> Self {
        AgentSession {
            llm,
            options: SessionOptions::default(),
        }
    }

    /// Replaces the engine settings.
    pub fn options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }

    /// Starts the session with `agent` active; must be called inside a tokio runtime.
    pub fn start(self, agent: Agent) -> SessionHandle {
        let (input_tx, input_rx) = mpsc::channel(32);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let core = SessionCore {
            llm: self.llm,
            options: self.options,
            events: event_tx,
        };
        let task = tokio::spawn(async move {
            let mut inbox = Inbox {
                input: input_rx,
                pending: VecDeque::new(),
                closed: false,
                silences: 0,
            };
            let mut chat_ctx = ChatContext::new();
            let root = Activity {
                core: &core,
                inbox: &mut inbox,
                chat_ctx: &mut chat_ctx,
                interrupt: None,
                group_id: None,
            };
            // The root agent never completes; it returns when the input closes.
            let _ = activity::run(root, agent, Vec::new()).await;
            core.emit(SessionEvent::SessionEnded);
        });
        SessionHandle {
            input: input_tx,
            events: event_rx,
            task: Some(task),
        }
    }
}

/// The outside's handle on a running session: send caller turns, read events.
pub struct SessionHandle {
    input: mpsc::Sender<SessionInput>,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    task: Option<JoinHandle<()>>,
}

/// A cloneable way to feed a session from another task (the voice pipeline sends turns
/// and interruptions while a separate task reads the events).
#[derive(Clone)]
pub struct SessionSender {
    input: mpsc::Sender<SessionInput>,
}

impl SessionSender {
    /// Sends an input to the session.
    pub async fn send(&self, input: SessionInput) -> Result<(), SessionClosed> {
        self.input.send(input).await.map_err(|_| SessionClosed)
    }
}

impl SessionHandle {
    /// A sender for inputs that can live in another task.
    pub fn sender(&self) -> SessionSender {
        SessionSender {
            input: self.input.clone(),
        }
    }

    /// Sends a caller turn without waiting for the reply.
    pub async fn send_input(&self, input: SessionInput) -> Result<(), SessionClosed> {
        self.input.send(input).await.map_err(|_| SessionClosed)
    }

    /// The next event, or `None` once the session has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Reads events until the agent listens for the caller again (or the session ends),
    /// returning them in order.
    pub async fn until_listening(&mut self) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            let done = matches!(
                event,
                SessionEvent::AgentStateChanged {
                    state: AgentState::Listening
                } | SessionEvent::SessionEnded
            );
            events.push(event);
            if done {
                break;
            }
        }
        events
    }

    /// Sends a caller turn and returns everything that happened until the agent listens
    /// again.
    pub async fn send(&mut self, text: &str) -> Vec<SessionEvent> {
        if self
            .send_input(SessionInput::UserTurn(text.to_string()))
            .await
            .is_err()
        {
            return Vec::new();
        }
        self.until_listening().await
    }

    /// Presses a key on the caller's phone keypad and returns everything that happened
    /// until the agent listens again.
    pub async fn press_key(&mut self, key: char) -> Vec<SessionEvent> {
        if self
            .send_input(SessionInput::KeyPressed(key))
            .await
            .is_err()
        {
            return Vec::new();
        }
        self.until_listening().await
    }

    /// Ends the session and waits for it to finish; returns the events it produced on the
    /// way out.
    pub async fn close(mut self) -> Vec<SessionEvent> {
        let _ = self.input.send(SessionInput::Close).await;
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            events.push(event);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        events
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
