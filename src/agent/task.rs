//! [`AgentTask<T>`]: an agent that ends with a typed result, and [`Agent`], one that
//! does not end.

use std::convert::Infallible;
use std::sync::Arc;

use super::tool::{DynTool, Tool, ToolSet};
use crate::llm::ToolSpec;

/// What a task does when it takes over the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnEnter {
    /// Wait for the caller to speak first.
    Listen,
    /// Generate a reply at once, with these extra instructions for that reply only (tools
    /// marked `hidden_on_enter` are not offered for it).
    Reply(String),
    /// Say this fixed text, then listen.
    Say(String),
    /// Run this tool of the task at once, with no arguments, as if the model had called
    /// it; the model then replies unless the tool completed the task. For a task brought
    /// back to do one thing the caller already asked for (take an item off the order).
    CallTool(String),
}

/// What a key on the caller's phone keypad means while a task is active (see
/// [`AgentTask::on_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Run this tool of the task, with no arguments, as if the model had called it; the
    /// model then replies (unless the tool completed the task). For answers that must not
    /// depend on the model understanding them, such as "press 1 to confirm".
    CallTool(String),
    /// Give the model this text as the caller's turn, instead of the generic note.
    Tell(String),
}

/// What a task does when it makes no progress: caller turns answered without any tool, or
/// the same reply twice (see [`AgentTask::on_stall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StallAction {
    /// Say this, word for word (the task's question, asked plainly).
    Say(String),
    /// Run this tool of the task, with no arguments, as if the model had called it. Once
    /// this tool has succeeded (however it was called), the guard retires for the rest of
    /// the task: it did what it exists for, and talk after that is the caller's choice.
    CallTool(String),
}

/// When and how a task gets unstuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnStall {
    /// Caller turns without a tool before acting.
    pub after_turns: usize,
    /// What to do.
    pub action: StallAction,
}

/// A focused agent that collects something and completes with a result of type `T`.
///
/// It has its own instructions and tools; while it runs, its parent's tools are not
/// offered. A tool completes it through [`ToolContext::complete`]; a task that may be
/// abandoned uses `T = Option<_>` and completes with `None`.
///
/// [`ToolContext::complete`]: super::ToolContext::complete
pub struct AgentTask<T> {
    name: String,
    instructions: String,
    tools: Vec<Arc<dyn DynTool<T>>>,
    /// Each tool's spec, made once when the tool is added (schemas never change).
    specs: Vec<Arc<ToolSpec>>,
    on_enter: OnEnter,
    keys: Vec<(char, KeyAction)>,
    on_stall: Option<OnStall>,
    fill: Option<String>,
}

/// An agent that runs until the session ends: a task that never completes.
pub type Agent = AgentTask<Infallible>;

impl<T: Send + 'static> AgentTask<T> {
    /// A task with a display name (shown in events and the console) and instructions.
    pub fn new(name: impl Into<String>, instructions: impl Into<String>) -> Self {
        AgentTask {
            name: name.into(),
            instructions: instructions.into(),
            tools: Vec::new(),
            specs: Vec::new(),
            on_enter: OnEnter::Listen,
            keys: Vec::new(),
            on_stall: None,
            fill: None,
        }
    }

    /// Adds a tool.
    pub fn with_tool(mut self, tool: impl Tool<T>) -> Self {
        self.push_tool(Arc::new(tool));
        self
    }

    /// Adds every tool of `tools` (see [`tools`](crate::agent::tools)).
    pub fn with_tools<S: ToolSet<T>>(self, tools: S) -> Self {
        Arc::new(tools).add_to(self)
    }

    /// Adds every tool of `tools`, already shared.
    pub fn with_shared_tools<S: ToolSet<T>>(self, tools: Arc<S>) -> Self {
        tools.add_to(self)
    }

    /// Sets what happens when the task takes over.
    pub fn on_enter(mut self, on_enter: OnEnter) -> Self {
        self.on_enter = on_enter;
        self
    }

    /// Gives `key` (`0`-`9`, `*`, `#`) a meaning while this task is active. Keys without
    /// one reach the model as a note that the caller pressed them.
    ///
    /// ```
    /// use bella_vista::agent::{AgentTask, KeyAction, NoArgs, OnEnter, tool_fn};
    ///
    /// let confirm = AgentTask::<bool>::new("Confirm", "Ask the caller to confirm.")
    ///     .on_enter(OnEnter::Say("Press 1 to confirm, or 2 to cancel.".into()))
    ///     .with_tool(tool_fn("confirm", "The caller confirmed.", |ctx, _: NoArgs| {
    ///         ctx.complete(true);
    ///         Ok("confirmed".into())
    ///     }))
    ///     .on_key('1', KeyAction::CallTool("confirm".into()))
    ///     .on_key('2', KeyAction::Tell("[The caller pressed 2: they want to cancel.]".into()));
    /// assert_eq!(confirm.key_action('1'), Some(&KeyAction::CallTool("confirm".into())));
    /// assert_eq!(confirm.key_action('5'), None);
    /// ```
    pub fn on_key(mut self, key: char, action: KeyAction) -> Self {
        self.keys.retain(|(k, _)| *k != key);
        self.keys.push((key, action));
        self
    }

    /// Names the tool this task exists to call (the one that completes it). A model that
    /// cannot be trusted to call tools on its own is then asked, at each turn, to write
    /// down what the caller said for each of that tool's arguments, and the call is made as
    /// soon as they are all known (see [`ChatRequest::fill`](crate::llm::ChatRequest)).
    pub fn fills(mut self, tool: impl Into<String>) -> Self {
        self.fill = Some(tool.into());
        self
    }

    /// What to do when `after_turns` caller turns in a row pass without any tool, or the
    /// model says the same thing twice: a guard against a model that chats instead of
    /// acting, and would otherwise keep the caller in this task forever.
    pub fn on_stall(mut self, after_turns: usize, action: StallAction) -> Self {
        self.on_stall = Some(OnStall {
            after_turns: after_turns.max(1),
            action,
        });
        self
    }
}

impl<T> AgentTask<T> {
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instructions.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// Names of the tools, in the order they were added.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|tool| tool.name()).collect()
    }

    /// The tools with their specs, in the order they were added.
    pub(crate) fn tools(&self) -> impl Iterator<Item = (&Arc<dyn DynTool<T>>, &Arc<ToolSpec>)> {
        self.tools.iter().zip(&self.specs)
    }

    pub(crate) fn push_tool(&mut self, tool: Arc<dyn DynTool<T>>) {
        self.specs.push(Arc::new(tool.spec()));
        self.tools.push(tool);
    }

    pub(crate) fn enter_action(&self) -> &OnEnter {
        &self.on_enter
    }

    /// The tool this task exists to call, if named.
    pub fn fill_tool(&self) -> Option<&str> {
        self.fill.as_deref()
    }

    /// What the task does when stalled, if anything.
    pub(crate) fn stall_action(&self) -> Option<OnStall> {
        self.on_stall.clone()
    }

    /// What `key` means in this task, if it was given a meaning.
    pub fn key_action(&self, key: char) -> Option<&KeyAction> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, action)| action)
    }
}
