//! Llama 3.1 / 3.3 JSON tool calls: `{"name": "get_weather", "parameters": {"city": "Paris"}}`,
//! optionally after `<|python_tag|>` (when the tokenizer shows it), several separated by `;` (or
//! written as a JSON list). Meta's templates say `parameters`; models fine-tuned elsewhere often write
//! `arguments`, so both are read.

use serde_json::Value;

use super::{ParsedCall, call_from_object};

/// The marker Llama 3.1 writes before a call.
const PYTHON_TAG: &str = "<|python_tag|>";

/// The keys a call's arguments may be under.
const ARGUMENT_KEYS: [&str; 2] = ["parameters", "arguments"];

/// The output's calls, or `None` unless all of it is calls.
pub fn parse(text: &str) -> Option<Vec<ParsedCall>> {
    let mut rest = text.trim();
    rest = rest.strip_prefix(PYTHON_TAG).unwrap_or(rest).trim_start();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let consumed = values.byte_offset();
        match &value {
            Value::Array(items) => {
                for item in items {
                    calls.push(call_from_object(item, &ARGUMENT_KEYS)?);
                }
            }
            _ => calls.push(call_from_object(&value, &ARGUMENT_KEYS)?),
        }
        rest = rest[consumed..].trim_start();
        if let Some(after) = rest.strip_prefix(';') {
            rest = after.trim_start();
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// Whether an output that has begun like `text` may still turn out to be calls: nothing but
/// whitespace yet, the start of `<|python_tag|>`, or a `{` / `[` first.
pub fn may_be_call(text: &str) -> bool {
    let start = text.trim_start();
    start.is_empty()
        || start.starts_with('{')
        || start.starts_with('[')
        || start.starts_with(PYTHON_TAG)
        || PYTHON_TAG.starts_with(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall { name: name.into(), arguments: arguments.into() }
    }

    #[test]
    fn one_call_as_llama_3_1_writes_it() {
        let out =
            r#"{"name": "get_current_weather", "parameters": {"location": "San Francisco, CA", "unit": "celsius"}}"#;
        assert_eq!(
            parse(out).unwrap(),
            [call("get_current_weather", r#"{"location":"San Francisco, CA","unit":"celsius"}"#)]
        );
    }

    #[test]
    fn after_the_python_tag_and_several_separated_by_semicolons() {
        let out = "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"arguments\": {}}\n";
        assert_eq!(parse(out).unwrap(), [call("a", r#"{"x":1}"#), call("b", "{}")]);
        let list = r#"[{"name": "a", "parameters": {"x": 1}}, {"name": "b", "parameters": {"y": "z"}}]"#;
        assert_eq!(parse(list).unwrap(), [call("a", r#"{"x":1}"#), call("b", r#"{"y":"z"}"#)]);
    }

    #[test]
    fn pre_serialized_arguments_and_missing_parameters() {
        let out = r#"{"name": "f", "parameters": "{\"q\": \"rust\"}"}"#;
        assert_eq!(parse(out).unwrap(), [call("f", r#"{"q": "rust"}"#)]);
        assert_eq!(parse(r#"{"name": "now"}"#).unwrap(), [call("now", "{}")]);
    }

    #[test]
    fn anything_but_calls_is_plain_text() {
        for out in [
            "",
            "The weather in Paris is sunny.",
            r#"{"name": "get_weather", "parameters": {"city": "Par"#,
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}} Let me know if you need more."#,
            r#"{"city": "Paris"}"#,
            r#"{"name": 3, "parameters": {}}"#,
            r#"{"name": "", "parameters": {}}"#,
            r#"{"name": "f", "parameters": [1, 2]}"#,
            r#"{"name": "f", "parameters": "not json"}"#,
            r#"[{"name": "f"}, 3]"#,
            "[]",
            "{}}}}",
            "<|python_tag|>",
            "<|python_tag|>print('hello')",
        ] {
            assert_eq!(parse(out), None, "{out}");
        }
    }

    #[test]
    fn a_stream_holds_back_only_what_may_be_a_call() {
        for start in ["", "  ", "{", " {\"na", "<|pyt", "<|python_tag|>{", "["] {
            assert!(may_be_call(start), "{start:?}");
        }
        for start in ["The", " I can", "<|im_end|>", "<b>"] {
            assert!(!may_be_call(start), "{start:?}");
        }
    }
}
