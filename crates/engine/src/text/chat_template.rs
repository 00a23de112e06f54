//! Chat templates: the Jinja template shipped with the model turns a conversation into prompt text.
//!
//! Rendering follows transformers' `apply_chat_template`: `trim_blocks` and `lstrip_blocks` on, Python
//! string methods available (`.strip()`, `.startswith()`, …), and the helpers real Llama 3.x templates
//! call (`raise_exception`, `strftime_now`). A template that raises is a request error, not a crash.
//!
//! Tools reach the template as transformers passes them: a `tools` variable (the OpenAI tool objects,
//! `none` when there are none), assistant turns with `tool_calls` (each `{id, type, function: {name,
//! arguments}}`, the arguments an object as HF templates expect), and `tool` turns with their
//! `tool_call_id`. A template that never mentions `tools` cannot show them; the caller rewrites the
//! conversation for it first ([`crate::text::tool_prompt`]).

use minijinja::{Environment, Error, ErrorKind, context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::text::tool_calls::ToolCallFormat;

/// One turn of a conversation as templates see it. The tool fields are left out of what the template
/// sees when empty, so `'tool_calls' in message` is true only for a turn that made calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`, as the template expects.
    pub role: String,
    /// The turn's text.
    pub content: String,
    /// The calls an assistant turn made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallTurn>,
    /// The call a `tool` turn answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// One call in an earlier assistant turn, shaped as HF chat templates read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallTurn {
    /// The call's id, which the `tool` turn answering it repeats.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What was called.
    pub function: FunctionCallTurn,
}

/// The function and arguments of a [`ToolCallTurn`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCallTurn {
    /// The function's name.
    pub name: String,
    /// The arguments: an object when the caller's JSON text parsed as one (templates `tojson` it),
    /// otherwise the text as sent.
    pub arguments: Value,
}

impl ChatMessage {
    /// Shorthand for tests and callers that build conversations in code.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A compiled chat template plus the special-token strings it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Whether the template reads a `tools` variable at all (see [`ChatTemplate::knows_tools`]).
    knows_tools: bool,
    /// The tool-call format its text asks for.
    tool_call_format: ToolCallFormat,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos_token", &self.bos_token).finish_non_exhaustive()
    }
}

const TEMPLATE_NAME: &str = "chat";

impl ChatTemplate {
    /// Compiles `source`; syntax errors are reported now, at model load, rather than on the first request.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| EngineError::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| EngineError::Template(format!("cannot compile the chat template: {e}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
            knows_tools: source.contains("tools"),
            tool_call_format: ToolCallFormat::detect(source),
        })
    }

    /// Whether the template renders tool definitions itself: it mentions `tools` (every HF template
    /// with tool support reads that variable; SmolLM2's and other plain ChatML templates never do).
    pub fn knows_tools(&self) -> bool {
        self.knows_tools
    }

    /// The tool-call format the template's text asks for ([`ToolCallFormat::detect`]).
    pub fn tool_call_format(&self) -> ToolCallFormat {
        self.tool_call_format
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with tool definitions (OpenAI tool objects) in the `tools` variable, as
    /// transformers' `apply_chat_template(tools=…)` passes them; `none` when `tools` is `None`.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| EngineError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                tools => tools.map(|t| minijinja::Value::from(minijinja::value::Serde(t))),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| EngineError::Template(describe(&e)))
    }
}

/// The template's own message for `raise_exception`, the engine's description for anything else.
fn describe(e: &Error) -> String {
    match e.kind() {
        ErrorKind::InvalidOperation => e.detail().unwrap_or("the template raised an exception").to_string(),
        _ => e.to_string(),
    }
}

fn raise_exception(message: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Llama 3.x templates stamp the current date into the system prompt with `strftime_now("%d %b %Y")`.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("bad strftime format '{format}'")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_adds_default_system_and_generation_prompt() {
        let t = ChatTemplate::new(CHATML, None, None).unwrap();
        let out = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_becomes_a_template_error_with_its_message() {
        let src = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok";
        let t = ChatTemplate::new(src, None, None).unwrap();
        let err = t.render(&[ChatMessage::new("assistant", "x")], true).unwrap_err().to_string();
        assert!(err.contains("Conversation must start with user"), "{err}");
        assert_eq!(t.render(&[ChatMessage::new("user", "x")], true).unwrap(), "ok");
    }

    #[test]
    fn python_methods_and_strftime_work() {
        let src = "{{ bos_token }}{{ messages[0]['content'].strip() }}|{{ strftime_now('%Y') | length }}";
        let t = ChatTemplate::new(src, Some("<s>"), None).unwrap();
        assert_eq!(t.render(&[ChatMessage::new("user", "  hi  ")], false).unwrap(), "<s>hi|4");
    }

    /// The variables Llama 3.1's template reads: `tools` (none without them), `'tool_calls' in message`
    /// with object arguments, and `tool` turns' `tool_call_id`.
    #[test]
    fn tools_and_tool_turns_reach_the_template_as_transformers_passes_them() {
        let src = "{%- if tools is not none %}tools:{% for t in tools %}{{ t.function.name }};{% endfor %}|{% endif %}\
            {%- for m in messages %}{% if 'tool_calls' in m %}call {{ m.tool_calls[0].function.name }} \
            {{ m.tool_calls[0].function.arguments | tojson }}{% elif m.role == 'tool' %}result[{{ m.tool_call_id }}] \
            {{ m.content }}{% else %}{{ m.role }}: {{ m.content }}{% endif %}|{% endfor %}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        assert!(t.knows_tools());
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCallTurn {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCallTurn { name: "get_weather".into(), arguments: serde_json::json!({"city": "Paris"}) },
        }];
        let mut result = ChatMessage::new("tool", "sunny");
        result.tool_call_id = Some("call_1".into());
        let messages = [ChatMessage::new("user", "Weather?"), call, result];
        let tools = [serde_json::json!({"type": "function", "function": {"name": "get_weather"}})];
        assert_eq!(
            t.render_with_tools(&messages, Some(&tools), false).unwrap(),
            r#"tools:get_weather;|user: Weather?|call get_weather {"city": "Paris"}|result[call_1] sunny|"#
        );
        assert_eq!(t.render(&messages[..1], false).unwrap(), "user: Weather?|");
        assert!(!ChatTemplate::new(CHATML, None, None).unwrap().knows_tools());
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(matches!(ChatTemplate::new("{% for %}", None, None), Err(EngineError::Template(_))));
    }
}
