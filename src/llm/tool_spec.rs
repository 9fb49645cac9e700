//! Tools as the model sees them: a name, a description and a JSON schema; and the calls
//! the model makes.

use serde::Serialize;
use serde_json::Value;

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Name the model calls it by.
    pub name: String,
    /// When and why to call it.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

/// A complete tool call from the model, its arguments fully assembled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// Identifier the output must echo.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON text, exactly as the model produced them (may be malformed).
    pub arguments: String,
}
