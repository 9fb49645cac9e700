//! How a [`ChatRequest`] is written out for a local model with a ChatML chat template (the
//! Qwen2.5 family and most small instruct models): the instructions and the rules of the
//! reply format as the system message, the conversation in the same form the model answers
//! in, and an open assistant turn.
//!
//! The model answers with one JSON object (see [`super::reply`]): `{"say": ...}` or
//! `{"tool": ..., "arguments": ...}`. Earlier replies and tool calls are written back in
//! that same form, so the model sees its own conventions, and the prompt of the next turn
//! starts with the same tokens as this one (the key-value cache is reused).

use std::sync::Arc;

use serde_json::Value;

use super::reply::ACTION;
use crate::llm::{ChatItem, ChatRequest, ChatRole, RequestPurpose, ToolSpec};

/// The prompt for `request`.
pub fn render(request: &ChatRequest) -> String {
    let mut prompt = String::with_capacity(4096);
    let mut system = request.instructions.trim().to_string();
    let fill = request
        .fill
        .as_deref()
        .and_then(|name| request.tools.iter().find(|tool| tool.name == name))
        .map(Arc::as_ref);
    if request.purpose == RequestPurpose::Reply {
        system.push_str("\n\n");
        system.push_str(&reply_rules(&request.tools, fill));
    }
    turn(&mut prompt, "system", &system);
    for item in &request.items {
        match item {
            ChatItem::Message { role, text } => {
                let (role, content) = match role {
                    ChatRole::System => ("system", text.clone()),
                    ChatRole::User => ("user", text.clone()),
                    ChatRole::Assistant if request.purpose == RequestPurpose::Reply => {
                        ("assistant", say_json(text))
                    }
                    ChatRole::Assistant => ("assistant", text.clone()),
                };
                turn(&mut prompt, role, &content);
            }
            ChatItem::FunctionCall {
                name, arguments, ..
            } => {
                let written = match fill {
                    Some(tool) if tool.name == *name => heard_json(name, arguments),
                    Some(_) => action_json(name, arguments),
                    None => call_json(name, arguments),
                };
                turn(&mut prompt, "assistant", &written);
            }
            ChatItem::FunctionOutput {
                name,
                output,
                is_error,
                ..
            } => {
                let label = if *is_error { "error" } else { "result" };
                let content =
                    format!("<tool_response>\n{name} {label}: {output}\n</tool_response>");
                turn(&mut prompt, "user", &content);
            }
        }
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

/// `{"say": "..."}`, as the model writes it.
pub fn say_json(text: &str) -> String {
    format!("{{\"say\": {}}}", Value::String(text.to_string()))
}

/// `{"tool": "...", "arguments": {...}}`, as the model writes it (arguments that are not
/// JSON are kept as a string).
pub fn call_json(name: &str, arguments: &str) -> String {
    format!(
        "{{\"tool\": {}, \"arguments\": {}}}",
        Value::String(name.to_string()),
        json_or_string(arguments)
    )
}

/// `{"action": "...", "heard": {...}}`: a filled call, as the model wrote it (before its
/// words, which were not needed).
pub fn heard_json(name: &str, arguments: &str) -> String {
    format!(
        "{{\"{ACTION}\": {}, \"heard\": {}}}",
        Value::String(name.to_string()),
        json_or_string(arguments)
    )
}

/// `{"action": "...", "arguments": {...}}`: another tool called in a step that fills one.
pub fn action_json(name: &str, arguments: &str) -> String {
    format!(
        "{{\"{ACTION}\": {}, \"arguments\": {}}}",
        Value::String(name.to_string()),
        json_or_string(arguments)
    )
}

/// Arguments as JSON, or as a string when they are not JSON.
fn json_or_string(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

fn turn(prompt: &mut String, role: &str, content: &str) {
    prompt.push_str("<|im_start|>");
    prompt.push_str(role);
    prompt.push('\n');
    prompt.push_str(content.trim());
    prompt.push_str("<|im_end|>\n");
}

/// How to answer: the forms of the reply and the tools of this step, described in a line
/// each.
fn reply_rules(tools: &[Arc<ToolSpec>], fill: Option<&ToolSpec>) -> String {
    let others: Vec<&ToolSpec> = tools
        .iter()
        .filter(|tool| fill.is_none_or(|filled| filled.name != tool.name))
        .map(Arc::as_ref)
        .collect();
    if let Some(tool) = fill {
        return filled_rules(tool, &others);
    }
    let mut rules = String::from(
        "Answer with exactly one JSON object:\n{\"say\": \"...\"} with your next words to the \
         caller, short and spoken.\n",
    );
    if others.is_empty() {
        return rules;
    }
    rules.push_str(
        "Or {\"tool\": \"NAME\", \"arguments\": {...}} to use one of these tools; you will see \
         its result and answer again:\n",
    );
    push_tool_lines(&mut rules, &others);
    rules
}

/// The rules of a step that fills `tool`: first what the caller wants (this step or one
/// of the `others`), then the fields that choice needs.
fn filled_rules(tool: &ToolSpec, others: &[&ToolSpec]) -> String {
    let name = &tool.name;
    let fields = match parameters(&tool.parameters) {
        fields if fields.is_empty() => "ready: true once the caller wants it".into(),
        fields => fields,
    };
    let mut rules = format!(
        "Answer with exactly one JSON object. Its \"{ACTION}\" says what the caller wants \
         now.\n\
         - {{\"{ACTION}\": \"{name}\", \"heard\": {{...}}, \"say\": \"...\"}} when the caller \
         is answering you about this step: in \"heard\", what the caller has told you for \
         {name} ({fields}), null for anything not said yet; in \"say\", your next words to \
         the caller, short and spoken. As soon as everything in \"heard\" is known, {name} is \
         done for you.\n"
    );
    if !others.is_empty() {
        rules.push_str(&format!(
            "- {{\"{ACTION}\": \"NAME\", \"arguments\": {{...}}}} when the caller wants one of \
             these instead (you will see its result and answer again):\n"
        ));
        push_tool_lines(&mut rules, others);
    }
    rules
}

/// `- name(arguments): description`, a line per tool.
fn push_tool_lines(rules: &mut String, tools: &[&ToolSpec]) {
    for tool in tools {
        rules.push_str(&format!(
            "- {}({}): {}\n",
            tool.name,
            parameters(&tool.parameters),
            tool.description
        ));
    }
}

/// `name: type, ...` of a JSON schema's properties (enums as their values).
fn parameters(schema: &Value) -> String {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    properties
        .iter()
        .map(|(name, property)| format!("{name}: {}", type_of(property)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_of(property: &Value) -> String {
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return values.join(" | ");
    }
    match property.get("type").and_then(Value::as_str) {
        Some("array") => format!(
            "list of {}",
            property.get("items").map_or("values".into(), type_of)
        ),
        Some(kind) => kind.to_string(),
        None => "value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            instructions: "You take orders.".into(),
            items: vec![
                ChatItem::Message {
                    role: ChatRole::Assistant,
                    text: "What would you like?".into(),
                },
                ChatItem::Message {
                    role: ChatRole::User,
                    text: "Two tiramisu".into(),
                },
                ChatItem::FunctionCall {
                    call_id: "1".into(),
                    name: "confirm_item".into(),
                    arguments: r#"{"name":"Tiramisu","quantity":2}"#.into(),
                },
                ChatItem::FunctionOutput {
                    call_id: "1".into(),
                    name: "confirm_item".into(),
                    output: "Confirmed: 2 x Tiramisu at $10.00 each.".into(),
                    is_error: false,
                },
            ],
            tools: vec![Arc::new(ToolSpec {
                name: "confirm_payment".into(),
                description: "Confirm the payment.".into(),
                parameters: serde_json::json!({"type": "object", "properties": {
                    "method": {"type": "string", "enum": ["card", "cash"]},
                    "tip_percentage": {"type": "integer"}}}),
            })],
            purpose: RequestPurpose::Reply,
            fill: None,
        }
    }

    #[test]
    fn the_conversation_is_written_in_the_form_the_model_answers_in() {
        let prompt = render(&request());
        assert!(prompt.starts_with("<|im_start|>system\nYou take orders.\n\nAnswer with"));
        assert!(prompt.contains(
            "- confirm_payment(method: \"card\" | \"cash\", tip_percentage: integer): Confirm the payment."
        ));
        assert!(prompt.contains(
            "<|im_start|>assistant\n{\"say\": \"What would you like?\"}<|im_end|>\n<|im_start|>user\nTwo tiramisu<|im_end|>"
        ));
        assert!(prompt.contains(
            "{\"tool\": \"confirm_item\", \"arguments\": {\"name\":\"Tiramisu\",\"quantity\":2}}"
        ));
        assert!(prompt.contains("confirm_item result: Confirmed"));
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn a_filling_step_lists_what_the_caller_may_want_and_writes_calls_as_actions() {
        let mut filling = request();
        filling.tools.push(Arc::new(ToolSpec {
            name: "cancel_item".into(),
            description: "Cancel this item.".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        }));
        filling.fill = Some("confirm_payment".into());
        let prompt = render(&filling);
        assert!(prompt.contains(
            "{\"action\": \"confirm_payment\", \"heard\": {...}, \"say\": \"...\"} when the caller is answering"
        ));
        assert!(prompt.contains("- cancel_item(): Cancel this item."));
        assert!(
            !prompt.contains("- confirm_payment("),
            "the filled tool is not offered twice"
        );
        assert!(prompt.contains(
            "{\"action\": \"confirm_item\", \"arguments\": {\"name\":\"Tiramisu\",\"quantity\":2}}"
        ));
    }

    #[test]
    fn a_prompt_extends_the_previous_one_as_the_conversation_grows() {
        let first = render(&request());
        let mut longer = request();
        longer.items.push(ChatItem::Message {
            role: ChatRole::Assistant,
            text: "How will you pay?".into(),
        });
        let second = render(&longer);
        let shared = first.strip_suffix("<|im_start|>assistant\n").unwrap();
        assert!(second.starts_with(shared), "the cached prefix stays valid");
    }
}
