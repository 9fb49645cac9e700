//! Turns a [`ChatRequest`] into the Chat Completions request body.
//!
//! The chat context is a flat list of typed items; the wire format groups them into
//! messages: the instructions become the first system message, tool calls made in one turn
//! become one assistant message (together with the text the assistant said just before
//! them), and every tool output is a `tool` message that names its call.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject,
};

use crate::llm::{ChatItem, ChatRequest, ChatRole, ToolSpec};

/// The streamed Chat Completions request for `request`.
///
/// When tools are offered, `parallel_tool_calls` is off: a task completes on one call, and
/// a second call in the same response would act on a task that has already ended.
pub(super) fn wire_request(
    request: &ChatRequest,
    model: &str,
    temperature: Option<f32>,
) -> CreateChatCompletionRequest {
    let tools: Vec<ChatCompletionTools> =
        request.tools.iter().map(|tool| wire_tool(tool)).collect();
    let parallel_tool_calls = (!tools.is_empty()).then_some(false);
    CreateChatCompletionRequest {
        model: model.to_owned(),
        messages: wire_messages(&request.instructions, &request.items),
        stream: Some(true),
        temperature,
        parallel_tool_calls,
        tools: (!tools.is_empty()).then_some(tools),
        ..Default::default()
    }
}

/// The messages for `instructions` followed by `items`, oldest first.
fn wire_messages(instructions: &str, items: &[ChatItem]) -> Vec<ChatCompletionRequestMessage> {
    let mut messages = Vec::with_capacity(items.len() + 1);
    if !instructions.is_empty() {
        messages.push(system_message(instructions));
    }
    for item in items {
        match item {
            ChatItem::Message { role, text } => messages.push(match role {
                ChatRole::System => system_message(text),
                ChatRole::User => user_message(text),
                ChatRole::Assistant => assistant_message(Some(text)),
            }),
            ChatItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => add_tool_call(&mut messages, call_id, name, arguments),
            ChatItem::FunctionOutput {
                call_id, output, ..
            } => messages.push(ChatCompletionRequestMessage::Tool(
                ChatCompletionRequestToolMessage {
                    content: ChatCompletionRequestToolMessageContent::Text(output.clone()),
                    tool_call_id: call_id.clone(),
                },
            )),
        }
    }
    messages
}

/// Appends a tool call to the assistant message just before it, or starts one.
fn add_tool_call(
    messages: &mut Vec<ChatCompletionRequestMessage>,
    call_id: &str,
    name: &str,
    arguments: &str,
) {
    let call = ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
        id: call_id.to_owned(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        },
    });
    match messages.last_mut() {
        Some(ChatCompletionRequestMessage::Assistant(assistant)) => {
            assistant.tool_calls.get_or_insert_with(Vec::new).push(call);
        }
        _ => messages.push(ChatCompletionRequestMessage::Assistant(
            ChatCompletionRequestAssistantMessage {
                tool_calls: Some(vec![call]),
                ..Default::default()
            },
        )),
    }
}

fn system_message(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
        content: ChatCompletionRequestSystemMessageContent::Text(text.to_owned()),
        name: None,
    })
}

fn user_message(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
        content: ChatCompletionRequestUserMessageContent::Text(text.to_owned()),
        name: None,
    })
}

fn assistant_message(text: Option<&str>) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
        content: text
            .map(|text| ChatCompletionRequestAssistantMessageContent::Text(text.to_owned())),
        ..Default::default()
    })
}

fn wire_tool(tool: &ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: tool.name.clone(),
            description: (!tool.description.is_empty()).then(|| tool.description.clone()),
            parameters: Some(tool.parameters.clone()),
            strict: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::llm::RequestPurpose;

    fn call(id: &str, name: &str) -> ChatItem {
        ChatItem::FunctionCall {
            call_id: id.into(),
            name: name.into(),
            arguments: "{}".into(),
        }
    }

    fn output(id: &str, text: &str) -> ChatItem {
        ChatItem::FunctionOutput {
            call_id: id.into(),
            name: "tool".into(),
            output: text.into(),
            is_error: false,
        }
    }

    fn request(items: Vec<ChatItem>, tools: Vec<ToolSpec>) -> ChatRequest {
        ChatRequest {
            instructions: "You take orders.".into(),
            items,
            tools: tools.into_iter().map(std::sync::Arc::new).collect(),
            purpose: RequestPurpose::Reply,
            fill: None,
        }
    }

    /// The request as it goes on the wire.
    fn body(request: &ChatRequest) -> Value {
        serde_json::to_value(wire_request(request, "m", None)).expect("serializable")
    }

    /// `role` and, for assistant messages, the ids of their tool calls.
    fn shape(body: &Value) -> Vec<String> {
        let messages = body["messages"].as_array().expect("messages");
        messages
            .iter()
            .map(|message| {
                let role = message["role"].as_str().unwrap_or("?").to_owned();
                match message["tool_calls"].as_array() {
                    Some(calls) => {
                        let ids: Vec<_> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
                        format!("{role}[{}]", ids.join(","))
                    }
                    None => match message["tool_call_id"].as_str() {
                        Some(id) => format!("{role}({id})"),
                        None => role,
                    },
                }
            })
            .collect()
    }

    #[test]
    fn instructions_come_first_then_messages_by_role() {
        let body = body(&request(
            vec![
                ChatItem::message(ChatRole::Assistant, "Welcome!"),
                ChatItem::message(ChatRole::User, "Hi"),
            ],
            vec![],
        ));
        assert_eq!(shape(&body), ["system", "assistant", "user"]);
        assert_eq!(body["messages"][0]["content"], "You take orders.");
        assert_eq!(body["messages"][1]["content"], "Welcome!");
        assert_eq!(body["stream"], true);
        assert!(body.get("tools").is_none());
        assert!(body.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn consecutive_calls_form_one_assistant_message_with_the_text_before_them() {
        let body = body(&request(
            vec![
                ChatItem::message(ChatRole::User, "Two bruschetta and a tip of 18%"),
                ChatItem::message(ChatRole::Assistant, "Adding them."),
                call("c1", "add_item"),
                call("c2", "set_tip"),
                output("c1", "added"),
                output("c2", "tip set"),
                call("c3", "confirm"),
                output("c3", "confirmed"),
                ChatItem::message(ChatRole::Assistant, "Done."),
            ],
            vec![],
        ));
        assert_eq!(
            shape(&body),
            [
                "system",
                "user",
                "assistant[c1,c2]",
                "tool(c1)",
                "tool(c2)",
                "assistant[c3]",
                "tool(c3)",
                "assistant",
            ]
        );
        let merged = &body["messages"][2];
        assert_eq!(merged["content"], "Adding them.");
        assert_eq!(merged["tool_calls"][1]["function"]["name"], "set_tip");
        assert_eq!(merged["tool_calls"][1]["type"], "function");
        assert!(body["messages"][5].get("content").is_none());
        assert_eq!(body["messages"][6]["content"], "confirmed");
    }

    #[test]
    fn tools_carry_their_schema_and_forbid_parallel_calls() {
        let parameters = json!({"type": "object", "properties": {"percent": {"type": "integer"}}});
        let tool = ToolSpec {
            name: "set_tip".into(),
            description: "Sets the tip.".into(),
            parameters: parameters.clone(),
        };
        let body = body(&request(vec![], vec![tool]));
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "set_tip");
        assert_eq!(body["tools"][0]["function"]["parameters"], parameters);
        assert_eq!(body["parallel_tool_calls"], false);
    }

    #[test]
    fn empty_instructions_send_no_system_message() {
        let mut request = request(vec![ChatItem::message(ChatRole::User, "Hi")], vec![]);
        request.instructions.clear();
        assert_eq!(shape(&body(&request)), ["user"]);
    }
}
