//! `bella-vista eval`: the scenarios in `eval/` played against the configured model through
//! the real session, tasks, tools, guards and order store (in memory, one per scenario),
//! with a report per scenario: passed or why not, turns, seconds per turn, tool calls, and
//! sentences the reply check withheld.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::agent::eval::{Conversation, RuleCaller, converse};
use crate::app::{AppError, restaurant_with_store, start_session};
use crate::bella_vista::eval::{Scenario, load_scenarios};
use crate::bella_vista::store::{OrderStore, SqliteOrders};
use crate::config::Config;
use crate::llm::Llm;

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Failure {
    /// The model never called a tool.
    NoTool,
    /// The caller ran out of turns before an order was stored.
    Stuck,
    /// An order was stored, but not the expected one.
    WrongOrder(String),
    /// The order store failed.
    Store(String),
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// Whether the expected order was stored and nothing else went wrong.
    pub passed: bool,
    /// Why not.
    pub failure: Option<Failure>,
    /// Caller turns played.
    pub turns: usize,
    /// Median seconds from the caller's words to the agent listening again.
    pub median_turn_s: f64,
    /// Tool calls made.
    pub tool_calls: usize,
    /// Tool calls that answered with an error.
    pub tool_errors: usize,
    /// Sentences the reply check kept from the caller.
    pub withheld: usize,
    /// The whole conversation.
    pub conversation: Conversation,
}

/// All scenarios' outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// What answered (provider and model).
    pub model: String,
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// Scenarios passed.
    pub passed: usize,
}

/// Runs the scenarios in `dir` whose file name contains `only` (all when `None`) against
/// `llm`, printing a line per scenario as it finishes.
pub async fn run(
    config: &Config,
    llm: Arc<dyn Llm>,
    dir: &Path,
    only: Option<&str>,
    model: String,
) -> Result<EvalReport, AppError> {
    let scenarios = load_scenarios(dir)?;
    let mut reports = Vec::new();
    for (file, scenario) in scenarios {
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned());
        if only.is_some_and(|only| !name.as_deref().unwrap_or_default().contains(only)) {
            continue;
        }
        let report = run_scenario(config, llm.clone(), file, scenario).await?;
        eprintln!(
            "{:<44} {:<4} {:>2} turns, {:>5.1} s/turn, {} withheld{}",
            report.name,
            if report.passed { "PASS" } else { "FAIL" },
            report.turns,
            report.median_turn_s,
            report.withheld,
            report
                .failure
                .as_ref()
                .map(|f| format!(": {f:?}"))
                .unwrap_or_default()
        );
        reports.push(report);
    }
    let passed = reports.iter().filter(|r| r.passed).count();
    Ok(EvalReport {
        model,
        scenarios: reports,
        passed,
    })
}

async fn run_scenario(
    config: &Config,
    llm: Arc<dyn Llm>,
    file: PathBuf,
    scenario: Scenario,
) -> Result<ScenarioReport, AppError> {
    let sqlite = SqliteOrders::open_in_memory().map_err(|source| AppError::Store {
        path: "(memory)".into(),
        source,
    })?;
    let store = OrderStore::from(sqlite.clone());
    let restaurant = restaurant_with_store(config, store)?;
    let mut session = start_session(config, &restaurant, llm);
    let watched = sqlite.clone();
    let conversation = converse(
        &mut session,
        RuleCaller::new(scenario.caller.clone()),
        move || watched.list_all().is_ok_and(|orders| !orders.is_empty()),
    )
    .await;
    drop(session);
    let stored = sqlite.list_all().map_err(|e| e.to_string());
    let tools: Vec<_> = conversation
        .turns
        .iter()
        .flat_map(|turn| &turn.tools)
        .collect();
    let failure = match &stored {
        Err(error) => Some(Failure::Store(error.clone())),
        Ok(orders) => match scenario.expect.mismatch(orders) {
            None => None,
            Some(_) if tools.is_empty() => Some(Failure::NoTool),
            Some(_) if orders.is_empty() => Some(Failure::Stuck),
            Some(difference) => Some(Failure::WrongOrder(difference)),
        },
    };
    let mut seconds: Vec<f64> = conversation.turns.iter().map(|t| t.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let median_turn_s = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0);
    Ok(ScenarioReport {
        name: scenario.name,
        file,
        passed: failure.is_none(),
        failure,
        turns: conversation.turns.len(),
        median_turn_s,
        tool_calls: tools.len(),
        tool_errors: tools.iter().filter(|t| t.failed).count(),
        withheld: conversation.turns.iter().map(|t| t.corrected.len()).sum(),
        conversation,
    })
}
