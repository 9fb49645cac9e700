//! TaskGroup semantics through the public API, on generic tasks (no restaurant here).

use std::sync::{Arc, Mutex};

use bella_vista::agent::testing::TestSession;
use bella_vista::agent::{
    Agent, AgentTask, DependsOn, NoArgs, OnEnter, TaskEnd, TaskEntry, TaskGroup, TaskGroupError,
    TaskGroupHandle, TaskKey, TaskResults, Tool, ToolContext, ToolError, tool_fn,
};
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::llm::{ChatItem, ChatRequest};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct Record {
    /// The value the caller gave.
    value: String,
}

/// A task that asks for one value; `record` completes it, `cancel` completes with None,
/// `give_up` fails it.
fn ask(what: &str) -> AgentTask<Option<String>> {
    AgentTask::new(
        format!("Ask{what}"),
        format!("Collect the caller's {what}."),
    )
    .on_enter(OnEnter::Reply(format!("Ask for the {what}.")))
    .with_tool(
        tool_fn("record", "Record the value.", |ctx, args: Record| {
            ctx.complete(Some(args.value));
            Ok("recorded".to_string())
        })
        .hidden_on_enter(),
    )
    .with_tool(tool_fn("cancel", "Cancel this step.", |ctx, _: NoArgs| {
        ctx.complete(None);
        Ok("cancelled".to_string())
    }))
    .with_tool(tool_fn("give_up", "Fail this step.", |ctx, _: NoArgs| {
        ctx.fail("the caller refused");
        Ok("failed".to_string())
    }))
}

type Shared<T> = Arc<Mutex<Option<T>>>;

/// The root agent's `start` tool runs the group built by `make_group` and stores what
/// it returned.
struct Start<F> {
    make_group: F,
    outcome: Shared<Result<TaskResults, TaskGroupError>>,
}

impl<F> Tool<std::convert::Infallible> for Start<F>
where
    F: Fn() -> TaskGroup + Send + Sync + 'static,
{
    type Args = NoArgs;

    fn name(&self) -> &str {
        "start"
    }

    fn description(&self) -> String {
        "Start the questions.".into()
    }

    async fn call(
        &self,
        ctx: &mut ToolContext<'_, std::convert::Infallible>,
        _: NoArgs,
    ) -> Result<String, ToolError> {
        let outcome = ctx.run_group((self.make_group)()).await;
        let text = match &outcome {
            Ok(results) => format!("done: {}", results.ids().collect::<Vec<_>>().join(",")),
            Err(error) => format!("group error: {error}"),
        };
        *self.outcome.lock().unwrap() = Some(outcome);
        Ok(text)
    }
}

fn root<F>(make_group: F) -> (Agent, Shared<Result<TaskResults, TaskGroupError>>)
where
    F: Fn() -> TaskGroup + Send + Sync + 'static,
{
    let outcome = Arc::new(Mutex::new(None));
    let agent = Agent::new("Root", "You run the questions.").with_tool(Start {
        make_group,
        outcome: outcome.clone(),
    });
    (agent, outcome)
}

fn entry(id: &str) -> TaskEntry<Option<String>> {
    let what = id.to_string();
    TaskEntry::new(id, format!("Collects the {id}"), move |_| ask(&what))
}

fn three_tasks() -> TaskGroup {
    TaskGroup::new()
        .summarize(false)
        .add(entry("a"))
        .add(entry("b"))
        .add(entry("c"))
}

fn enum_of(request: &ChatRequest) -> Vec<String> {
    let tool = request
        .tools
        .iter()
        .find(|tool| tool.name == "out_of_scope")
        .expect("out_of_scope offered");
    serde_json::from_value(tool.parameters["properties"]["task_ids"]["items"]["enum"].clone())
        .unwrap()
}

fn value(results: &TaskResults, id: &str) -> Option<String> {
    results
        .get(&TaskKey::<Option<String>>::new(id))
        .unwrap()
        .clone()
}

#[tokio::test(start_paused = true)]
async fn regression_to_two_tasks_runs_them_in_the_order_asked_then_reenters() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        // a: entering, then the answer; no out_of_scope in the first task
        Step::reply()
            .expect_no_tool("out_of_scope")
            .text("What is a?"),
        Step::reply()
            .expect_no_tool("out_of_scope")
            .call("record", json!({"value": "a1"})),
        // b: hidden while entering, offered afterwards with only "a"
        Step::reply()
            .expect_no_tool("out_of_scope")
            .expect_no_tool("record")
            .text("What is b?"),
        Step::reply()
            .expect(|r| match enum_of(r) == ["a"] {
                true => Ok(()),
                false => Err(format!("enum {:?}", enum_of(r))),
            })
            .call("record", json!({"value": "b1"})),
        Step::reply().text("What is c?"),
        Step::reply()
            .expect(|r| match enum_of(r) == ["a", "b"] {
                true => Ok(()),
                false => Err(format!("enum {:?}", enum_of(r))),
            })
            .call("out_of_scope", json!({"task_ids": ["b", "a"]})),
        // b again, then a, then c re-entered fresh
        Step::reply().text("New b?"),
        Step::reply().call("record", json!({"value": "b2"})),
        Step::reply().text("New a?"),
        Step::reply().call("record", json!({"value": "a2"})),
        Step::reply().text("c?"),
        Step::reply().call("record", json!({"value": "c1"})),
        Step::reply().text("All set."),
    ]);
    let (agent, outcome) = root(three_tasks);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    session.run("b1").await;
    let result = session.run("change b and a").await;
    let mut expect = result.expect();
    expect.next_function_call("out_of_scope");
    expect.next_function_output("out_of_scope");
    assert_eq!(expect.next_task_completed("c"), TaskEnd::Interrupted);
    assert_eq!(expect.next_regression(), vec!["b", "a"]);
    expect.next_task_started("b");
    session.run("b2").await;
    let result = session.run("a2").await;
    assert_eq!(result.tasks_started(), vec!["c"]);
    session.run("c1").await;
    llm.verify().unwrap();
    let results = outcome.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(results.ids().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(value(&results, "a").as_deref(), Some("a2"));
    assert_eq!(value(&results, "b").as_deref(), Some("b2"));
    assert_eq!(value(&results, "c").as_deref(), Some("c1"));
}

#[tokio::test(start_paused = true)]
async fn out_of_scope_rejects_an_unvisited_id_and_the_task_goes_on() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("b?"),
        Step::reply().call("out_of_scope", json!({"task_ids": ["c"]})),
        Step::reply().text("Sorry, what is b?"),
    ]);
    let (agent, _) = root(three_tasks);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    let result = session.run("change c").await;
    let mut expect = result.expect();
    expect.next_function_call("out_of_scope");
    assert!(
        expect
            .next_function_error("out_of_scope")
            .contains("valid task ids: a")
    );
    expect.next_message();
    expect.no_more();
    llm.verify().unwrap();
}

fn growing_group(handle_slot: Arc<Mutex<Option<TaskGroupHandle>>>) -> impl Fn() -> TaskGroup {
    move || {
        let group = TaskGroup::new().summarize(false);
        let handle = group.handle();
        *handle_slot.lock().unwrap() = Some(handle.clone());
        let first = TaskEntry::new("q1", "first question", move |_| {
            let handle = handle.clone();
            ask("q1").with_tool(tool_fn(
                "add_question",
                "Add a question.",
                move |_ctx, _: NoArgs| {
                    handle
                        .add(entry("q2"))
                        .map(|_| "added".to_string())
                        .map_err(|e| ToolError::Failed(e.to_string()))
                },
            ))
        });
        group.add(first)
    }
}

#[tokio::test(start_paused = true)]
async fn add_while_running_then_cancel_leaves_a_none_result() {
    let slot = Arc::new(Mutex::new(None));
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("q1?"),
        Step::reply().call("add_question", json!({})),
        Step::reply().text("Added. And q1?"),
        Step::reply().call("record", json!({"value": "x"})),
        Step::reply().text("q2?"),
        Step::reply().call("cancel", json!({})),
        Step::reply().text("Done."),
    ]);
    let (agent, outcome) = root(growing_group(slot.clone()));
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("add one more question").await;
    let result = session.run("x").await;
    assert_eq!(result.tasks_started(), vec!["q2"]);
    session.run("never mind").await;
    llm.verify().unwrap();
    let results = outcome.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(value(&results, "q1").as_deref(), Some("x"));
    assert_eq!(value(&results, "q2"), None);
    assert_eq!(
        results
            .values::<Option<String>>()
            .filter(|(_, v)| v.is_some())
            .count(),
        1
    );
    assert!(
        slot.lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .add(entry("late"))
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn depends_on_reruns_a_completed_dependent_but_not_the_others() {
    let make = || {
        TaskGroup::new()
            .summarize(false)
            .add(entry("a"))
            .add(entry("b"))
            .add(entry("c").depends_on(DependsOn::Tasks(vec!["a".into()])))
            .add(entry("d"))
    };
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("b?"),
        Step::reply().call("record", json!({"value": "b1"})),
        Step::reply().text("c?"),
        Step::reply().call("record", json!({"value": "c1"})),
        Step::reply().text("d?"),
        Step::reply().call("out_of_scope", json!({"task_ids": ["a"]})),
        Step::reply().text("a again?"),
        Step::reply().call("record", json!({"value": "a2"})),
        Step::reply().text("c again?"),
        Step::reply().call("record", json!({"value": "c2"})),
        Step::reply().text("d?"),
        Step::reply().call("record", json!({"value": "d1"})),
        Step::reply().text("Done."),
    ]);
    let (agent, outcome) = root(make);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    for turn in ["go", "a1", "b1", "c1", "change a"] {
        session.run(turn).await;
    }
    let result = session.run("a2").await;
    let mut expect = result.expect();
    expect.skip_to_task_started("c");
    assert_eq!(result.tasks_started(), vec!["c"]);
    assert!(result.events().iter().any(|e| matches!(e,
        bella_vista::agent::SessionEvent::DependentInvalidated { task_id, because_of }
            if task_id == "c" && because_of == "a")));
    let result = session.run("c2").await;
    assert_eq!(result.tasks_started(), vec!["d"]);
    session.run("d1").await;
    llm.verify().unwrap();
    let results = outcome.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(value(&results, "b").as_deref(), Some("b1"));
    assert_eq!(value(&results, "c").as_deref(), Some("c2"));
}

#[tokio::test(start_paused = true)]
async fn regress_from_code_by_index_interrupts_the_waiting_task() {
    let slot: Arc<Mutex<Option<TaskGroupHandle>>> = Arc::new(Mutex::new(None));
    let slot_for_group = slot.clone();
    let make = move || {
        let group = three_tasks();
        *slot_for_group.lock().unwrap() = Some(group.handle());
        group
    };
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("b?"),
        Step::reply().text("a again?"),
    ]);
    let (agent, _) = root(make);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    let handle = slot.lock().unwrap().clone().unwrap();
    handle.regress(0usize).unwrap();
    // The waiting task is interrupted without any caller input.
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), session.wait())
        .await
        .unwrap();
    assert!(result.events().iter().any(|e| matches!(e,
        bella_vista::agent::SessionEvent::Regressed { from, targets } if from == "b" && targets == &["a"])));
    llm.verify().unwrap();
}

fn failing_group(return_exceptions: bool) -> impl Fn() -> TaskGroup {
    move || {
        TaskGroup::new()
            .summarize(false)
            .return_exceptions(return_exceptions)
            .add(entry("a"))
            .add(entry("b"))
    }
}

#[tokio::test(start_paused = true)]
async fn without_return_exceptions_a_failure_stops_the_group() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("give_up", json!({})),
        Step::reply().text("Sorry about that."),
    ]);
    let (agent, outcome) = root(failing_group(false));
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    let result = session.run("no").await;
    assert!(result.function_outputs("start")[0].0.contains("refused"));
    llm.verify().unwrap();
    let error = outcome.lock().unwrap().take().unwrap().unwrap_err();
    assert!(matches!(error, TaskGroupError::TaskFailed { id, .. } if id == "a"));
}

#[tokio::test(start_paused = true)]
async fn with_return_exceptions_the_failure_is_recorded_and_the_group_goes_on() {
    let completed = Arc::new(Mutex::new(Vec::new()));
    let seen = completed.clone();
    let make = move || {
        let seen = seen.clone();
        failing_group(true)().on_task_completed(move |event| {
            let value = event
                .result
                .downcast_ref::<Option<String>>()
                .cloned()
                .flatten();
            seen.lock()
                .unwrap()
                .push((event.task_id.to_string(), value));
        })
    };
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("give_up", json!({})),
        Step::reply().text("b?"),
        Step::reply().call("record", json!({"value": "b1"})),
        Step::reply().text("Done."),
    ]);
    let (agent, outcome) = root(make);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("no").await;
    session.run("b1").await;
    llm.verify().unwrap();
    let results = outcome.lock().unwrap().take().unwrap().unwrap();
    assert!(results.get(&TaskKey::<Option<String>>::new("a")).is_err());
    assert_eq!(value(&results, "b").as_deref(), Some("b1"));
    assert_eq!(
        *completed.lock().unwrap(),
        vec![("b".to_string(), Some("b1".to_string()))]
    );
}

#[tokio::test(start_paused = true)]
async fn on_task_completed_fires_once_per_completion_including_reruns() {
    let completed = Arc::new(Mutex::new(Vec::new()));
    let seen = completed.clone();
    let make = move || {
        let seen = seen.clone();
        TaskGroup::new()
            .summarize(false)
            .add(entry("a"))
            .add(entry("b"))
            .on_task_completed(move |event| seen.lock().unwrap().push(event.task_id.to_string()))
    };
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("b?"),
        Step::reply().call("out_of_scope", json!({"task_ids": ["a"]})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a2"})),
        Step::reply().text("b?"),
        Step::reply().call("record", json!({"value": "b1"})),
        Step::reply().text("Done."),
    ]);
    let (agent, _) = root(make);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    for turn in ["go", "a1", "back", "a2", "b1"] {
        session.run(turn).await;
    }
    llm.verify().unwrap();
    assert_eq!(*completed.lock().unwrap(), vec!["a", "a", "b"]);
}

fn summarized_group() -> TaskGroup {
    TaskGroup::new().add(entry("a")).add(entry("b"))
}

#[tokio::test(start_paused = true)]
async fn after_the_group_the_callers_context_holds_one_summary_instead_of_its_turns() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("What is a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("What is b?"),
        Step::reply().call("record", json!({"value": "b1"})),
        Step::summary("The caller gave a1 and b1."),
        Step::reply()
            .expect(|request| {
                let messages: Vec<&ChatItem> = request
                    .items
                    .iter()
                    .filter(|i| matches!(i, ChatItem::Message { .. }))
                    .collect();
                let texts: Vec<String> = messages.iter().map(|m| format!("{m:?}")).collect();
                let summaries = texts.iter().filter(|t| t.contains("a1 and b1")).count();
                let group_turns = texts.iter().filter(|t| t.contains("What is")).count();
                if summaries == 1 && group_turns == 0 {
                    Ok(())
                } else {
                    Err(format!("context: {texts:?}"))
                }
            })
            .text("Thanks, all recorded."),
    ]);
    let (agent, outcome) = root(summarized_group);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    let result = session.run("b1").await;
    assert_eq!(result.messages(), vec!["Thanks, all recorded."]);
    llm.verify().unwrap();
    assert!(outcome.lock().unwrap().take().unwrap().is_ok());
    let summary_request = &llm.requests()[5];
    assert!(format!("{:?}", summary_request.items).contains("Caller: a1"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_summary_is_an_error_with_the_results_never_a_second_completion() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::reply().text("b?"),
        Step::reply().call("record", json!({"value": "b1"})),
        Step::new().fail(bella_vista::llm::LlmError::Http {
            status: 500,
            message: "down".into(),
        }),
        Step::reply().text("Recorded, though I could not tidy up my notes."),
    ]);
    let (agent, outcome) = root(summarized_group);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    let result = session.run("b1").await;
    let outputs = result.function_outputs("start");
    assert_eq!(outputs.len(), 1, "exactly one completion of the group");
    assert!(outputs[0].0.contains("failed to summarize"));
    llm.verify().unwrap();
    match outcome.lock().unwrap().take().unwrap() {
        Err(TaskGroupError::Summary { results, .. }) => {
            assert_eq!(value(&results, "b").as_deref(), Some("b1"));
        }
        other => panic!("expected a summary error, got {:?}", other.map(|r| r.len())),
    }
}

#[tokio::test(start_paused = true)]
async fn summarize_between_tasks_gives_the_next_task_a_compressed_context() {
    let make = || {
        TaskGroup::new()
            .summarize(false)
            .summarize_between_tasks(true)
            .summary_instructions("Summarize what has been collected.")
            .add(entry("a"))
            .add(entry("b"))
    };
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("What is a?"),
        Step::reply().call("record", json!({"value": "a1"})),
        Step::summary("a is a1.").expect_instructions("Summarize what has been collected."),
        Step::reply()
            .expect(|r| {
                let text = format!("{:?}", r.items);
                if text.contains("a is a1.") && !text.contains("What is a?") {
                    Ok(())
                } else {
                    Err(text)
                }
            })
            .text("What is b?"),
    ]);
    let (agent, _) = root(make);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    session.run("a1").await;
    llm.verify().unwrap();
}

#[tokio::test(start_paused = true)]
async fn hanging_up_mid_group_ends_the_session_without_results() {
    let llm = ScriptedLlm::new([
        Step::reply().call("start", json!({})),
        Step::reply().text("a?"),
    ]);
    let (agent, outcome) = root(three_tasks);
    let (mut session, _) = TestSession::start(agent, llm.clone()).await;
    session.run("go").await;
    let ended = session.hang_up().await;
    assert!(
        ended
            .events()
            .iter()
            .any(|e| matches!(e, bella_vista::agent::SessionEvent::SessionEnded))
    );
    let returned = outcome.lock().unwrap().take().unwrap();
    assert!(matches!(returned, Err(TaskGroupError::SessionClosed)));
    llm.verify().unwrap();
}
