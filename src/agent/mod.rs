//! The agents framework: [`Agent`], [`AgentTask<T>`], [`TaskGroup`], typed [`Tool`]s, and
//! [`AgentSession`], the engine that runs a conversation through them.
//!
//! The framework is generic: it never names a menu item. Bella Vista is one application of
//! it (`crate::bella_vista`).

mod activity;
mod caller;
mod context;
pub mod eval;
mod events;
mod reply_check;
mod session;
pub mod summary;
mod task;
pub mod task_group;
pub mod testing;
mod tool;

pub use caller::{CallerInfo, CallerKind};
pub use context::{TaskError, ToolContext, TransferError};
pub use events::{AgentState, SessionEvent, TaskEnd};
pub use reply_check::{Facts, ReplyCheck, Verdict};
pub use session::{
    AgentSession, SessionClosed, SessionHandle, SessionInput, SessionOptions, SessionSender,
};
pub use task::{Agent, AgentTask, KeyAction, OnEnter, OnStall, StallAction};
pub use task_group::{
    DependsOn, HandleError, RegressTarget, ResultError, TaskCompletedEvent, TaskEntry, TaskGroup,
    TaskGroupError, TaskGroupHandle, TaskResult, TaskResults,
};
pub use tool::{FnTool, NoArgs, Tool, ToolError, schema_of, tool_fn};
