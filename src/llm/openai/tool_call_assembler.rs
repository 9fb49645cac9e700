//! Reassembles streamed tool-call fragments into complete [`ToolCall`]s.
//!
//! A streamed chat completion sends each tool call in pieces: the first fragment of a call
//! usually carries its `index`, `id` and function name, later fragments only more of the
//! arguments text. Several calls may be streamed in one response, and their fragments may
//! interleave. The assembler is pure (no I/O, no clock): push every fragment as it arrives,
//! then [`ToolCallAssembler::finish`] once the response is complete.

use std::collections::HashMap;

use async_openai::types::chat::ChatCompletionMessageToolCallChunk;

use crate::llm::ToolCall;

/// Collects tool-call fragments of one response, keyed by their `index`.
#[derive(Debug)]
pub(super) struct ToolCallAssembler {
    id_prefix: String,
    calls: Vec<PartialCall>,
    slot_by_index: HashMap<u32, usize>,
}

/// One call being assembled.
#[derive(Debug)]
struct PartialCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

impl ToolCallAssembler {
    /// An empty assembler. Calls that arrive without an id get `{id_prefix}_{n}`, so the
    /// prefix should be unique per response.
    pub(super) fn new(id_prefix: impl Into<String>) -> Self {
        Self {
            id_prefix: id_prefix.into(),
            calls: Vec::new(),
            slot_by_index: HashMap::new(),
        }
    }

    /// Adds one fragment.
    ///
    /// A fragment whose id differs from the id already seen at its index starts a new call:
    /// some OpenAI-compatible servers number every call 0 and tell them apart by id only.
    pub(super) fn push(&mut self, fragment: ChatCompletionMessageToolCallChunk) {
        let id = fragment.id.filter(|id| !id.is_empty());
        let slot = match self.slot_by_index.get(&fragment.index) {
            Some(&slot) if !self.starts_new_call(slot, id.as_deref()) => slot,
            _ => self.open_slot(fragment.index),
        };
        let call = &mut self.calls[slot];
        if let Some(id) = id {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|name| !name.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    /// The complete calls, ordered by index (then by arrival).
    ///
    /// A call without an id gets a generated one; empty arguments become `"{}"`; a call
    /// that never received a name is dropped, since nothing could run it.
    pub(super) fn finish(self) -> Vec<ToolCall> {
        let mut calls = self.calls;
        calls.sort_by_key(|call| call.index);
        calls
            .into_iter()
            .filter(|call| !call.name.is_empty())
            .enumerate()
            .map(|(position, call)| ToolCall {
                call_id: if call.id.is_empty() {
                    format!("{}_{position}", self.id_prefix)
                } else {
                    call.id
                },
                name: call.name,
                arguments: if call.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    call.arguments
                },
            })
            .collect()
    }

    fn starts_new_call(&self, slot: usize, id: Option<&str>) -> bool {
        let current = &self.calls[slot].id;
        matches!(id, Some(id) if !current.is_empty() && current != id)
    }

    fn open_slot(&mut self, index: u32) -> usize {
        self.calls.push(PartialCall {
            index,
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
        let slot = self.calls.len() - 1;
        self.slot_by_index.insert(index, slot);
        slot
    }
}

#[cfg(test)]
mod tests {
    use async_openai::types::chat::FunctionCallStream;

    use super::*;

    fn fragment(
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) -> ChatCompletionMessageToolCallChunk {
        ChatCompletionMessageToolCallChunk {
            index,
            id: id.map(str::to_owned),
            r#type: None,
            function: Some(FunctionCallStream {
                name: name.map(str::to_owned),
                arguments: arguments.map(str::to_owned),
            }),
        }
    }

    fn arguments_fragments(index: u32, arguments: &str) -> Vec<ChatCompletionMessageToolCallChunk> {
        arguments
            .as_bytes()
            .chunks(3)
            .map(|piece| {
                let piece = std::str::from_utf8(piece).expect("ascii test input");
                fragment(index, None, None, Some(piece))
            })
            .collect()
    }

    #[test]
    fn two_calls_with_interleaved_argument_fragments() {
        let mut assembler = ToolCallAssembler::new("gen");
        assembler.push(fragment(0, Some("call_a"), Some("add_item"), Some("")));
        assembler.push(fragment(1, Some("call_b"), Some("set_tip"), None));
        let first = arguments_fragments(0, r#"{"item":"bruschetta","quantity":2}"#);
        let second = arguments_fragments(1, r#"{"percent":18}"#);
        let mut second = second.into_iter();
        for piece in first {
            assembler.push(piece);
            if let Some(other) = second.next() {
                assembler.push(other);
            }
        }
        second.for_each(|piece| assembler.push(piece));

        let calls = assembler.finish();
        assert_eq!(
            calls,
            vec![
                ToolCall {
                    call_id: "call_a".into(),
                    name: "add_item".into(),
                    arguments: r#"{"item":"bruschetta","quantity":2}"#.into(),
                },
                ToolCall {
                    call_id: "call_b".into(),
                    name: "set_tip".into(),
                    arguments: r#"{"percent":18}"#.into(),
                },
            ]
        );
    }

    #[test]
    fn a_missing_id_is_generated_and_empty_arguments_become_an_empty_object() {
        let mut assembler = ToolCallAssembler::new("call_r7");
        assembler.push(fragment(0, None, Some("confirm_order"), None));
        assembler.push(fragment(1, Some(""), Some("cancel"), Some("  ")));
        let calls = assembler.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].call_id, "call_r7_0");
        assert_eq!(calls[0].arguments, "{}");
        assert_eq!(calls[1].call_id, "call_r7_1");
        assert_eq!(calls[1].arguments, "{}");
    }

    #[test]
    fn calls_are_ordered_by_index_not_arrival() {
        let mut assembler = ToolCallAssembler::new("gen");
        assembler.push(fragment(1, Some("b"), Some("second"), Some("{}")));
        assembler.push(fragment(0, Some("a"), Some("first"), Some("{}")));
        let names: Vec<_> = assembler.finish().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["first", "second"]);
    }

    #[test]
    fn a_new_id_at_a_reused_index_starts_a_new_call() {
        let mut assembler = ToolCallAssembler::new("gen");
        assembler.push(fragment(0, Some("a"), Some("first"), Some(r#"{"x":"#)));
        assembler.push(fragment(0, Some("a"), None, Some("1}")));
        assembler.push(fragment(0, Some("b"), Some("second"), Some("{}")));
        let calls = assembler.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(
            (calls[1].call_id.as_str(), calls[1].name.as_str()),
            ("b", "second")
        );
    }

    #[test]
    fn a_call_without_a_name_is_dropped() {
        let mut assembler = ToolCallAssembler::new("gen");
        assembler.push(fragment(0, Some("a"), None, Some("{}")));
        assert!(assembler.finish().is_empty());
    }
}
