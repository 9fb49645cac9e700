//! How a [`ChatRequest`] is written out for a local model with a ChatML chat template (the
//! Qwen2.5 family and most small instruct models): the instructions and the rules of the
//! reply format as the system message, the conversation in the same form the model answers
//! in, and an open assistant turn.
//!
//! The model answers with one JSON object (see [`super::reply`]): `{"say": ...}` or
//! `{"tool": ..., "arguments": ...}`. Earlier replies and tool calls are written back in
//! that same form, so the model sees its own conventions, and the prompt of the next turn
//! starts with the same tokens as this one (the key-value cache is reused).

use serde_json::Value;

use crate::llm::{ChatItem, ChatRequest, ChatRole, RequestPurpose, ToolSpec};

/// The prompt for `request`.
pub fn render(request: &ChatRequest) -> String {
    let mut prompt = String::with_capacity(4096);
    let mut system = request.instructions.trim().to_string();
    let fill = request
        .fill
        .as_deref()
        .and_then(|name| request.tools.iter().find(|tool| tool.name == name));
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
                let written = if fill.is_some_and(|tool| tool.name == *name) {
                    heard_json(arguments)
                } else {
                    call_json(name, arguments)
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
    let arguments: Value =
        serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()));
    format!(
        "{{\"tool\": {}, \"arguments\": {}}}",
        Value::String(name.to_string()),
        arguments
    )
}

/// `{"heard": {...}}`: a filled call, as the model wrote it (before its words, which were
/// not needed).
pub fn heard_json(arguments: &str) -> String {
    let arguments: Value =
        serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()));
    format!("{{\"heard\": {arguments}}}")
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
fn reply_rules(tools: &[ToolSpec], fill: Option<&ToolSpec>) -> String {
    let mut rules = String::from("Answer with exactly one JSON object:\n");
    match fill {
        Some(tool) => {
            let fields = match parameters(&tool.parameters) {
                fields if fields.is_empty() => "ready: true once the caller wants it".into(),
                fields => fields,
            };
            rules.push_str(&format!(
                "{{\"heard\": {{...}}, \"say\": \"...\"}}: in \"heard\", what the caller has \
                 told you for {} ({fields}), null for anything not said yet; in \"say\", your \
                 next words to the caller, short and spoken. As soon as everything in \"heard\" \
                 is known, {} is done for you.\n",
                tool.name, tool.name
            ));
        }
        None => rules
            .push_str("{\"say\": \"...\"} with your next words to the caller, short and spoken.\n"),
    }
    let others: Vec<&ToolSpec> = tools
        .iter()
        .filter(|tool| fill.is_none_or(|filled| filled.name != tool.name))
        .collect();
    if others.is_empty() {
        return rules;
    }
    rules.push_str(
        "Or {\"tool\": \"NAME\", \"arguments\": {...}} to use one of these tools; you will see \
         its result and answer again:\n",
    );
    for tool in others {
        rules.push_str(&format!(
            "- {}({}): {}\n",
            tool.name,
            parameters(&tool.parameters),
            tool.description
        ));
    }
    rules
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
            tools: vec![ToolSpec {
                name: "confirm_payment".into(),
                description: "Confirm the payment.".into(),
                parameters: serde_json::json!({"type": "object", "properties": {
                    "method": {"type": "string", "enum": ["card", "cash"]},
                    "tip_percentage": {"type": "integer"}}}),
            }],
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
