//! Function tools: a typed argument struct, a JSON schema made from it, and a body.
//!
//! The model's arguments are parsed into the tool's `Args` type before the body runs; text
//! that does not parse becomes a [`ToolError::InvalidArguments`] the model reads and can
//! correct, so a tool body only ever sees well-formed input.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::ToolContext;
use crate::llm::ToolSpec;

/// Why a tool did not do what the model asked. The model reads the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments did not parse or are out of range; the model should correct its call.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A business rule refused the request (unknown item, nothing to confirm...); the
    /// model should tell the caller or ask again.
    #[error("{0}")]
    Rejected(String),
    /// Something internal failed; the model should apologise. Logged as a warning.
    #[error("internal error: {0}")]
    Failed(String),
    /// Only the caller can supply what is missing: the model reads `reason`, and the
    /// caller hears `question`, word for word, instead of another model reply. For facts a
    /// small model tends to guess (a payment method nobody named) and then keeps asking
    /// about in its own words.
    #[error("{reason}")]
    AskCaller {
        /// Why the call was refused, for the model.
        reason: String,
        /// What the caller is asked, said from code.
        question: String,
    },
}

/// What a tool body returns: the text the model reads, or why it did not work.
pub type ToolResult = Result<String, ToolError>;

/// The tools of one type, made by [`tools`](crate::agent::tools) from its `#[tool]`
/// methods; [`AgentTask::with_tools`](crate::agent::AgentTask::with_tools) offers them all.
/// Each tool holds the value (shared), so its methods read the task's fields through
/// `&self`.
pub trait ToolSet<T>: Send + Sync + 'static {
    /// Adds every tool to `task`.
    fn add_to(
        self: std::sync::Arc<Self>,
        task: crate::agent::AgentTask<T>,
    ) -> crate::agent::AgentTask<T>;
}

/// A tool that a task offers the model. `T` is the result type of the task it belongs to.
///
/// Implement this for tools that need `async` (running a task, a database write); use
/// [`tool_fn`] for the common synchronous case.
pub trait Tool<T>: Send + Sync + 'static {
    /// The arguments the model must supply; their schema is shown to the model.
    type Args: DeserializeOwned + JsonSchema + Send;

    /// The name the model calls.
    fn name(&self) -> &str;

    /// When and why to call it (the model reads this).
    fn description(&self) -> String;

    /// Whether the tool is withheld while the task's `on_enter` reply is generated, so a
    /// model cannot complete a step before the caller said anything.
    fn hidden_on_enter(&self) -> bool {
        false
    }

    /// Whether the model is offered it. A tool only code runs (a task's entry step, a key
    /// press) says `false`: it acts for the task without being one more choice for the
    /// model.
    fn offered_to_model(&self) -> bool {
        true
    }

    /// The JSON schema of the arguments; by default made from `Args`.
    fn parameters(&self) -> Value {
        schema_of::<Self::Args>()
    }

    /// Runs the tool; the returned text (or error) goes back to the model.
    fn call(
        &self,
        ctx: &mut ToolContext<'_, T>,
        args: Self::Args,
    ) -> impl Future<Output = Result<String, ToolError>> + Send;
}

/// The JSON schema of `A`, inlined (no `$ref`s), as function-calling APIs expect.
pub fn schema_of<A: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<A>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
        if !object.contains_key("properties") && object.get("type") == Some(&"object".into()) {
            object.insert("properties".into(), Value::Object(Default::default()));
        }
    }
    schema
}

/// Arguments of a tool that takes none.
#[derive(Debug, Default, serde::Deserialize, JsonSchema)]
pub struct NoArgs {}

pub(crate) type ToolFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>>;

/// A tool with its argument type erased, as the session stores it.
pub(crate) trait DynTool<T>: Send + Sync {
    fn spec(&self) -> ToolSpec;
    fn name(&self) -> &str;
    fn hidden_on_enter(&self) -> bool;
    fn offered_to_model(&self) -> bool;
    fn invoke<'a>(&'a self, ctx: &'a mut ToolContext<'_, T>, arguments: &'a str) -> ToolFuture<'a>;
}

impl<T, X> DynTool<T> for X
where
    T: Send + 'static,
    X: Tool<T>,
{
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: Tool::name(self).to_string(),
            description: self.description(),
            parameters: self.parameters(),
        }
    }

    fn name(&self) -> &str {
        Tool::name(self)
    }

    fn hidden_on_enter(&self) -> bool {
        Tool::hidden_on_enter(self)
    }

    fn offered_to_model(&self) -> bool {
        Tool::offered_to_model(self)
    }

    fn invoke<'a>(&'a self, ctx: &'a mut ToolContext<'_, T>, arguments: &'a str) -> ToolFuture<'a> {
        let parsed = parse_arguments::<X::Args>(arguments);
        Box::pin(async move {
            let args = parsed?;
            self.call(ctx, args).await
        })
    }
}

fn parse_arguments<A: DeserializeOwned>(arguments: &str) -> Result<A, ToolError> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(text).map_err(|error| ToolError::InvalidArguments(error.to_string()))
}

/// A synchronous tool made from a closure; see [`tool_fn`].
pub struct FnTool<A, F> {
    name: String,
    description: String,
    hidden_on_enter: bool,
    body: F,
    args: PhantomData<fn() -> A>,
}

/// Makes a tool from a name, a description and a synchronous body.
///
/// ```
/// use bella_vista::agent::{Agent, ToolError, tool_fn};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Hours {
///     /// Day of the week.
///     day: String,
/// }
///
/// let agent = Agent::new("Host", "You answer questions about opening hours.").with_tool(tool_fn(
///     "opening_hours",
///     "Tell the opening hours for a day.",
///     |_ctx, args: Hours| match args.day.as_str() {
///         "monday" => Err(ToolError::Rejected("closed on Mondays".into())),
///         _ => Ok("12:00-22:00".to_string()),
///     },
/// ));
/// assert_eq!(agent.name(), "Host");
/// ```
pub fn tool_fn<T, A, F>(name: &str, description: &str, body: F) -> FnTool<A, F>
where
    F: Fn(&mut ToolContext<'_, T>, A) -> Result<String, ToolError> + Send + Sync + 'static,
{
    FnTool {
        name: name.to_string(),
        description: description.to_string(),
        hidden_on_enter: false,
        body,
        args: PhantomData,
    }
}

impl<A, F> FnTool<A, F> {
    /// Withholds the tool while the task's `on_enter` reply is generated.
    pub fn hidden_on_enter(mut self) -> Self {
        self.hidden_on_enter = true;
        self
    }
}

impl<T, A, F> Tool<T> for FnTool<A, F>
where
    T: Send + 'static,
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(&mut ToolContext<'_, T>, A) -> Result<String, ToolError> + Send + Sync + 'static,
{
    type Args = A;

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn hidden_on_enter(&self) -> bool {
        self.hidden_on_enter
    }

    fn call(
        &self,
        ctx: &mut ToolContext<'_, T>,
        args: A,
    ) -> impl Future<Output = Result<String, ToolError>> + Send {
        std::future::ready((self.body)(ctx, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Example {
        /// How many.
        quantity: u32,
        /// Optional notes.
        #[serde(default)]
        notes: Vec<String>,
    }

    #[test]
    fn schema_lists_required_fields_and_descriptions() {
        let schema = schema_of::<Example>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["quantity"]));
        assert_eq!(schema["properties"]["quantity"]["description"], "How many.");
        assert!(schema.get("$schema").is_none());
    }

    #[test]
    fn empty_arguments_have_an_object_schema() {
        let schema = schema_of::<NoArgs>();
        assert_eq!(schema["type"], "object");
        assert!(schema["properties"].is_object());
    }

    #[test]
    fn malformed_arguments_are_an_error_for_the_model() {
        let parsed = parse_arguments::<Example>("{\"quantity\": \"two\"");
        assert!(matches!(parsed, Err(ToolError::InvalidArguments(_))));
        let empty = parse_arguments::<NoArgs>("");
        assert!(empty.is_ok());
    }
}
