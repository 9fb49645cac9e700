//! [`TaskGroup`]: an ordered set of tasks the caller can step back through.
//!
//! Each task is registered as `(id, description, factory)`; the factory is called every
//! time the task is entered and sees the results so far. The model gets an
//! [`out_of_scope`](OUT_OF_SCOPE) tool from the second task on to go back to visited tasks;
//! code can do the same through [`TaskGroupHandle::regress`]. Which task runs next is
//! decided by `plan.rs`, a state machine without I/O.

mod out_of_scope;
mod plan;
mod results;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;

pub use out_of_scope::OUT_OF_SCOPE;
pub use plan::{DependsOn, PlanError};
pub use results::{ResultError, TaskKey, TaskResult, TaskResults};

use super::activity::{self, Activity, Outcome};
use super::events::SessionEvent;
use super::session::SessionClosed;
use super::summary::{self, summary_item};
use super::task::AgentTask;
use super::tool::DynTool;
use crate::llm::{ChatContext, LlmError};
use out_of_scope::OutOfScope;
use plan::Plan;

/// Why a task group ended without its results.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskGroupError {
    /// The session ended (the caller left) while the group was running.
    #[error("the session ended while the task group was running")]
    SessionClosed,
    /// A task failed and `return_exceptions` is off.
    #[error("task {id:?} failed: {message}")]
    TaskFailed {
        /// The failed task.
        id: String,
        /// Its failure.
        message: String,
    },
    /// Every task completed but the summary could not be made. The results are kept
    /// here; the caller's context got the group's messages unsummarized.
    #[error("failed to summarize the task group's conversation: {error}")]
    Summary {
        /// The model error.
        error: LlmError,
        /// The results, complete.
        results: TaskResults,
    },
}

/// Why a [`TaskGroupHandle`] request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The group has finished; there is nothing to change.
    #[error("the task group has finished")]
    Finished,
    /// The plan refused the request.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Passed to the `on_task_completed` callback after each successful completion.
pub struct TaskCompletedEvent<'a> {
    /// The task's id in the group.
    pub task_id: &'a str,
    /// The task's display name.
    pub task_name: &'a str,
    /// The result (downcast it to the task's result type).
    pub result: &'a (dyn Any + Send + Sync),
}

type CompletedCallback = Box<dyn Fn(&TaskCompletedEvent<'_>) + Send + Sync>;
type RunFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<(Outcome<Arc<dyn Any + Send + Sync>>, String), SessionClosed>>
            + Send
            + 'a,
    >,
>;

/// A task as the group stores it: its factory with the result type erased.
trait GroupTask: Send + Sync {
    fn run<'a>(
        &'a self,
        results: &'a TaskResults,
        activity: Activity<'a>,
        regression: Option<OutOfScope>,
    ) -> RunFuture<'a>;
}

struct Factory<F>(F);

impl<T, F> GroupTask for Factory<F>
where
    T: Send + Sync + 'static,
    F: Fn(&TaskResults) -> AgentTask<T> + Send + Sync,
{
    fn run<'a>(
        &'a self,
        results: &'a TaskResults,
        activity: Activity<'a>,
        regression: Option<OutOfScope>,
    ) -> RunFuture<'a> {
        let task = (self.0)(results);
        let name = task.name().to_string();
        let extra: Vec<Arc<dyn DynTool<T>>> = regression
            .map(|tool| Arc::new(tool) as Arc<dyn DynTool<T>>)
            .into_iter()
            .collect();
        Box::pin(async move {
            let outcome = activity::run(activity, task, extra).await?;
            let outcome = match outcome {
                Outcome::Done(value) => {
                    Outcome::Done(Arc::new(value) as Arc<dyn Any + Send + Sync>)
                }
                Outcome::Failed(message) => Outcome::Failed(message),
                Outcome::Interrupted => Outcome::Interrupted,
            };
            Ok((outcome, name))
        })
    }
}

/// One task of a group: its id, a description the model reads when deciding where to go
/// back to, its dependencies, and the factory that builds it each time it is entered. `T`
/// is the type of its result, carried by its [`key`](TaskEntry::key).
pub struct TaskEntry<T> {
    id: String,
    description: String,
    depends_on: DependsOn,
    factory: Arc<dyn GroupTask>,
    result: PhantomData<fn() -> T>,
}

impl<T: Send + Sync + 'static> TaskEntry<T> {
    /// A task whose `factory` builds it from the results so far.
    pub fn new<F>(id: impl Into<String>, description: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&TaskResults) -> AgentTask<T> + Send + Sync + 'static,
    {
        TaskEntry {
            id: id.into(),
            description: description.into(),
            depends_on: DependsOn::Nothing,
            factory: Arc::new(Factory(factory)),
            result: PhantomData,
        }
    }
}

impl<T> TaskEntry<T> {
    /// Declares what this task's result depends on.
    pub fn depends_on(mut self, depends_on: DependsOn) -> Self {
        self.depends_on = depends_on;
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The typed key of this task's result, for [`TaskResults::get`].
    pub fn key(&self) -> TaskKey<T> {
        TaskKey::new(self.id.as_str())
    }
}

struct GroupState {
    plan: Plan<TaskResult>,
    factories: HashMap<String, Arc<dyn GroupTask>>,
    current_interrupt: Option<Arc<Notify>>,
}

/// State shared by the group runner, its handles and its `out_of_scope` tools.
pub(crate) struct GroupShared {
    state: Mutex<GroupState>,
}

impl GroupShared {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add<T>(&self, entry: TaskEntry<T>, before: Option<&str>) -> Result<TaskKey<T>, PlanError> {
        let key = entry.key();
        let mut state = self.lock();
        state
            .plan
            .add(&entry.id, &entry.description, entry.depends_on, before)?;
        state.factories.insert(entry.id, entry.factory);
        Ok(key)
    }

    /// Queues a regression without interrupting (the caller interrupts its own task).
    pub(crate) fn regress_queued(&self, targets: &[String]) -> Result<(), PlanError> {
        self.lock().plan.regress(targets)
    }
}

/// Adds tasks to, and regresses, a running group. Cheap to clone; holds the group weakly,
/// so a handle kept in a task's tools does not keep a finished group alive.
#[derive(Clone)]
pub struct TaskGroupHandle {
    group: Weak<GroupShared>,
}

impl TaskGroupHandle {
    fn shared(&self) -> Result<Arc<GroupShared>, HandleError> {
        self.group.upgrade().ok_or(HandleError::Finished)
    }

    /// Registers a task at the end (or replaces a task with the same id); returns the key
    /// of its result.
    pub fn add<T>(&self, entry: TaskEntry<T>) -> Result<TaskKey<T>, HandleError> {
        Ok(self.shared()?.add(entry, None)?)
    }

    /// Registers a task just before the task `before`; returns the key of its result.
    pub fn add_before<T>(
        &self,
        before: &str,
        entry: TaskEntry<T>,
    ) -> Result<TaskKey<T>, HandleError> {
        Ok(self.shared()?.add(entry, Some(before))?)
    }

    /// Whether a task with this id is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.shared()
            .map(|shared| shared.lock().factories.contains_key(id))
            .unwrap_or(false)
    }

    /// Goes back to `targets` (ids, in order): the running task ends, the targets run
    /// again, then the interrupted task is re-entered fresh.
    pub fn regress_to(&self, targets: &[&str]) -> Result<(), HandleError> {
        let shared = self.shared()?;
        let mut state = shared.lock();
        let targets: Vec<String> = targets.iter().map(|id| id.to_string()).collect();
        state.plan.regress(&targets)?;
        if let Some(interrupt) = &state.current_interrupt {
            interrupt.notify_one();
        }
        Ok(())
    }

    /// Goes back to one task, by id or by registration index (0-based).
    pub fn regress(&self, target: impl Into<RegressTarget>) -> Result<(), HandleError> {
        let id = match target.into() {
            RegressTarget::Id(id) => id,
            RegressTarget::Index(index) => self.shared()?.lock().plan.id_at(index)?,
        };
        self.regress_to(&[id.as_str()])
    }
}

/// A task to go back to: by id or by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegressTarget {
    /// A task id.
    Id(String),
    /// A registration index, 0-based.
    Index(usize),
}

impl From<&str> for RegressTarget {
    fn from(id: &str) -> Self {
        RegressTarget::Id(id.to_string())
    }
}

impl From<usize> for RegressTarget {
    fn from(index: usize) -> Self {
        RegressTarget::Index(index)
    }
}

/// An ordered set of tasks run one after another on a shared conversation. Run it from a
/// tool with [`ToolContext::run_group`](super::ToolContext::run_group).
pub struct TaskGroup {
    shared: Arc<GroupShared>,
    summarize: bool,
    summarize_between_tasks: bool,
    summary_instructions: Option<String>,
    return_exceptions: bool,
    on_task_completed: Option<CompletedCallback>,
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// An empty group: summarize at the end, no summaries between tasks, failures stop it.
    pub fn new() -> Self {
        TaskGroup {
            shared: Arc::new(GroupShared {
                state: Mutex::new(GroupState {
                    plan: Plan::default(),
                    factories: HashMap::new(),
                    current_interrupt: None,
                }),
            }),
            summarize: true,
            summarize_between_tasks: false,
            summary_instructions: None,
            return_exceptions: false,
            on_task_completed: None,
        }
    }

    /// Registers a task at the end. Re-adding an id replaces that task in place. Chains
    /// like LiveKit's `add`; take the result's key from the entry first
    /// ([`TaskEntry::key`]), or use [`TaskGroup::add_keyed`].
    #[allow(clippy::should_implement_trait)] // `add` is the name LiveKit users know.
    pub fn add<T>(self, entry: TaskEntry<T>) -> Self {
        // Adding to a fresh group cannot fail: there is no anchor to miss.
        let _ = self.shared.add(entry, None);
        self
    }

    /// Registers a task at the end and returns the key of its result.
    pub fn add_keyed<T>(&mut self, entry: TaskEntry<T>) -> TaskKey<T> {
        let key = entry.key();
        let _ = self.shared.add(entry, None);
        key
    }

    /// A handle for adding tasks and regressing while the group runs.
    pub fn handle(&self) -> TaskGroupHandle {
        TaskGroupHandle {
            group: Arc::downgrade(&self.shared),
        }
    }

    /// Whether to compress the group's conversation into one message at the end (default
    /// on). Off: the group's messages join the caller's context as they are.
    pub fn summarize(mut self, on: bool) -> Self {
        self.summarize = on;
        self
    }

    /// Also compress the conversation after each task, so the next starts focused.
    pub fn summarize_between_tasks(mut self, on: bool) -> Self {
        self.summarize_between_tasks = on;
        self
    }

    /// Instructions for the summaries (default: the session's).
    pub fn summary_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.summary_instructions = Some(instructions.into());
        self
    }

    /// Record a failed task's error as its result and go on (default off: stop).
    pub fn return_exceptions(mut self, on: bool) -> Self {
        self.return_exceptions = on;
        self
    }

    /// Called once after each successful task completion.
    pub fn on_task_completed(
        mut self,
        callback: impl Fn(&TaskCompletedEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_task_completed = Some(Box::new(callback));
        self
    }
}

/// What to run next, taken from the shared state under one lock.
struct NextTask {
    id: String,
    factory: Arc<dyn GroupTask>,
    choices: Vec<(String, String)>,
    results: TaskResults,
    interrupt: Arc<Notify>,
}

fn take_next(shared: &GroupShared) -> Option<NextTask> {
    let mut state = shared.lock();
    let id = state.plan.start_next()?;
    let factory = state.factories.get(&id)?.clone();
    let choices = state.plan.regress_choices(&id);
    let results = snapshot(&state.plan);
    let interrupt = Arc::new(Notify::new());
    state.current_interrupt = Some(interrupt.clone());
    Some(NextTask {
        id,
        factory,
        choices,
        results,
        interrupt,
    })
}

fn snapshot(plan: &Plan<TaskResult>) -> TaskResults {
    TaskResults::from_entries(
        plan.results()
            .map(|(id, result)| (id.to_string(), result.clone()))
            .collect(),
    )
}

/// Runs `group` in `parent`'s conversation until every task has a result.
pub(crate) async fn run(
    parent: Activity<'_>,
    group: TaskGroup,
) -> Result<TaskResults, TaskGroupError> {
    let core = parent.core;
    let mut group_ctx: ChatContext = parent.chat_ctx.clone();
    let start = group_ctx.len();
    let instructions = group
        .summary_instructions
        .clone()
        .unwrap_or_else(|| core.options.summary_instructions.clone());

    while let Some(next) = take_next(&group.shared) {
        let mut task_ctx = group_ctx.clone();
        let task_start = task_ctx.len();
        let regression = (!next.choices.is_empty()).then(|| OutOfScope {
            group: Arc::downgrade(&group.shared),
            choices: next.choices.clone(),
        });
        let activity = Activity {
            core,
            inbox: &mut *parent.inbox,
            chat_ctx: &mut task_ctx,
            interrupt: Some(&next.interrupt),
            group_id: Some(next.id.clone()),
        };
        let run = next.factory.run(&next.results, activity, regression).await;
        group.shared.lock().current_interrupt = None;
        let (outcome, name) = run.map_err(|_| TaskGroupError::SessionClosed)?;
        group_ctx.merge(task_ctx.since(task_start), false);

        match outcome {
            Outcome::Done(value) => {
                let invalidated = group
                    .shared
                    .lock()
                    .plan
                    .complete(&next.id, TaskResult::Value(value.clone()));
                for task_id in invalidated {
                    core.emit(SessionEvent::DependentInvalidated {
                        task_id,
                        because_of: next.id.clone(),
                    });
                }
                if let Some(callback) = &group.on_task_completed {
                    callback(&TaskCompletedEvent {
                        task_id: &next.id,
                        task_name: &name,
                        result: value.as_ref(),
                    });
                }
                if group.summarize_between_tasks {
                    summarize_in_place(core, &mut group_ctx, start, &instructions).await;
                }
            }
            Outcome::Failed(message) => {
                if !group.return_exceptions {
                    parent.chat_ctx.merge(group_ctx.since(start), false);
                    return Err(TaskGroupError::TaskFailed {
                        id: next.id,
                        message,
                    });
                }
                group
                    .shared
                    .lock()
                    .plan
                    .complete(&next.id, TaskResult::Failed(message));
            }
            Outcome::Interrupted => {
                let targets = {
                    let mut state = group.shared.lock();
                    state.plan.interrupted();
                    state.plan.queued_targets()
                };
                core.emit(SessionEvent::Regressed {
                    from: next.id.clone(),
                    targets,
                });
            }
        }
    }

    let results = snapshot(&group.shared.lock().plan);
    if !group.summarize {
        parent.chat_ctx.merge(group_ctx.since(start), false);
        return Ok(results);
    }
    match summary::summarize(core.llm.as_ref(), group_ctx.since(start), &instructions).await {
        Ok(text) => {
            parent.chat_ctx.push(summary_item(&text));
            Ok(results)
        }
        Err(error) => {
            parent.chat_ctx.merge(group_ctx.since(start), false);
            Err(TaskGroupError::Summary { error, results })
        }
    }
}

/// Replaces everything said since `start` with one summary message; on failure keeps the
/// turns (a missed summary costs tokens, not data).
async fn summarize_in_place(
    core: &super::session::SessionCore,
    group_ctx: &mut ChatContext,
    start: usize,
    instructions: &str,
) {
    match summary::summarize(core.llm.as_ref(), group_ctx.since(start), instructions).await {
        Ok(text) => {
            group_ctx.truncate(start);
            group_ctx.push(summary_item(&text));
        }
        Err(error) => tracing::warn!(%error, "summary between tasks failed; keeping the turns"),
    }
}
