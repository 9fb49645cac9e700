//! The one form a local model may answer in: `{"say": "..."}` or `{"tool": NAME,
//! "arguments": {...}}` for one of the tools offered in this step, with that tool's
//! argument schema. Decoding is constrained to it (a grammar made from [`reply_schema`]), so
//! a small model cannot write a malformed call, call a tool that is not offered, or chat
//! and call at once; [`ReplyParser`] reads it as it is generated, so the words to say
//! stream out before the reply is complete.
//!
//! A step that fills a tool (see [`Fill`]) opens every reply with a closed choice instead:
//! `{"action": NAME, ...}`, the filled tool when the caller is answering the step
//! (`"heard"` and `"say"` follow) or another offered tool (its `"arguments"` follow). A
//! small model rarely decides on its own to leave the form it is filling for another tool;
//! asked first, in one word from a fixed list, what the caller wants, it does.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::llm::{ToolCall, ToolSpec};

/// Longest `say`, in characters: one or two spoken sentences (a model that rambles is cut).
const MAX_SAY_CHARS: u64 = 400;

/// A field of a filled tool with no arguments: whether the caller wants it now.
pub const READY: &str = "ready";

/// The first field of a reply in a step that fills a tool: which tool the caller's words
/// are for.
pub const ACTION: &str = "action";

/// The tool a reply fills, and which of its arguments must be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// The tool.
    pub tool: String,
    /// Its required arguments; empty for a tool without arguments (then [`READY`] must be
    /// true).
    pub required: Vec<String>,
}

impl Fill {
    /// The fill for `name` among `tools`, when offered.
    pub fn of(name: &str, tools: &[Arc<ToolSpec>]) -> Option<Fill> {
        let tool = tools.iter().find(|tool| tool.name == name)?;
        let required = tool.parameters["required"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Some(Fill {
            tool: name.to_string(),
            required,
        })
    }
}

/// The JSON schema of what the caller said for each argument of `tool`: the argument's
/// own schema or `null`, every one present; a tool without arguments gets [`READY`].
fn heard_schema(tool: &ToolSpec) -> Value {
    let mut properties = serde_json::Map::new();
    if let Some(arguments) = tool.parameters["properties"].as_object() {
        for (name, schema) in arguments {
            let mut schema = schema.clone();
            if let Some(object) = schema.as_object_mut() {
                object.remove("description");
            }
            properties.insert(name.clone(), json!({"anyOf": [schema, {"type": "null"}]}));
        }
    }
    if properties.is_empty() {
        properties.insert(
            READY.into(),
            json!({"anyOf": [{"type": "boolean"}, {"type": "null"}]}),
        );
    }
    let names: Vec<&String> = properties.keys().collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": false,
    })
}

/// The JSON schema of a reply when `tools` are offered, filling `fill` if named.
/// Properties are listed in the order the model writes them (llama.cpp's grammar keeps
/// the schema's order).
pub fn reply_schema(tools: &[Arc<ToolSpec>], fill: Option<&str>) -> Value {
    let filled = fill.and_then(|name| tools.iter().find(|tool| tool.name == name));
    let say = json!({"type": "string", "maxLength": MAX_SAY_CHARS});
    let (first, key) = match filled {
        Some(tool) => (
            json!({
                "type": "object",
                "properties": {
                    ACTION: {"const": tool.name},
                    "heard": heard_schema(tool),
                    "say": say,
                },
                "required": [ACTION, "heard", "say"],
                "additionalProperties": false,
            }),
            ACTION,
        ),
        None => (
            json!({
                "type": "object",
                "properties": {"say": say},
                "required": ["say"],
                "additionalProperties": false,
            }),
            "tool",
        ),
    };
    let mut forms = vec![first];
    for tool in tools.iter().filter(|tool| Some(tool.name.as_str()) != fill) {
        let mut arguments = tool.parameters.clone();
        if let Some(object) = arguments.as_object_mut() {
            object.remove("description");
            object.entry("additionalProperties").or_insert(json!(false));
        }
        forms.push(json!({
            "type": "object",
            "properties": {key: {"const": tool.name}, "arguments": arguments},
            "required": [key, "arguments"],
            "additionalProperties": false,
        }));
    }
    if forms.len() == 1 {
        forms.remove(0)
    } else {
        json!({ "oneOf": forms })
    }
}

/// What a finished reply asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Say these words.
    Say(String),
    /// Call this tool.
    Call(ToolCall),
}

/// Reads a reply while it is generated.
#[derive(Debug, Default)]
pub struct ReplyParser {
    text: String,
    /// Where the `say` string's content starts in `text`, once seen.
    say_start: Option<usize>,
    /// How far into `text` the `say` string has been decoded.
    say_scanned: usize,
    say_done: bool,
    /// The tool being filled, if any.
    fill: Option<Fill>,
    /// The filled call, once every argument is known.
    filled: Option<Value>,
    /// Whether the `heard` object has closed.
    heard_closed: bool,
}

impl ReplyParser {
    /// A parser for a reply that fills `fill`, if given.
    pub fn new(fill: Option<Fill>) -> Self {
        ReplyParser {
            fill,
            ..ReplyParser::default()
        }
    }

    /// Whether the reply has said enough: the filled tool's arguments are all known, so
    /// the call is made and the words that would follow are not needed.
    pub fn is_complete(&self) -> bool {
        self.filled.is_some()
    }

    /// Adds generated text; returns the words to say that it completed, if any.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.text.push_str(piece);
        if self.fill.is_some() && !self.heard_closed {
            self.read_heard();
            if !self.heard_closed || self.filled.is_some() {
                return None;
            }
        }
        if self.say_start.is_none() {
            self.say_start = say_content_start(&self.text);
            self.say_scanned = self.say_start?;
        }
        if self.say_done {
            return None;
        }
        let (decoded, scanned, done) = decode_string_prefix(&self.text[self.say_scanned..]);
        self.say_scanned += scanned;
        self.say_done = done;
        (!decoded.is_empty()).then_some(decoded)
    }

    /// Looks for the closed `heard` object; when every argument in it is known, keeps
    /// the call.
    fn read_heard(&mut self) {
        let Some(key) = self.text.find("\"heard\"") else {
            return;
        };
        let Some(open) = self.text[key..].find('{').map(|at| key + at) else {
            return;
        };
        let Some(close) = object_end(&self.text[open..]).map(|len| open + len) else {
            return;
        };
        self.heard_closed = true;
        let (Some(fill), Ok(Value::Object(heard))) = (
            &self.fill,
            serde_json::from_str::<Value>(&self.text[open..close]),
        ) else {
            return;
        };
        let known = |name: &str| heard.get(name).is_some_and(|v| !v.is_null());
        let complete = if fill.required.is_empty() {
            heard.get(READY) == Some(&Value::Bool(true)) || !heard.contains_key(READY)
        } else {
            fill.required.iter().all(|name| known(name))
        };
        if complete {
            let arguments: serde_json::Map<String, Value> = heard
                .into_iter()
                .filter(|(name, value)| name != READY && !value.is_null())
                .collect();
            self.filled = Some(Value::Object(arguments));
        }
    }

    /// The whole reply, once generation ended (or stopped because it was complete).
    /// `call_id` names a tool call.
    pub fn finish(self, call_id: String) -> Result<Reply, String> {
        if let (Some(fill), Some(arguments)) = (&self.fill, &self.filled) {
            return Ok(Reply::Call(ToolCall {
                call_id,
                name: fill.tool.clone(),
                arguments: arguments.to_string(),
            }));
        }
        let value: Value = serde_json::from_str(self.text.trim())
            .map_err(|e| format!("not a JSON reply ({e}): {:?}", self.text))?;
        if let Some(say) = value.get("say").and_then(Value::as_str) {
            return Ok(Reply::Say(say.to_string()));
        }
        let name = value
            .get("tool")
            .or_else(|| value.get(ACTION))
            .and_then(Value::as_str);
        match (name, value.get("arguments")) {
            (Some(name), Some(arguments)) => Ok(Reply::Call(ToolCall {
                call_id,
                name: name.to_string(),
                arguments: arguments.to_string(),
            })),
            _ => Err(format!("neither words nor a tool call: {}", self.text)),
        }
    }
}

/// The length of the JSON object at the start of `text` (through its closing brace), if it
/// is complete.
fn object_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '{' | '[') => depth += 1,
            (false, _, '}' | ']') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            (false, _, _) => {}
        }
    }
    None
}

/// Where the content of the `"say"` string starts (just after its opening quote).
fn say_content_start(text: &str) -> Option<usize> {
    let key = text.find("\"say\"")?;
    let rest = &text[key + 5..];
    let colon = rest.find(':')?;
    let after_colon = &rest[colon + 1..];
    let quote = after_colon.find('"')?;
    if !after_colon[..quote].trim().is_empty() {
        return None;
    }
    Some(key + 5 + colon + 1 + quote + 1)
}

/// Decodes as much of a JSON string's content as is complete: the text, how many bytes it
/// took, and whether the closing quote was reached. A trailing partial escape waits.
fn decode_string_prefix(raw: &str) -> (String, usize, bool) {
    let mut out = String::new();
    let mut consumed = 0;
    let mut chars = raw.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, at + 1, true),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    return (out, consumed, false);
                };
                let decoded = match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' | 'f' => ' ',
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        if hex.len() < 4 {
                            return (out, consumed, false);
                        }
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{fffd}')
                    }
                    other => other,
                };
                out.push(decoded);
                consumed = chars.clone().next().map_or(raw.len(), |(next, _)| next);
            }
            c => {
                out.push(c);
                consumed = at + c.len_utf8();
            }
        }
    }
    (out, consumed, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Arc<ToolSpec> {
        Arc::new(ToolSpec {
            name: "confirm_item".into(),
            description: "Confirm the item.".into(),
            parameters: json!({"type": "object", "properties": {"quantity": {"type": "integer"}},
                               "required": ["quantity"]}),
        })
    }

    #[test]
    fn the_schema_allows_words_or_one_offered_tool() {
        let schema = reply_schema(&[tool()], None);
        let forms = schema["oneOf"].as_array().unwrap();
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[1]["properties"]["tool"]["const"], "confirm_item");
        assert_eq!(
            forms[1]["properties"]["arguments"]["additionalProperties"],
            false
        );
        assert_eq!(reply_schema(&[], None)["required"], json!(["say"]));
    }

    #[test]
    fn properties_are_written_in_the_order_the_model_must_write_them() {
        // llama.cpp's grammar takes an object's properties in the order the schema text
        // lists them: the tool's name must come before its arguments (as the prompt shows
        // it), and a tool's arguments in their declared order.
        let confirm = Arc::new(ToolSpec {
            name: "confirm_item".into(),
            description: "Confirm.".into(),
            parameters: json!({"type": "object", "properties": {
                "name": {"type": "string"}, "quantity": {"type": "integer"},
                "modifications": {"type": "array", "items": {"type": "string"}}},
                "required": ["name", "quantity", "modifications"]}),
        });
        let text = reply_schema(&[tool(), confirm.clone()], None).to_string();
        let tool_at = text.find("\"tool\":{\"const\"").unwrap();
        assert!(tool_at < text.find("\"arguments\"").unwrap(), "{text}");
        let heard = reply_schema(&[confirm], Some("confirm_item")).to_string();
        let at = |key: &str| heard.find(&format!("\"{key}\":{{\"anyOf\"")).unwrap();
        assert!(at("name") < at("quantity") && at("quantity") < at("modifications"));
        assert!(heard.find("\"heard\"").unwrap() < heard.find("\"say\"").unwrap());
    }

    #[test]
    fn a_filled_tool_is_heard_first_and_called_once_its_arguments_are_known() {
        let schema = reply_schema(&[tool()], Some("confirm_item"));
        let forms = schema["oneOf"].as_array().map_or(1, Vec::len);
        assert_eq!(forms, 1, "the filled tool has no separate call form");
        assert_eq!(schema["required"], json!(["action", "heard", "say"]));
        let fill = Fill::of("confirm_item", &[tool()]).unwrap();
        let mut partial = ReplyParser::new(Some(fill.clone()));
        assert_eq!(
            partial.push("{\"heard\": {\"quantity\": null}, \"say\": \"How man"),
            Some("How man".into())
        );
        assert!(!partial.is_complete());
        assert_eq!(partial.push("y?\"}"), Some("y?".into()));
        assert_eq!(
            partial.finish("c".into()).unwrap(),
            Reply::Say("How many?".into())
        );
        let mut whole = ReplyParser::new(Some(fill));
        assert_eq!(whole.push("{\"heard\": {\"quantity\": 2}"), None);
        assert!(whole.is_complete());
        assert_eq!(
            whole.finish("c1".into()).unwrap(),
            Reply::Call(ToolCall {
                call_id: "c1".into(),
                name: "confirm_item".into(),
                arguments: "{\"quantity\":2}".into(),
            })
        );
    }

    #[test]
    fn a_filling_step_asks_first_which_tool_the_caller_wants() {
        let cancel = Arc::new(ToolSpec {
            name: "cancel_item".into(),
            description: "Cancel it.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        });
        let tools = [tool(), cancel];
        let schema = reply_schema(&tools, Some("confirm_item"));
        let forms = schema["oneOf"].as_array().unwrap();
        assert_eq!(forms[0]["properties"]["action"]["const"], "confirm_item");
        assert_eq!(forms[1]["properties"]["action"]["const"], "cancel_item");
        assert_eq!(forms[1]["required"], json!(["action", "arguments"]));
        let text = schema.to_string();
        assert!(text.find("\"action\"").unwrap() < text.find("\"heard\"").unwrap());

        let fill = Fill::of("confirm_item", &tools).unwrap();
        let mut answer = ReplyParser::new(Some(fill.clone()));
        answer.push("{\"action\": \"confirm_item\", \"heard\": {\"quantity\": 3}");
        assert!(answer.is_complete());
        let mut other = ReplyParser::new(Some(fill));
        assert_eq!(
            other.push("{\"action\": \"cancel_item\", \"arguments\": {}}"),
            None
        );
        assert!(!other.is_complete());
        assert_eq!(
            other.finish("c2".into()).unwrap(),
            Reply::Call(ToolCall {
                call_id: "c2".into(),
                name: "cancel_item".into(),
                arguments: "{}".into(),
            })
        );
    }

    #[test]
    fn a_tool_without_arguments_is_called_when_the_caller_is_ready() {
        let confirm = Arc::new(ToolSpec {
            name: "confirm_order".into(),
            description: "Place it.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        });
        let fill = Fill::of("confirm_order", std::slice::from_ref(&confirm)).unwrap();
        let mut no = ReplyParser::new(Some(fill.clone()));
        no.push("{\"heard\": {\"ready\": false}, \"say\": \"\"}");
        assert!(!no.is_complete());
        let mut yes = ReplyParser::new(Some(fill));
        yes.push("{\"heard\": {\"ready\": true}");
        assert!(
            matches!(yes.finish("k".into()).unwrap(), Reply::Call(call) if call.arguments == "{}")
        );
    }

    #[test]
    fn words_stream_out_as_they_are_generated() {
        let mut parser = ReplyParser::default();
        let pieces = [
            "{\"sa",
            "y\": \"Two ti",
            "ramisu, \\\"",
            "fine\\\" \\u00e9",
            "!\"}",
        ];
        let said: Vec<Option<String>> = pieces.iter().map(|p| parser.push(p)).collect();
        assert_eq!(
            said,
            vec![
                None,
                Some("Two ti".into()),
                Some("ramisu, \"".into()),
                Some("fine\" é".into()),
                Some("!".into())
            ]
        );
        assert_eq!(
            parser.finish("c".into()).unwrap(),
            Reply::Say("Two tiramisu, \"fine\" é!".into())
        );
    }

    #[test]
    fn a_partial_escape_waits_for_the_rest() {
        assert_eq!(decode_string_prefix("ab\\"), ("ab".into(), 2, false));
        assert_eq!(decode_string_prefix("ab\\u00"), ("ab".into(), 2, false));
        assert_eq!(
            decode_string_prefix("a\\nb\" rest"),
            ("a\nb".into(), 5, true)
        );
    }

    #[test]
    fn a_tool_call_is_read_at_the_end() {
        let mut parser = ReplyParser::default();
        assert_eq!(
            parser.push("{\"tool\": \"confirm_item\", \"arguments\": {\"quantity\": 2}}"),
            None
        );
        assert_eq!(
            parser.finish("k1".into()).unwrap(),
            Reply::Call(ToolCall {
                call_id: "k1".into(),
                name: "confirm_item".into(),
                arguments: "{\"quantity\":2}".into(),
            })
        );
        assert!(ReplyParser::default().finish("x".into()).is_err());
    }
}
