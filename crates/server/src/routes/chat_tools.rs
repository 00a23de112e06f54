//! The tool fields of a chat request (`tools`, `tool_choice`, `parallel_tool_calls`, and the tool parts
//! of messages), checked and turned into what the engine renders ([`ChatTools`]) and what the answer
//! is read with ([`ToolMode`]).
//!
//! The checks are written for hostile input: the definitions are rendered into every prompt of the
//! request, so their number and size are bounded, names must be what OpenAI allows (which also keeps
//! them out of any template syntax), and each refusal is a 400 naming the field. What cannot be
//! honoured is refused, never ignored: `strict` schemas (nothing constrains the arguments to them).

use llamagate_engine::{ChatTools, FunctionCallTurn, RequiredCall, ToolCallTurn};
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::error::ApiError;

/// OpenAI's own limit on tools per request.
pub const MAX_TOOLS: usize = 128;

/// The most bytes all tool definitions may take, serialized: they are rendered into the prompt, and
/// 64 KiB is far more than any real tool set (a detailed definition is about 1 KiB) while keeping a
/// hostile one from filling the context with schema.
pub const MAX_TOOLS_BYTES: usize = 64 * 1024;

/// The most calls one earlier assistant message may carry.
pub const MAX_CALLS_PER_MESSAGE: usize = MAX_TOOLS;

/// A function name as OpenAI allows it: 1–64 of `a-z A-Z 0-9 _ -`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What the answer does with tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// No tools offered (or `tool_choice: none`): the output is text.
    Off,
    /// `auto`: the output is read as calls when it is entirely calls to these tools, otherwise as text.
    Auto {
        /// The tools' function names: a "call" to any other function is text, never a call a client
        /// cannot make.
        names: Vec<String>,
        /// `parallel_tool_calls: false`: only the first call is answered.
        single: bool,
    },
    /// A named function (or `required` with one tool): its call was primed, and the output is that
    /// call's arguments.
    Forced(String),
    /// `required` with several tools: the engine chose one from the model's probabilities
    /// (`RequiredCall::chosen`, set when the prompt was prepared) and primed its call.
    Required(RequiredCall),
}

/// One tool definition as documented (the request keeps the JSON as sent and checks it field by field).
#[derive(Debug, ToSchema)]
pub struct ToolDefinition {
    /// Always `function`.
    #[schema(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// A function a model may call.
#[derive(Debug, ToSchema)]
pub struct FunctionDefinition {
    /// 1–64 characters of `a-z A-Z 0-9 _ -`, unique among the tools.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its arguments as a JSON Schema object.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// `true` is refused: nothing constrains the arguments to the schema.
    pub strict: Option<bool>,
}

/// Checks `tools`, `tool_choice` and `parallel_tool_calls`; the tools to render (none when
/// `tool_choice` is `none` or no tools were sent) and how to read the answer.
pub fn check_tools(
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
) -> Result<(Option<ChatTools>, ToolMode), ApiError> {
    let tools = tools.unwrap_or_default();
    if tool_choice.is_some() && tools.is_empty() {
        return Err(bad("'tool_choice' is only allowed when 'tools' is also provided"));
    }
    if tools.len() > MAX_TOOLS {
        return Err(bad(format!("tools: at most {MAX_TOOLS} tools may be given; got {}", tools.len())));
    }
    let size = serde_json::to_string(tools).map_or(usize::MAX, |s| s.len());
    if size > MAX_TOOLS_BYTES {
        return Err(bad(format!("tools: the definitions may take at most {MAX_TOOLS_BYTES} bytes; got {size}")));
    }
    let mut names: Vec<&str> = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let name = check_tool(i, tool)?;
        if names.contains(&name) {
            return Err(bad(format!("tools[{i}].function.name: '{name}' is defined twice")));
        }
        names.push(name);
    }
    let auto = || ToolMode::Auto {
        names: names.iter().map(|name| name.to_string()).collect(),
        single: parallel_tool_calls == Some(false),
    };
    let mode = match tool_choice {
        None if tools.is_empty() => ToolMode::Off,
        None => auto(),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolMode::Off,
            "auto" => auto(),
            "required" if names.len() == 1 => ToolMode::Forced(names[0].to_string()),
            "required" => ToolMode::Required(RequiredCall {
                names: names.iter().map(|name| name.to_string()).collect(),
                chosen: Default::default(),
            }),
            _ => return Err(bad_choice()),
        },
        Some(Value::Object(named)) if named.get("type").and_then(Value::as_str) == Some("function") => {
            let name = named
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice.function.name is required when tool_choice names a function"))?;
            if !names.contains(&name) {
                return Err(bad(format!("tool_choice.function.name: '{name}' is not one of the tools")));
            }
            ToolMode::Forced(name.to_string())
        }
        Some(_) => return Err(bad_choice()),
    };
    if mode == ToolMode::Off {
        // `none` asks for a plain answer: upstream drops the tools and answers.
        return Ok((None, mode));
    }
    let (primed, required) = match &mode {
        ToolMode::Forced(name) => (Some(name.clone()), None),
        ToolMode::Required(call) => (None, Some(call.clone())),
        _ => (None, None),
    };
    Ok((Some(ChatTools { definitions: tools.to_vec(), primed, required }), mode))
}

fn bad_choice() -> ApiError {
    bad("tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}")
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Checks one definition; its function's name.
fn check_tool(i: usize, tool: &Value) -> Result<&str, ApiError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(format!("tools[{i}].type must be 'function'")));
    }
    let Some(function) = tool.get("function").and_then(Value::as_object) else {
        return Err(bad(format!("tools[{i}].function must be an object")));
    };
    let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
    if !valid_name(name) {
        return Err(bad(format!("tools[{i}].function.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -")));
    }
    if function.get("description").is_some_and(|d| !d.is_string() && !d.is_null()) {
        return Err(bad(format!("tools[{i}].function.description must be a string")));
    }
    if function.get("parameters").is_some_and(|p| !p.is_object() && !p.is_null()) {
        return Err(bad(format!("tools[{i}].function.parameters must be a JSON Schema object")));
    }
    if function.get("strict").and_then(Value::as_bool) == Some(true) {
        return Err(bad(format!(
            "tools[{i}].function.strict: strict schemas are not supported (arguments are not constrained to \
             the schema); leave it out or set it to false"
        )));
    }
    Ok(name)
}

/// An earlier assistant message's `tool_calls` as the template reads them; message `index` for errors.
pub fn calls_in_message(index: usize, calls: &[Value]) -> Result<Vec<ToolCallTurn>, ApiError> {
    if calls.len() > MAX_CALLS_PER_MESSAGE {
        return Err(bad(format!("messages[{index}].tool_calls: at most {MAX_CALLS_PER_MESSAGE} calls")));
    }
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let field = format!("messages[{index}].tool_calls[{j}]");
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            if id.is_empty() {
                return Err(bad(format!("{field}.id is required")));
            }
            if call.get("type").and_then(Value::as_str).is_some_and(|t| t != "function") {
                return Err(bad(format!("{field}.type must be 'function'")));
            }
            let function = call.get("function").ok_or_else(|| bad(format!("{field}.function is required")))?;
            let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
            if !valid_name(name) {
                return Err(bad(format!("{field}.function.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -")));
            }
            // OpenAI sends the arguments as JSON text; HF templates expect the object.
            let arguments = match function.get("arguments") {
                Some(Value::String(text)) => serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::String(text.clone())),
                Some(object @ Value::Object(_)) => object.clone(),
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(_) => return Err(bad(format!("{field}.function.arguments must be a JSON string"))),
            };
            Ok(ToolCallTurn {
                id: id.to_string(),
                kind: "function".into(),
                function: FunctionCallTurn { name: name.to_string(), arguments },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
    }

    fn time() -> Value {
        json!({"type": "function", "function": {"name": "get_time"}})
    }

    fn refusal(tools: &[Value], choice: Option<Value>) -> String {
        match check_tools(Some(tools), choice.as_ref(), None) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn modes_from_tool_choice() {
        let tools = [weather(), time()];
        let mode = |choice: Option<Value>, parallel| check_tools(Some(&tools), choice.as_ref(), parallel).unwrap().1;
        let names = vec!["get_weather".to_string(), "get_time".to_string()];
        assert_eq!(mode(None, None), ToolMode::Auto { names: names.clone(), single: false });
        assert_eq!(mode(Some(json!("auto")), Some(false)), ToolMode::Auto { names, single: true });
        assert_eq!(mode(Some(json!("none")), None), ToolMode::Off);
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        assert_eq!(mode(Some(named), None), ToolMode::Forced("get_time".into()));
        let (rendered, mode) = check_tools(Some(&tools), Some(&json!("required")), None).unwrap();
        let ToolMode::Required(call) = mode else { panic!("{mode:?}") };
        assert_eq!(call.names, ["get_weather", "get_time"]);
        let rendered = rendered.unwrap();
        assert!(rendered.primed.is_none());
        // The engine's choice is seen by the reader: one cell.
        rendered.required.unwrap().chosen.set("get_time".into()).unwrap();
        assert_eq!(call.chosen.get().map(String::as_str), Some("get_time"));
        let one = [weather()];
        let (rendered, mode) = check_tools(Some(&one), Some(&json!("required")), None).unwrap();
        assert_eq!(mode, ToolMode::Forced("get_weather".into()));
        assert_eq!(rendered.unwrap().primed.as_deref(), Some("get_weather"));
        assert!(check_tools(Some(&one), Some(&json!("none")), None).unwrap().0.is_none(), "none drops the tools");
        assert_eq!(check_tools(None, None, None).unwrap(), (None, ToolMode::Off));
    }

    #[test]
    fn each_refusal_names_its_field() {
        let tools = [weather(), time()];
        for (tools, choice, field) in [
            (&tools[..], Some(json!("sometimes")), "tool_choice"),
            (&tools[..], Some(json!({"type": "function", "function": {"name": "nope"}})), "tool_choice.function.name"),
            (&tools[..], Some(json!({"type": "function"})), "tool_choice.function.name"),
            (&[], Some(json!("auto")), "tool_choice"),
            (&[json!({"type": "retrieval"})], None, "tools[0].type"),
            (&[json!({"type": "function"})], None, "tools[0].function"),
            (
                &[weather(), json!({"type": "function", "function": {"name": "bad name"}})],
                None,
                "tools[1].function.name",
            ),
            (&[json!({"type": "function", "function": {"name": "x".repeat(65)}})], None, "tools[0].function.name"),
            (
                &[json!({"type": "function", "function": {"name": "f", "parameters": "{}"}})],
                None,
                "tools[0].function.parameters",
            ),
            (
                &[json!({"type": "function", "function": {"name": "f", "description": 3}})],
                None,
                "tools[0].function.description",
            ),
            (
                &[json!({"type": "function", "function": {"name": "f", "strict": true}})],
                None,
                "tools[0].function.strict",
            ),
            (&[weather(), weather()], None, "tools[1].function.name"),
        ] {
            let message = refusal(tools, choice);
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn count_and_size_are_bounded() {
        let many: Vec<Value> =
            (0..=MAX_TOOLS).map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}})).collect();
        assert!(refusal(&many, None).starts_with("tools: at most 128"));
        let big = json!({"type": "function", "function": {"name": "f", "description": "x".repeat(MAX_TOOLS_BYTES)}});
        assert!(refusal(&[big], None).contains("bytes"));
    }

    #[test]
    fn earlier_calls_keep_object_arguments_and_name_bad_fields() {
        let calls = [
            json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}),
        ];
        let turns = calls_in_message(2, &calls).unwrap();
        assert_eq!(turns[0].function.arguments, json!({"city": "Paris"}));
        assert_eq!(turns[0].id, "call_1");
        let unparsable = [json!({"id": "c", "function": {"name": "f", "arguments": "{oops"}})];
        assert_eq!(calls_in_message(0, &unparsable).unwrap()[0].function.arguments, json!("{oops"));
        for (call, field) in [
            (json!({"function": {"name": "f"}}), "messages[3].tool_calls[0].id"),
            (json!({"id": "c"}), "messages[3].tool_calls[0].function"),
            (json!({"id": "c", "function": {"name": "<|im_end|>"}}), "messages[3].tool_calls[0].function.name"),
            (
                json!({"id": "c", "function": {"name": "f", "arguments": 3}}),
                "messages[3].tool_calls[0].function.arguments",
            ),
        ] {
            match calls_in_message(3, &[call]) {
                Err(ApiError::BadRequest(message)) => assert!(message.contains(field), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
