//! The conversation as the model sees it: an ordered list of typed items.

use serde::Serialize;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions or context from the application.
    System,
    /// The caller.
    User,
    /// The agent.
    Assistant,
}

/// One entry of a [`ChatContext`].
///
/// A closed set: every consumer matches all variants, so a new kind of item is a compile
/// error everywhere it needs a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatItem {
    /// A plain text message.
    Message {
        /// Who wrote it.
        role: ChatRole,
        /// The text.
        text: String,
    },
    /// The model asked for a tool to run.
    FunctionCall {
        /// Identifier that pairs the call with its output.
        call_id: String,
        /// Tool name.
        name: String,
        /// Arguments as the model wrote them (JSON text, possibly malformed).
        arguments: String,
    },
    /// What a tool returned (or the error the model should read).
    FunctionOutput {
        /// The call this answers.
        call_id: String,
        /// Tool name, for readers of the context.
        name: String,
        /// Output text.
        output: String,
        /// Whether `output` describes an error.
        is_error: bool,
    },
}

impl ChatItem {
    /// A message item.
    pub fn message(role: ChatRole, text: impl Into<String>) -> Self {
        ChatItem::Message {
            role,
            text: text.into(),
        }
    }

    /// Whether this item is part of a tool exchange (a call or its output).
    pub fn is_function_item(&self) -> bool {
        match self {
            ChatItem::Message { .. } => false,
            ChatItem::FunctionCall { .. } | ChatItem::FunctionOutput { .. } => true,
        }
    }
}

/// The conversation so far, oldest first.
///
/// Instructions are not stored here: the active agent supplies them with every request,
/// so handing the session from one agent to another never leaves stale instructions behind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ChatContext {
    items: Vec<ChatItem>,
}

impl ChatContext {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// All items, oldest first.
    pub fn items(&self) -> &[ChatItem] {
        &self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends one item.
    pub fn push(&mut self, item: ChatItem) {
        self.items.push(item);
    }

    /// Appends a text message.
    pub fn add_message(&mut self, role: ChatRole, text: impl Into<String>) {
        self.push(ChatItem::message(role, text));
    }

    /// The items appended after the first `start` items.
    pub fn since(&self, start: usize) -> &[ChatItem] {
        self.items.get(start..).unwrap_or(&[])
    }

    /// Appends `items`, leaving out tool calls and outputs unless `keep_function_items`.
    ///
    /// This is how a finished task's conversation joins its parent's: the parent keeps what
    /// was said, not the mechanics of how the task got there.
    pub fn merge<'a>(
        &mut self,
        items: impl IntoIterator<Item = &'a ChatItem>,
        keep_function_items: bool,
    ) {
        self.items.extend(
            items
                .into_iter()
                .filter(|item| keep_function_items || !item.is_function_item())
                .cloned(),
        );
    }

    /// Sets the text of the message at `index`; an empty text removes the message. Other
    /// kinds of item are left as they are.
    pub fn replace_message_text(&mut self, index: usize, text: &str) {
        let Some(ChatItem::Message { text: old, .. }) = self.items.get_mut(index) else {
            return;
        };
        if text.is_empty() {
            self.items.remove(index);
        } else {
            *old = text.to_string();
        }
    }

    /// Drops every item after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
    }

    /// The text of the last message from `role`, if any.
    pub fn last_message(&self, role: ChatRole) -> Option<&str> {
        self.messages_from(role).next()
    }

    /// The texts of the messages from `role`, last first.
    pub fn messages_from(&self, role: ChatRole) -> impl Iterator<Item = &str> {
        self.items.iter().rev().filter_map(move |item| match item {
            ChatItem::Message { role: r, text } if *r == role => Some(text.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_leaves_out_function_items_unless_asked() {
        let mut task = ChatContext::new();
        task.add_message(ChatRole::User, "two bruschetta");
        task.push(ChatItem::FunctionCall {
            call_id: "c1".into(),
            name: "confirm_item".into(),
            arguments: "{}".into(),
        });
        task.push(ChatItem::FunctionOutput {
            call_id: "c1".into(),
            name: "confirm_item".into(),
            output: "ok".into(),
            is_error: false,
        });
        let mut parent = ChatContext::new();
        parent.merge(task.items(), false);
        assert_eq!(parent.len(), 1);
        parent.merge(task.since(1), true);
        assert_eq!(parent.len(), 3);
    }

    #[test]
    fn since_past_the_end_is_empty() {
        let ctx = ChatContext::new();
        assert!(ctx.since(5).is_empty());
    }
}
