//! AgentTask<T> outside a group: the parent pauses while the task has the conversation,
//! resumes with the task's result and its conversation merged in; cancelling through an
//! `Option` result; the bound on tool steps per reply.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bella_vista::agent::testing::TestSession;
use bella_vista::agent::{
    Agent, AgentTask, NoArgs, OnEnter, SessionOptions, TaskError, Tool, ToolContext, ToolError,
    tool_fn,
};
use bella_vista::llm::ChatItem;
use bella_vista::llm::scripted::{ScriptedLlm, Step};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct Consent {
    /// Whether the caller agreed.
    agreed: bool,
}

fn consent_task() -> AgentTask<Option<bool>> {
    AgentTask::new("CollectConsent", "Ask for consent to record the call.")
        .on_enter(OnEnter::Reply("Ask for consent.".into()))
        .with_tool(
            tool_fn(
                "record_consent",
                "Record the answer.",
                |ctx, args: Consent| {
                    ctx.complete(Some(args.agreed));
                    Ok("noted".into())
                },
            )
            .hidden_on_enter(),
        )
        .with_tool(tool_fn(
            "skip",
            "The caller will not answer.",
            |ctx, _: NoArgs| {
                ctx.complete(None);
                Ok("skipped".into())
            },
        ))
}

/// What the parent saw each task return.
type Seen = Arc<Mutex<Vec<Result<Option<bool>, TaskError>>>>;

struct AskConsent {
    seen: Seen,
}

impl Tool<Infallible> for AskConsent {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "ask_consent"
    }

    fn description(&self) -> String {
        "Ask the caller for consent.".into()
    }

    async fn call(
        &self,
        ctx: &mut ToolContext<'_, Infallible>,
        _: NoArgs,
    ) -> Result<String, ToolError> {
        let result = ctx.run_task(consent_task()).await;
        let text = format!("consent: {result:?}");
        self.seen.lock().unwrap().push(result);
        Ok(text)
    }
}

fn parent(seen: Seen) -> Agent {
    Agent::new("Support", "You help callers.")
        .with_tool(AskConsent { seen })
        .with_tool(tool_fn(
            "lookup",
            "Look something up.",
            |_ctx, _: NoArgs| Ok("found".into()),
        ))
}

#[tokio::test(start_paused = true)]
async fn the_parent_pauses_and_resumes_with_the_result_and_the_merged_conversation() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = ScriptedLlm::new([
        Step::reply()
            .expect_tool("ask_consent")
            .call("ask_consent", json!({})),
        Step::reply()
            .expect_instructions("Ask for consent to record")
            .expect_no_tool("ask_consent")
            .expect_no_tool("lookup")
            .expect_no_tool("record_consent")
            .text("May I record this call?"),
        Step::reply()
            .expect_tool("record_consent")
            .expect_no_tool("lookup")
            .call("record_consent", json!({"agreed": true})),
        Step::reply()
            .expect_instructions("You help callers.")
            .expect_tool("lookup")
            .expect(|request| {
                let said = request.items.iter().any(|i| {
                    matches!(i,
                    ChatItem::Message { text, .. } if text == "May I record this call?")
                });
                let task_calls = request.items.iter().any(|i| {
                    matches!(i,
                    ChatItem::FunctionCall { name, .. } if name == "record_consent")
                });
                match (said, task_calls) {
                    (true, false) => Ok(()),
                    _ => Err(format!("{:?}", request.items)),
                }
            })
            .text("Thanks! How can I help?"),
    ]);
    let (mut session, _) = TestSession::start(parent(seen.clone()), llm.clone()).await;
    let result = session.run("hi").await;
    let mut expect = result.expect();
    expect.next_function_call("ask_consent");
    expect.next_task_started("CollectConsent");
    assert_eq!(expect.next_message(), "May I record this call?");
    expect.no_more();

    let result = session.run("yes, go ahead").await;
    let mut expect = result.expect();
    expect.next_function_call("record_consent");
    expect.next_function_output("record_consent");
    expect.next_task_completed("CollectConsent");
    assert_eq!(
        expect.next_function_output("ask_consent"),
        "consent: Ok(Some(true))"
    );
    assert_eq!(expect.next_message(), "Thanks! How can I help?");
    llm.verify().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![Ok(Some(true))]);
}

#[tokio::test(start_paused = true)]
async fn a_task_cancelled_with_none_returns_none() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = ScriptedLlm::new([
        Step::reply().call("ask_consent", json!({})),
        Step::reply().text("May I record?"),
        Step::reply().call("skip", json!({})),
        Step::reply().text("No problem."),
    ]);
    let (mut session, _) = TestSession::start(parent(seen.clone()), llm.clone()).await;
    session.run("hi").await;
    session.run("I'd rather not say").await;
    llm.verify().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![Ok(None)]);
}

#[tokio::test(start_paused = true)]
async fn a_reply_stops_offering_tools_after_the_step_limit() {
    let llm = ScriptedLlm::new([
        Step::reply()
            .expect_tool("lookup")
            .call("lookup", json!({})),
        Step::reply()
            .expect_tool("lookup")
            .call("lookup", json!({})),
        Step::reply()
            .expect(|r| match r.tools.is_empty() {
                true => Ok(()),
                false => Err("tools still offered".into()),
            })
            .text("Here is what I found."),
    ]);
    let options = SessionOptions {
        max_tool_steps: 2,
        ..SessionOptions::default()
    };
    let agent = parent(Arc::new(Mutex::new(Vec::new())));
    let (mut session, _) = TestSession::start_with(agent, llm.clone(), options).await;
    let result = session.run("look it up, again and again").await;
    assert_eq!(result.function_calls(), vec!["lookup", "lookup"]);
    assert_eq!(result.messages(), vec!["Here is what I found."]);
    llm.verify().unwrap();
}
