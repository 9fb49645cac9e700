//! Compressing a stretch of conversation into one message, so later steps carry what was
//! decided rather than every turn that decided it.

use crate::llm::{ChatItem, ChatRequest, ChatRole, Llm, LlmError, RequestPurpose, collect_text};

/// Default instructions for summaries; a task group may bring its own.
pub const DEFAULT_SUMMARY_INSTRUCTIONS: &str = "Summarize the conversation below in a few \
sentences for the agent that continues it: keep every fact the caller gave and every \
decision made (names, quantities, choices), drop small talk. Write plain text, no preamble.";

/// Prefix of the message that replaces summarized turns in a chat context.
pub const SUMMARY_PREFIX: &str = "[Summary of the conversation so far] ";

/// Asks the model for a summary of `items` (messages only; tool mechanics are left out).
///
/// The turns are sent as one transcript in a single user message, so the model describes
/// the conversation instead of continuing it.
pub async fn summarize(
    llm: &dyn Llm,
    items: &[ChatItem],
    instructions: &str,
) -> Result<String, LlmError> {
    let transcript = transcript_of(items);
    let request = ChatRequest {
        instructions: instructions.to_string(),
        items: vec![ChatItem::message(ChatRole::User, transcript)],
        tools: Vec::new(),
        purpose: RequestPurpose::Summary,
        fill: None,
    };
    let summary = collect_text(llm.chat(request)).await?;
    let summary = summary.trim();
    if summary.is_empty() {
        return Err(LlmError::InvalidResponse("the summary was empty".into()));
    }
    Ok(summary.to_string())
}

/// The messages of `items` as `Caller: ...` / `Agent: ...` lines.
pub fn transcript_of(items: &[ChatItem]) -> String {
    let mut lines = Vec::new();
    for item in items {
        match item {
            ChatItem::Message { role, text } => {
                let speaker = match role {
                    ChatRole::User => "Caller",
                    ChatRole::Assistant => "Agent",
                    ChatRole::System => "Note",
                };
                lines.push(format!("{speaker}: {text}"));
            }
            ChatItem::FunctionCall { .. } | ChatItem::FunctionOutput { .. } => {}
        }
    }
    lines.join("\n")
}

/// The message item that stands for a summary in a chat context.
pub fn summary_item(summary: &str) -> ChatItem {
    ChatItem::message(ChatRole::Assistant, format!("{SUMMARY_PREFIX}{summary}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_leaves_out_function_items() {
        let items = vec![
            ChatItem::message(ChatRole::User, "two tiramisu"),
            ChatItem::FunctionCall {
                call_id: "1".into(),
                name: "confirm_item".into(),
                arguments: "{}".into(),
            },
            ChatItem::message(ChatRole::Assistant, "Done."),
        ];
        assert_eq!(transcript_of(&items), "Caller: two tiramisu\nAgent: Done.");
    }
}
