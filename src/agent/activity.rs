//! Running one agent or task: enter, then answer caller turns until a tool completes it.
//!
//! Tasks nest: a tool that runs a task awaits it, so the parent's reply is suspended in
//! that tool call while the task reads the caller's turns. The future stack mirrors the
//! agent stack, and only the innermost activity ever reads the inbox.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::context::ToolContext;
use super::events::{AgentState, SessionEvent, TaskEnd};
use super::reply_check::{Facts, ReplyCheck, SentenceBuffer, Verdict};
use super::session::{Inbox, SessionClosed, SessionCore, Wakeup};
use super::task::{AgentTask, KeyAction, OnEnter, StallAction};
use super::tool::DynTool;
use crate::llm::{
    ChatContext, ChatItem, ChatRequest, ChatRole, LlmError, RequestPurpose, ToolCall, ToolSpec,
};

/// How a task ended. Control flow by value: a regression is an outcome, not an error.
pub(crate) enum Outcome<T> {
    /// A tool completed the task with this result.
    Done(T),
    /// A tool failed the task.
    Failed(String),
    /// A regression or `regress()` ended it; the task group decides what runs next.
    Interrupted,
}

/// Where an activity runs: the session, the caller's input, and its own chat context.
pub(crate) struct Activity<'a> {
    pub(crate) core: &'a SessionCore,
    pub(crate) inbox: &'a mut Inbox,
    pub(crate) chat_ctx: &'a mut ChatContext,
    pub(crate) interrupt: Option<&'a Notify>,
    pub(crate) group_id: Option<String>,
}

/// Runs `task` until it completes (or the session closes). `extra_tools` are offered
/// beside the task's own (a task group adds its regression tool this way).
pub(crate) async fn run<T: Send + 'static>(
    mut activity: Activity<'_>,
    mut task: AgentTask<T>,
    extra_tools: Vec<Arc<dyn DynTool<T>>>,
) -> Result<Outcome<T>, SessionClosed> {
    for tool in extra_tools {
        task.push_tool(tool);
    }
    let core = activity.core;
    core.emit(SessionEvent::TaskStarted {
        name: task.name().to_string(),
        group_id: activity.group_id.clone(),
    });
    let mut outcome = None;
    match task.enter_action().clone() {
        OnEnter::Listen => {}
        OnEnter::Reply(instructions) => {
            reply(&mut activity, &task, &mut outcome, Some(&instructions)).await?;
        }
        OnEnter::Say(text) => {
            core.emit(SessionEvent::AgentMessage { text: text.clone() });
            activity.chat_ctx.add_message(ChatRole::Assistant, text);
        }
        OnEnter::CallTool(name) => {
            let called = call_from_code(&mut activity, &task, &mut outcome, &name).await?;
            if outcome.is_none() && !called.asked {
                reply(&mut activity, &task, &mut outcome, None).await?;
            }
        }
    }
    let mut stall = StallWatch::default();
    let outcome = loop {
        if let Some(outcome) = outcome.take() {
            break outcome;
        }
        core.emit(SessionEvent::AgentStateChanged {
            state: AgentState::Listening,
        });
        match activity.inbox.next(activity.interrupt).await? {
            Wakeup::Interrupted => break Outcome::Interrupted,
            Wakeup::ReplyCut { heard } => {
                cut_last_reply(activity.chat_ctx, &heard);
                core.emit(SessionEvent::ReplyInterrupted { heard });
            }
            Wakeup::UserTurn(text) => {
                core.emit(SessionEvent::UserTurnReceived { text: text.clone() });
                activity.chat_ctx.add_message(ChatRole::User, text);
                let answered = reply(&mut activity, &task, &mut outcome, None).await?;
                if let Some(on_stall) = task.stall_action()
                    && outcome.is_none()
                {
                    stall.retire_after(&answered.succeeded, &on_stall.action);
                    if stall.stalled(&answered, on_stall.after_turns) {
                        tracing::info!(task = task.name(), "no progress; acting from code");
                        let succeeded =
                            unstall(&mut activity, &task, &mut outcome, &on_stall.action).await?;
                        stall.retire_after(&succeeded, &on_stall.action);
                    }
                }
            }
            Wakeup::KeyPressed(key) => {
                core.emit(SessionEvent::KeyPressReceived { key });
                let mut asked = false;
                match task.key_action(key) {
                    Some(KeyAction::CallTool(name)) => {
                        let called =
                            call_from_code(&mut activity, &task, &mut outcome, name).await?;
                        asked = called.asked;
                        if let (Some(on_stall), true) = (task.stall_action(), called.succeeded) {
                            stall.retire_after(std::slice::from_ref(name), &on_stall.action);
                        }
                    }
                    Some(KeyAction::Tell(text)) => {
                        activity.chat_ctx.add_message(ChatRole::User, text.clone());
                    }
                    None => {
                        let note = core
                            .options
                            .key_press_note
                            .replace("{key}", &key.to_string());
                        activity.chat_ctx.add_message(ChatRole::User, note);
                    }
                }
                if outcome.is_none() && !asked {
                    reply(&mut activity, &task, &mut outcome, None).await?;
                }
            }
            Wakeup::CallerSilent { times } => {
                if times <= 1 {
                    say(&mut activity, core.options.still_there.clone());
                } else {
                    say(&mut activity, core.options.goodbye.clone());
                    hang_up(&mut activity);
                    return Err(SessionClosed);
                }
            }
        }
    };
    let end = match &outcome {
        Outcome::Done(_) => TaskEnd::Done,
        Outcome::Failed(message) => TaskEnd::Failed(message.clone()),
        Outcome::Interrupted => TaskEnd::Interrupted,
    };
    core.emit(SessionEvent::TaskCompleted {
        name: task.name().to_string(),
        group_id: activity.group_id.clone(),
        end,
    });
    Ok(outcome)
}

/// One reply: model round trips, executing the tools it calls, until it answers in text,
/// a tool completes the task, or the step limit is reached (the last step offers no tools).
async fn reply<T: Send + 'static>(
    activity: &mut Activity<'_>,
    task: &AgentTask<T>,
    outcome: &mut Option<Outcome<T>>,
    enter_instructions: Option<&str>,
) -> Result<ReplySummary, SessionClosed> {
    let core = activity.core;
    let mut summary = ReplySummary::default();
    core.emit(SessionEvent::AgentStateChanged {
        state: AgentState::Thinking,
    });
    let (tools, specs): (Vec<_>, Vec<&Arc<ToolSpec>>) = task
        .tools()
        .filter(|(tool, _)| tool.offered_to_model())
        .filter(|(tool, _)| enter_instructions.is_none() || !tool.hidden_on_enter())
        .unzip();
    let instructions = match enter_instructions {
        Some(extra) => format!("{}\n\n{extra}", task.instructions()),
        None => task.instructions().to_string(),
    };
    let max_steps = core.options.max_tool_steps;
    // The filled tool is filled at most once per reply: after it ran (or failed, say for a
    // dish not on the menu) the model has to say something about it first.
    let mut fill_used = false;
    for step in 0..=max_steps {
        let offered: Vec<Arc<ToolSpec>> = if step < max_steps {
            specs
                .iter()
                .filter(|spec| !fill_used || Some(spec.name.as_str()) != task.fill_tool())
                .map(|spec| Arc::clone(spec))
                .collect()
        } else {
            Vec::new()
        };
        let fill = task
            .fill_tool()
            .filter(|name| offered.iter().any(|spec| spec.name == *name))
            .map(str::to_string);
        let request = ChatRequest {
            instructions: instructions.clone(),
            items: activity.chat_ctx.items().to_vec(),
            tools: offered,
            purpose: RequestPurpose::Reply,
            fill,
        };
        let (text, calls) = match stream_response(core, activity.inbox, request).await? {
            Streamed::Complete(text, calls) => (text, calls),
            Streamed::Failed(partial, error) => {
                apologize(activity, &partial, &error);
                return Ok(summary);
            }
            Streamed::Interrupted(heard) => {
                if !heard.is_empty() {
                    activity
                        .chat_ctx
                        .add_message(ChatRole::Assistant, heard.clone());
                }
                core.emit(SessionEvent::ReplyInterrupted { heard });
                return Ok(summary);
            }
        };
        let text = match (text.is_empty(), calls.is_empty(), &core.options.reply_check) {
            // Everything the model said was withheld and it did nothing: say something.
            (true, true, Some(check)) if summary.text.is_empty() => {
                check.fallback().unwrap_or_default()
            }
            _ => text,
        };
        summary.text.clone_from(&text);
        if !text.is_empty() {
            core.emit(SessionEvent::AgentMessage { text: text.clone() });
        }
        if calls.is_empty() {
            if !text.is_empty() {
                activity.chat_ctx.add_message(ChatRole::Assistant, text);
            }
            return Ok(summary);
        }
        let mut outputs = Vec::with_capacity(calls.len());
        let mut question = None;
        for call in &calls {
            let (output, ask) = execute(activity, &tools, outcome, call).await?;
            outputs.push(output);
            question = question.or(ask);
        }
        if !text.is_empty() {
            activity.chat_ctx.add_message(ChatRole::Assistant, text);
        }
        for call in calls {
            activity.chat_ctx.push(ChatItem::FunctionCall {
                call_id: call.call_id,
                name: call.name,
                arguments: call.arguments,
            });
        }
        summary.succeeded.extend(
            outputs
                .iter()
                .filter_map(succeeded_tool)
                .map(str::to_string),
        );
        for output in outputs {
            fill_used |= matches!(&output, ChatItem::FunctionOutput { name, .. }
                if Some(name.as_str()) == task.fill_tool());
            activity.chat_ctx.push(output);
        }
        if outcome.is_some() {
            return Ok(summary);
        }
        if let Some(question) = question {
            say(activity, question.clone());
            summary.text = question;
            summary.asked_from_code = true;
            return Ok(summary);
        }
    }
    Ok(summary)
}

/// What one reply did, for the stall watch.
#[derive(Debug, Default)]
struct ReplySummary {
    /// The text of its last model response (what the caller heard last).
    text: String,
    /// The tools that ran and succeeded, by name (one that only failed, say on arguments
    /// a guard refused again and again, is no progress).
    succeeded: Vec<String>,
    /// Whether a tool's question was said from code ([`ToolError::AskCaller`]): the task
    /// already acted as the stall watch would.
    ///
    /// [`ToolError::AskCaller`]: super::ToolError::AskCaller
    asked_from_code: bool,
}

/// The name of the tool whose output `item` is, if it succeeded.
fn succeeded_tool(item: &ChatItem) -> Option<&str> {
    match item {
        ChatItem::FunctionOutput {
            name,
            is_error: false,
            ..
        } => Some(name),
        _ => None,
    }
}

/// Notices a task that makes no progress: caller turns answered without a tool that
/// succeeded, or the same words said again.
#[derive(Debug, Default)]
struct StallWatch {
    turns_without_tool: usize,
    last_text: String,
    /// The task did what the guard pushes it to do (the stall action's tool succeeded):
    /// from then on, talk without tools is the caller's choice, not a stuck model.
    retired: bool,
}

impl StallWatch {
    /// Retires the watch once `action`'s tool is among `succeeded`: an order taker whose
    /// order was placed may chat with the caller for as long as they like.
    fn retire_after(&mut self, succeeded: &[String], action: &StallAction) {
        if let StallAction::CallTool(tool) = action
            && succeeded.iter().any(|name| name == tool)
        {
            self.retired = true;
        }
    }

    /// Records a reply to a caller turn; whether the task is now stalled after `limit`
    /// turns without a tool (or a repeated reply).
    fn stalled(&mut self, reply: &ReplySummary, limit: usize) -> bool {
        if self.retired {
            return false;
        }
        if !reply.succeeded.is_empty() || reply.asked_from_code {
            self.turns_without_tool = 0;
            self.last_text.clear();
            return false;
        }
        self.turns_without_tool += 1;
        let repeated = !reply.text.is_empty() && reply.text == self.last_text;
        self.last_text.clone_from(&reply.text);
        if repeated || self.turns_without_tool >= limit {
            self.turns_without_tool = 0;
            self.last_text.clear();
            return true;
        }
        false
    }
}

/// What running a tool from code did.
struct CalledFromCode {
    /// The tool asked the caller something from code (then no model reply follows).
    asked: bool,
    /// The tool succeeded.
    succeeded: bool,
}

/// Runs the task's tool `name` with no arguments as if the model had called it (a key the
/// task gave that meaning), recording the call and its output in the conversation.
async fn call_from_code<T: Send + 'static>(
    activity: &mut Activity<'_>,
    task: &AgentTask<T>,
    outcome: &mut Option<Outcome<T>>,
    name: &str,
) -> Result<CalledFromCode, SessionClosed> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let call = ToolCall {
        call_id: format!("key_{number}"),
        name: name.to_string(),
        arguments: "{}".to_string(),
    };
    let tools: Vec<&Arc<dyn DynTool<T>>> = task.tools().map(|(tool, _)| tool).collect();
    let (output, question) = execute(activity, &tools, outcome, &call).await?;
    activity.chat_ctx.push(ChatItem::FunctionCall {
        call_id: call.call_id,
        name: call.name,
        arguments: call.arguments,
    });
    let succeeded = succeeded_tool(&output).is_some();
    activity.chat_ctx.push(output);
    let asked = question.is_some();
    if let Some(question) = question {
        say(activity, question);
    }
    Ok(CalledFromCode { asked, succeeded })
}

/// What a stalled task does: say its question again from code, or run a tool. Returns the
/// tools that succeeded meanwhile.
async fn unstall<T: Send + 'static>(
    activity: &mut Activity<'_>,
    task: &AgentTask<T>,
    outcome: &mut Option<Outcome<T>>,
    action: &StallAction,
) -> Result<Vec<String>, SessionClosed> {
    let mut succeeded = Vec::new();
    match action {
        StallAction::Say(text) => say(activity, text.clone()),
        StallAction::CallTool(name) => {
            let called = call_from_code(activity, task, outcome, name).await?;
            if called.succeeded {
                succeeded.push(name.clone());
            }
            if outcome.is_none() && !called.asked {
                succeeded.extend(reply(activity, task, outcome, None).await?.succeeded);
            }
        }
    }
    Ok(succeeded)
}

/// Says `text` word for word, not through the model.
fn say(activity: &mut Activity<'_>, text: String) {
    activity
        .core
        .emit(SessionEvent::AgentMessage { text: text.clone() });
    activity.chat_ctx.add_message(ChatRole::Assistant, text);
}

/// Ends the call: the transport hangs up once what was said has played, and every task
/// still running unwinds without a result.
fn hang_up(activity: &mut Activity<'_>) {
    activity.core.emit(SessionEvent::HangUpRequested);
    activity.inbox.close();
}

/// How streaming one model response ended.
enum Streamed {
    /// The whole response: its text and tool calls.
    Complete(String, Vec<ToolCall>),
    /// The model failed after this much text.
    Failed(String, LlmError),
    /// The caller interrupted; this much of the reply was heard.
    Interrupted(String),
}

/// Streams one model response, reporting text as it arrives. An interruption from the
/// caller drops the stream, which cancels the request.
async fn stream_response(
    core: &SessionCore,
    inbox: &mut Inbox,
    request: ChatRequest,
) -> Result<Streamed, SessionClosed> {
    let checked = core
        .options
        .reply_check
        .clone()
        .map(|check| (check, request.clone(), SentenceBuffer::default()));
    let mut checked = checked;
    let mut stream = core.llm.chat(request);
    let mut text = String::new();
    let mut calls = Vec::new();
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            heard = inbox.interruption() => return Ok(Streamed::Interrupted(heard?)),
        };
        match event {
            None => {
                if let Some((check, request, buffer)) = &mut checked
                    && let Some(rest) = buffer.finish()
                {
                    say_checked(core, check.as_ref(), request, rest, &mut text);
                }
                let said = if checked.is_some() {
                    text.trim().to_string()
                } else {
                    text
                };
                return Ok(Streamed::Complete(said, calls));
            }
            Some(Ok(crate::llm::LlmEvent::TextDelta(delta))) => match &mut checked {
                None => {
                    core.emit(SessionEvent::TextDelta {
                        text: delta.clone(),
                    });
                    text.push_str(&delta);
                }
                Some((check, request, buffer)) => {
                    for sentence in buffer.push(&delta) {
                        say_checked(core, check.as_ref(), request, sentence, &mut text);
                    }
                }
            },
            Some(Ok(crate::llm::LlmEvent::ToolCall(call))) => calls.push(call),
            Some(Err(error)) => return Ok(Streamed::Failed(text, error)),
        }
    }
}

/// Streams one checked sentence: as written, replaced, or not at all.
fn say_checked(
    core: &SessionCore,
    check: &dyn ReplyCheck,
    request: &ChatRequest,
    sentence: String,
    text: &mut String,
) {
    let verdict = check.check(sentence.trim(), &Facts::of(request));
    let said = match verdict {
        Verdict::Keep => Some(sentence),
        Verdict::Replace(replacement) => {
            core.emit(SessionEvent::ReplyCorrected {
                sentence,
                replacement: Some(replacement.clone()),
            });
            Some(format!("{replacement} "))
        }
        Verdict::Drop => {
            core.emit(SessionEvent::ReplyCorrected {
                sentence,
                replacement: None,
            });
            None
        }
    };
    if let Some(said) = said {
        core.emit(SessionEvent::TextDelta { text: said.clone() });
        text.push_str(&said);
    }
}

/// Keeps only `heard` of the most recent agent message that begins with it (the reply
/// that was playing when the caller talked over it); nothing heard removes the message.
fn cut_last_reply(chat_ctx: &mut ChatContext, heard: &str) {
    let position = chat_ctx.items().iter().rposition(|item| {
        matches!(item, ChatItem::Message { role: ChatRole::Assistant, text } if text.starts_with(heard))
    });
    if let Some(position) = position {
        chat_ctx.replace_message_text(position, heard);
    }
}

/// The model could not answer: keep what was already said, then apologise.
fn apologize(activity: &mut Activity<'_>, partial: &str, error: &LlmError) {
    let core = activity.core;
    tracing::warn!(%error, "model request failed; apologising to the caller");
    core.emit(SessionEvent::ReplyFailed {
        error: error.to_string(),
    });
    if !partial.is_empty() {
        activity.chat_ctx.add_message(ChatRole::Assistant, partial);
    }
    let apology = core.options.apology.clone();
    core.emit(SessionEvent::AgentMessage {
        text: apology.clone(),
    });
    activity.chat_ctx.add_message(ChatRole::Assistant, apology);
}

/// Runs one tool call and returns its output item, and the question to say from code when
/// the tool asked the caller ([`ToolError::AskCaller`](super::ToolError::AskCaller)).
/// Unknown tools and bad arguments become error outputs the model reads.
async fn execute<T: Send + 'static>(
    activity: &mut Activity<'_>,
    tools: &[&Arc<dyn DynTool<T>>],
    outcome: &mut Option<Outcome<T>>,
    call: &ToolCall,
) -> Result<(ChatItem, Option<String>), SessionClosed> {
    let core = activity.core;
    core.emit(SessionEvent::FunctionCalled {
        call_id: call.call_id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    });
    let result = match tools.iter().find(|tool| tool.name() == call.name) {
        Some(tool) => {
            let mut ctx =
                ToolContext::new(core, &mut *activity.inbox, &mut *activity.chat_ctx, outcome);
            tool.invoke(&mut ctx, &call.arguments).await
        }
        None => {
            let names: Vec<&str> = tools.iter().map(|tool| tool.name()).collect();
            Err(super::ToolError::InvalidArguments(format!(
                "there is no tool named {:?} here; available: {}",
                call.name,
                names.join(", ")
            )))
        }
    };
    if activity.inbox.is_closed() {
        return Err(SessionClosed);
    }
    let mut question = None;
    let (output, is_error) = match result {
        Ok(output) => (output, false),
        Err(error) => {
            crate::telemetry::global().tool_failed();
            match &error {
                super::ToolError::Failed(_) => {
                    tracing::warn!(tool = %call.name, %error, "tool failed");
                }
                super::ToolError::AskCaller {
                    question: asked, ..
                } => {
                    question = Some(asked.clone());
                }
                _ => {}
            }
            (error.to_string(), true)
        }
    };
    core.emit(SessionEvent::FunctionReturned {
        call_id: call.call_id.clone(),
        name: call.name.clone(),
        output: output.clone(),
        is_error,
    });
    let output = ChatItem::FunctionOutput {
        call_id: call.call_id.clone(),
        name: call.name.clone(),
        output,
        is_error,
    };
    Ok((output, question))
}
