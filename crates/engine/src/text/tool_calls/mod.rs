//! Tool calls in a model's output: the three formats the Llama family writes them in, one module each,
//! behind one [`ToolCallFormat`] chosen from the chat template (or a model's `tool_call_format` key).
//!
//! - [`llama_json`] — Llama 3.1 / 3.3: `{"name": …, "parameters": {…}}`, optionally after
//!   `<|python_tag|>`, several separated by `;`. Also the format this server teaches a model whose
//!   template knows no tools ([`crate::text::tool_prompt`]).
//! - [`pythonic`] — Llama 3.2 (and 4): a Python list of calls, `[get_weather(city="Paris"), now()]`.
//! - [`hermes`] — Hermes / Qwen style: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, after
//!   optional text.
//!
//! Parsing is all-or-nothing: an output that is not entirely well-formed calls (a sentence that happens
//! to start with `{`, a truncated call) is plain text, never an error and never half a call list. What a
//! model is made to call (a named `tool_choice`) is primed into the prompt ([`ToolCallFormat::primer`]) and
//! always answered as that call ([`ToolCallFormat::parse_primed`]).

pub mod hermes;
pub mod llama_json;
pub mod pythonic;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How a model writes tool calls (`tool_call_format` in a model's config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// Llama 3.1 / 3.3 JSON objects; the default, and what a template without tools is taught.
    #[default]
    Llama3Json,
    /// Llama 3.2's Python list of calls.
    Pythonic,
    /// `<tool_call>` blocks holding JSON.
    Hermes,
}

/// One call the model made: the function's name and its arguments as a JSON text (OpenAI's
/// `function.arguments` is a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    /// The function's name.
    pub name: String,
    /// The arguments, normally a JSON object serialized; for a primed call whose arguments the model
    /// did not finish, the text it wrote (OpenAI's arguments "may not be valid JSON", too).
    pub arguments: String,
}

/// An output read as tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCalls {
    /// Text the model wrote before its calls (Hermes style allows it); `None` when there was none.
    pub content: Option<String>,
    /// The calls, in the order written; never empty.
    pub calls: Vec<ParsedCall>,
}

impl ToolCallFormat {
    /// Every accepted spelling, for error messages.
    pub const NAMES: &'static str = "llama3_json, pythonic, hermes";

    /// The format a chat template asks for: `<tool_call>` in it means Hermes, a pythonic example call
    /// (`[func_name1(`) means Llama 3.2's lists; anything else (Llama 3.1/3.3's JSON, or no tools at
    /// all) the JSON format.
    pub fn detect(template: &str) -> Self {
        if template.contains("<tool_call>") {
            Self::Hermes
        } else if template.contains("[func_name1(") || template.contains("[func_name(") {
            Self::Pythonic
        } else {
            Self::Llama3Json
        }
    }

    /// The whole output read as tool calls, or `None` when it is plain text.
    pub fn parse(self, text: &str) -> Option<ToolCalls> {
        let parsed = match self {
            Self::Llama3Json => llama_json::parse(text).map(|calls| ToolCalls { content: None, calls }),
            Self::Pythonic => pythonic::parse(text).map(|calls| ToolCalls { content: None, calls }),
            Self::Hermes => hermes::parse(text),
        }?;
        (!parsed.calls.is_empty()).then_some(parsed)
    }

    /// Where in a growing output the text that may be (or become) a call begins, so a stream can send
    /// what is before it and hold back the rest: `Some(0)` while a JSON or pythonic output could still
    /// be a call, the offset of `<tool_call>` (or of its first characters at the end) for Hermes; `None`
    /// when no call can begin in it any more (then all of it is content).
    pub fn held_from(self, text: &str) -> Option<usize> {
        match self {
            Self::Llama3Json => llama_json::may_be_call(text).then_some(0),
            Self::Pythonic => pythonic::may_be_call(text).then_some(0),
            Self::Hermes => hermes::held_from(text),
        }
    }

    /// Whether calls can only open an output (JSON and pythonic), so an output that did not open with
    /// one never holds text back again.
    pub fn calls_open_the_output(self) -> bool {
        !matches!(self, Self::Hermes)
    }

    /// The text that opens a call to `name` in this format: appended to the prompt after the assistant
    /// turn's header, it leaves the model only the arguments to write.
    pub fn primer(self, name: &str) -> String {
        match self {
            Self::Llama3Json => format!("{{\"name\": \"{name}\", \"parameters\": "),
            Self::Pythonic => format!("[{name}("),
            Self::Hermes => format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": "),
        }
    }

    /// The text that ends a primed call after its arguments, where the arguments are a JSON object (so
    /// a grammar can hold them to the function's schema); `None` for pythonic calls.
    pub fn primed_call_closing(self) -> Option<&'static str> {
        match self {
            Self::Llama3Json => Some("}"),
            Self::Hermes => Some("}\n</tool_call>"),
            Self::Pythonic => None,
        }
    }

    /// The call to `name` from what the model wrote after [`ToolCallFormat::primer`]: the first call
    /// when the primer and the continuation parse, otherwise the arguments as far as the model wrote a
    /// JSON object, otherwise its text as written (trimmed).
    pub fn parse_primed(self, name: &str, continuation: &str) -> ParsedCall {
        let whole = format!("{}{continuation}", self.primer(name));
        if let Some(call) = self.parse(&whole).and_then(|parsed| parsed.calls.into_iter().next())
            && call.name == name
        {
            return call;
        }
        let arguments = match self {
            Self::Llama3Json | Self::Hermes => first_json_object(continuation)
                .map_or_else(|| continuation.trim().to_string(), |object| object.to_string()),
            Self::Pythonic => pythonic::primed_arguments(continuation)
                .map_or_else(|| continuation.trim().to_string(), |object| object.to_string()),
        };
        ParsedCall { name: name.to_string(), arguments }
    }

    /// How this format writes `calls` (name and arguments object): an earlier assistant turn shown to
    /// a model whose template knows no tools, so it sees the calls it made as it was taught to make them.
    pub fn write_calls(self, calls: &[(&str, &Value)]) -> String {
        match self {
            Self::Llama3Json => calls
                .iter()
                .map(|(name, arguments)| serde_json::json!({"name": name, "parameters": arguments}).to_string())
                .collect::<Vec<_>>()
                .join("; "),
            Self::Pythonic => format!(
                "[{}]",
                calls
                    .iter()
                    .map(|(name, arguments)| pythonic::write_call(name, arguments))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Hermes => calls
                .iter()
                .map(|(name, arguments)| {
                    format!("<tool_call>\n{}\n</tool_call>", serde_json::json!({"name": name, "arguments": arguments}))
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The first JSON object at the start of `text` (after whitespace), if it is complete.
fn first_json_object(text: &str) -> Option<Value> {
    let mut values = serde_json::Deserializer::from_str(text.trim_start()).into_iter::<Value>();
    match values.next() {
        Some(Ok(value @ Value::Object(_))) => Some(value),
        _ => None,
    }
}

/// A call object's arguments as OpenAI's JSON text: an object serialized, a string that holds one kept as
/// it is (some models write the arguments pre-serialized); anything else is not a call.
fn arguments_text(arguments: Option<&Value>) -> Option<String> {
    match arguments {
        None => Some("{}".to_string()),
        Some(object @ Value::Object(_)) => Some(object.to_string()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => Some(text.clone()),
            _ => None,
        },
        Some(_) => None,
    }
}

/// `{"name": …, "<arguments_key>": {…}}` as a call; anything else (other keys aside) is not one.
fn call_from_object(value: &Value, arguments_keys: &[&str]) -> Option<ParsedCall> {
    let object = value.as_object()?;
    let name = object.get("name")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    let arguments = arguments_keys.iter().find_map(|key| object.get(*key));
    Some(ParsedCall { name: name.to_string(), arguments: arguments_text(arguments)? })
}

impl FromStr for ToolCallFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "llama3_json" => Ok(Self::Llama3Json),
            "pythonic" => Ok(Self::Pythonic),
            "hermes" => Ok(Self::Hermes),
            other => Err(format!("unknown tool call format {other:?}; use one of {}", Self::NAMES)),
        }
    }
}

impl fmt::Display for ToolCallFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Llama3Json => "llama3_json",
            Self::Pythonic => "pythonic",
            Self::Hermes => "hermes",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA31: &str = r#"{{- "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" }}{{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}<|python_tag|>"#;
    const LLAMA32_PYTHONIC: &str = "You SHOULD NOT include any other text in the response if you call a function\n[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]";
    const HERMES: &str = "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags";

    #[test]
    fn the_template_names_the_format() {
        assert_eq!(ToolCallFormat::detect(LLAMA31), ToolCallFormat::Llama3Json);
        assert_eq!(ToolCallFormat::detect(LLAMA32_PYTHONIC), ToolCallFormat::Pythonic);
        assert_eq!(ToolCallFormat::detect(HERMES), ToolCallFormat::Hermes);
        assert_eq!(
            ToolCallFormat::detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
            ToolCallFormat::Llama3Json
        );
    }

    #[test]
    fn spellings_round_trip_and_unknown_ones_name_the_choices() {
        for format in [ToolCallFormat::Llama3Json, ToolCallFormat::Pythonic, ToolCallFormat::Hermes] {
            assert_eq!(format.to_string().parse::<ToolCallFormat>().unwrap(), format);
        }
        let err = "mistral".parse::<ToolCallFormat>().unwrap_err();
        assert!(err.contains("mistral") && err.contains(ToolCallFormat::NAMES), "{err}");
    }

    #[test]
    fn a_primed_call_parses_whatever_the_model_finished() {
        for format in [ToolCallFormat::Llama3Json, ToolCallFormat::Hermes] {
            let closing = if format == ToolCallFormat::Hermes { "}\n</tool_call>" } else { "}" };
            let call = format.parse_primed("get_weather", &format!("{{\"city\": \"Paris\"}}{closing}"));
            assert_eq!(call, ParsedCall { name: "get_weather".into(), arguments: r#"{"city":"Paris"}"#.into() });
            // The object closed, then the model wandered off: the object is the arguments.
            let call = format.parse_primed("get_weather", "{\"city\": \"Paris\"} and then some text");
            assert_eq!(call.arguments, r#"{"city":"Paris"}"#);
            // Cut before the object closed: the text as written.
            assert_eq!(format.parse_primed("get_weather", " {\"city\": \"Par").arguments, "{\"city\": \"Par");
        }
        let call = ToolCallFormat::Pythonic.parse_primed("get_weather", "city=\"Paris\", days=2)]");
        assert_eq!(call.arguments, r#"{"city":"Paris","days":2}"#);
        let call = ToolCallFormat::Pythonic.parse_primed("get_weather", "city=\"Paris\") is what I would call");
        assert_eq!(call.arguments, r#"{"city":"Paris"}"#);
    }

    #[test]
    fn calls_written_back_parse_to_the_same_calls() {
        let arguments = serde_json::json!({"city": "Paris", "days": [1, 2], "metric": true, "note": null});
        let calls = [("get_weather", &arguments), ("now", &serde_json::json!({}))];
        for format in [ToolCallFormat::Llama3Json, ToolCallFormat::Pythonic, ToolCallFormat::Hermes] {
            let parsed = format.parse(&format.write_calls(&calls)).unwrap();
            let names: Vec<&str> = parsed.calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["get_weather", "now"], "{format}");
            let back: Value = serde_json::from_str(&parsed.calls[0].arguments).unwrap();
            assert_eq!(back, arguments, "{format}");
        }
    }
}
