//! The agents framework: [`Agent`], [`AgentTask<T>`], [`TaskGroup`], typed [`Tool`]s, and
//! [`AgentSession`], the engine that runs a conversation through them.
//!
//! The framework is generic: it never names a menu item. Bella Vista is one application of
//! it (`crate::bella_vista`).
//!
//! A complete agent: a host that books tables through a task. Tools are documented
//! methods ([`tools`]): the name from the method, the description from its doc comment,
//! the JSON schema from the typed arguments (an enum is a closed set), and the task's
//! fields through `&self`.
//!
//! ```
//! use bella_vista::agent::testing::TestSession;
//! use bella_vista::agent::{Agent, AgentTask, OnEnter, ToolContext, ToolError, ToolResult, tools};
//! use bella_vista::llm::scripted::{ScriptedLlm, Step};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
//! #[serde(rename_all = "lowercase")]
//! enum Seating { Inside, Terrace }
//!
//! /// The result of the booking task.
//! #[derive(Debug)]
//! struct Booking { guests: u32, seating: Seating }
//!
//! /// A task that completes with a booking.
//! struct BookTable { max_guests: u32 }
//!
//! #[tools(result = Booking)]
//! impl BookTable {
//!     /// Book the table once the caller said how many and where.
//!     ///
//!     /// - `guests`: how many people
//!     /// - `seating`: inside or on the terrace
//!     #[tool(hidden_on_enter)]
//!     fn book(&self, ctx: &mut ToolContext<'_, Booking>, guests: u32, seating: Seating) -> ToolResult {
//!         if guests > self.max_guests {
//!             return Err(ToolError::Rejected(format!("at most {} guests", self.max_guests)));
//!         }
//!         ctx.complete(Booking { guests, seating });
//!         Ok(format!("Booked for {guests}."))
//!     }
//! }
//!
//! /// The host: answers the call and starts the booking.
//! struct Host;
//!
//! #[tools(result = std::convert::Infallible)]
//! impl Host {
//!     /// Book a table for the caller.
//!     #[tool]
//!     async fn book_table(&self, ctx: &mut ToolContext<'_, std::convert::Infallible>) -> ToolResult {
//!         let task = AgentTask::new("BookTable", "Ask how many guests and where to sit.")
//!             .with_tools(BookTable { max_guests: 8 });
//!         let booking = ctx.run_task(task).await.map_err(|e| ToolError::Failed(e.to_string()))?;
//!         Ok(format!("{} guests, {:?}", booking.guests, booking.seating))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let llm = ScriptedLlm::new([
//!     Step::reply().text("Good evening!"),
//!     Step::reply().call("book_table", json!({})),
//!     Step::reply().expect_tool("book").call("book", json!({"guests": 12, "seating": "terrace"})),
//!     Step::reply().text("We seat at most eight. How many of you?"),
//!     Step::reply().call("book", json!({"guests": 4, "seating": "terrace"})),
//!     Step::reply().text("Your table for four on the terrace is booked."),
//! ]);
//! let host = Agent::new("Host", "Take table bookings.")
//!     .on_enter(OnEnter::Reply("Greet the caller.".into()))
//!     .with_tools(Host);
//! let (mut session, _greeting) = TestSession::start(host, llm.clone()).await;
//! session.run("I'd like a table").await;
//! let result = session.run("Twelve of us, on the terrace").await;
//! assert!(result.function_outputs("book")[0].0.contains("at most 8 guests"));
//! let result = session.run("Then four").await;
//! assert!(result.messages().contains(&"Your table for four on the terrace is booked."));
//! llm.verify().unwrap();
//! # });
//! ```
//!
//! A tool without a doc comment does not compile (the model would not know when to call
//! it), and neither does an argument the model's JSON cannot be read into:
//!
//! ```compile_fail
//! use bella_vista::agent::{ToolResult, tools};
//! struct Task;
//! #[tools(result = ())]
//! impl Task {
//!     #[tool]
//!     fn undocumented(&self) -> ToolResult { Ok(String::new()) }
//! }
//! ```
//!
//! ```compile_fail,E0277
//! use bella_vista::agent::{ToolResult, tools};
//! struct NotSerde;
//! struct Task;
//! #[tools(result = ())]
//! impl Task {
//!     /// Takes something JSON cannot hold.
//!     #[tool]
//!     fn take(&self, thing: NotSerde) -> ToolResult { Ok(String::new()) }
//! }
//! ```

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

pub use bella_vista_macros::tools;
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
    TaskGroupError, TaskGroupHandle, TaskKey, TaskResult, TaskResults,
};
pub use tool::{FnTool, NoArgs, Tool, ToolError, ToolResult, ToolSet, schema_of, tool_fn};

/// What `#[tools]` expansions name; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}
