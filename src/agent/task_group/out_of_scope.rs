//! The `out_of_scope` tool: how the model takes the caller back to earlier tasks.

use std::future::Future;
use std::sync::Weak;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GroupShared;
use crate::agent::{Tool, ToolContext, ToolError};

/// Name of the regression tool, as the model sees it.
pub const OUT_OF_SCOPE: &str = "out_of_scope";

/// Arguments of `out_of_scope`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct OutOfScopeArgs {
    /// The ids of the tasks to go back to, in the order the caller asked.
    task_ids: Vec<String>,
}

/// Offered from the second task on, never while a task enters; its `task_ids` enum holds
/// only the tasks already visited (other than the current one).
pub(crate) struct OutOfScope {
    pub(crate) group: Weak<GroupShared>,
    pub(crate) choices: Vec<(String, String)>,
}

impl<T: Send + 'static> Tool<T> for OutOfScope {
    type Args = OutOfScopeArgs;

    fn name(&self) -> &str {
        OUT_OF_SCOPE
    }

    fn description(&self) -> String {
        let tasks: serde_json::Map<String, Value> = self
            .choices
            .iter()
            .map(|(id, description)| (id.clone(), Value::String(description.clone())))
            .collect();
        format!(
            "Call when the caller wants to change something handled in an earlier step: \
             return the ids of the tasks to go back to. If they want to change several \
             things, return all of their ids in the order they asked. The task ids and \
             what each collects: {}",
            Value::Object(tasks)
        )
    }

    fn hidden_on_enter(&self) -> bool {
        true
    }

    fn parameters(&self) -> Value {
        let ids: Vec<&str> = self.choices.iter().map(|(id, _)| id.as_str()).collect();
        json!({
            "type": "object",
            "properties": {
                "task_ids": {
                    "type": "array",
                    "description": "The ids of the tasks to go back to, in the order asked.",
                    "items": { "type": "string", "enum": ids },
                    "minItems": 1
                }
            },
            "required": ["task_ids"]
        })
    }

    fn call(
        &self,
        ctx: &mut ToolContext<'_, T>,
        args: OutOfScopeArgs,
    ) -> impl Future<Output = Result<String, ToolError>> + Send {
        let result = self.regress(ctx, args.task_ids);
        std::future::ready(result)
    }
}

impl OutOfScope {
    fn regress<T: Send + 'static>(
        &self,
        ctx: &mut ToolContext<'_, T>,
        task_ids: Vec<String>,
    ) -> Result<String, ToolError> {
        let valid: Vec<&str> = self.choices.iter().map(|(id, _)| id.as_str()).collect();
        if let Some(unknown) = task_ids.iter().find(|id| !valid.contains(&id.as_str())) {
            return Err(ToolError::InvalidArguments(format!(
                "unable to go back to {unknown:?}; valid task ids: {}",
                valid.join(", ")
            )));
        }
        let group = self
            .group
            .upgrade()
            .ok_or_else(|| ToolError::Rejected("the task group has already finished".into()))?;
        group
            .regress_queued(&task_ids)
            .map_err(|error| ToolError::InvalidArguments(error.to_string()))?;
        ctx.interrupt();
        Ok(format!("Going back to: {}", task_ids.join(", ")))
    }
}
