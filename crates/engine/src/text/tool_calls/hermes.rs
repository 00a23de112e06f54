//! Hermes-style tool calls (Nous Hermes, Qwen 2.5, and llama-architecture fine-tunes trained on them):
//! optional text, then one or more `<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks. The
//! closing tag of the last block may be missing when the end-of-turn token came first.

use serde_json::Value;

use super::{ToolCalls, call_from_object};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The keys a call's arguments may be under.
const ARGUMENT_KEYS: [&str; 2] = ["arguments", "parameters"];

/// The text before the first block and the blocks' calls, or `None` unless everything from the first
/// `<tool_call>` on is well-formed blocks.
pub fn parse(text: &str) -> Option<ToolCalls> {
    let start = text.find(OPEN)?;
    let content = text[..start].trim();
    let mut rest = &text[start..];
    let mut calls = Vec::new();
    while let Some(after_open) = rest.strip_prefix(OPEN) {
        let (body, after) = match after_open.find(CLOSE) {
            Some(end) => (&after_open[..end], &after_open[end + CLOSE.len()..]),
            None => (after_open, ""),
        };
        let value: Value = serde_json::from_str(body.trim()).ok()?;
        calls.push(call_from_object(&value, &ARGUMENT_KEYS)?);
        rest = after.trim_start();
    }
    if !rest.is_empty() {
        return None;
    }
    Some(ToolCalls { content: (!content.is_empty()).then(|| content.to_string()), calls })
}

/// Where a stream must start holding text back: at `<tool_call>`, or at a tail of the text that
/// could be its first characters; `None` when neither occurs.
pub fn held_from(text: &str) -> Option<usize> {
    if let Some(at) = text.find(OPEN) {
        return Some(at);
    }
    (1..OPEN.len()).rev().find(|&k| text.ends_with(&OPEN[..k])).map(|k| text.len() - k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tool_calls::ParsedCall;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall { name: name.into(), arguments: arguments.into() }
    }

    #[test]
    fn blocks_after_optional_text() {
        let out = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        assert_eq!(
            parse(out).unwrap(),
            ToolCalls { content: None, calls: vec![call("get_weather", r#"{"city":"Paris"}"#)] }
        );
        let out = "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1]}}\n";
        assert_eq!(
            parse(out).unwrap(),
            ToolCalls {
                content: Some("Let me check both.".into()),
                calls: vec![call("a", "{}"), call("b", r#"{"x":[1]}"#)]
            }
        );
    }

    #[test]
    fn malformed_blocks_are_plain_text() {
        for out in [
            "No tools needed.",
            "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1\n</tool_call>",
            "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"a\"}\n</tool_call> trailing words",
            "<tool_call></tool_call>",
            "<tool_call>",
        ] {
            assert_eq!(parse(out), None, "{out}");
        }
    }

    #[test]
    fn a_stream_holds_back_from_the_tag_or_its_first_characters() {
        assert_eq!(held_from("Sure. <tool_call>{"), Some(6));
        assert_eq!(held_from("Sure. <tool_c"), Some(6));
        assert_eq!(held_from("a < b"), None);
        assert_eq!(held_from("a <"), Some(2));
        assert_eq!(held_from("plain"), None);
    }
}
