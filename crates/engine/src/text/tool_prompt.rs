//! Tools for a chat template that knows none (SmolLM2's ChatML, most base templates): the conversation
//! is rewritten so the model still sees them, and the template renders it unchanged.
//!
//! - The tool definitions go into the system prompt, after instructions for the model's
//!   [`ToolCallFormat`] — the Llama 3.1 JSON format unless the model's config names another. The
//!   wording follows what Meta's (and Hermes') own templates write, so a model trained on any Llama
//!   template meets a familiar prompt. An existing system message keeps its text after the preamble;
//!   otherwise the preamble becomes the first message (which replaces a template's default system
//!   prompt, as a caller's own system message would).
//! - An earlier assistant turn's `tool_calls` become its text, written as the format writes calls,
//!   so the model sees the calls it made in the form it was taught.
//! - `tool` turns stay `tool` turns: the template renders that role like any other.
//!
//! Everything the caller wrote stays message content, so it is tokenized as text
//! ([`crate::text::caller_text`]): a tool description that spells `<|im_end|>` ends no turn.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::text::chat_template::ChatMessage;
use crate::text::tool_calls::ToolCallFormat;

/// The tools a chat request offers the model, as the engine renders them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatTools {
    /// OpenAI tool objects (`{"type": "function", "function": {"name", "description", "parameters"}}`),
    /// already validated by the caller.
    pub definitions: Vec<Value>,
    /// A function the model must call (a named `tool_choice`): the opening of its call is written
    /// into the prompt, so the model writes only the arguments ([`ToolCallFormat::primer`]).
    pub primed: Option<String>,
    /// `tool_choice: required` with several tools: the model must call one of them. The engine picks
    /// the one whose call opening the model finds most likely and primes it, as for a named function.
    pub required: Option<RequiredCall>,
}

/// One of several functions the model must call, and where the engine leaves its choice.
#[derive(Debug, Clone, Default)]
pub struct RequiredCall {
    /// The functions to choose from, in the request's order.
    pub names: Vec<String>,
    /// The function chosen, set when the prompt is tokenized
    /// ([`crate::Model::tokenize_chat_with_tools`]): whoever reads the answer needs the name, which
    /// is in the prompt, not in the output.
    pub chosen: Arc<OnceLock<String>>,
}

impl Eq for RequiredCall {}

impl PartialEq for RequiredCall {
    /// The same choice to make; what was chosen is an outcome, not part of the request.
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

/// `messages` rewritten for a template without tool support; `tools` (OpenAI tool objects) offered
/// when non-empty.
pub(crate) fn rewrite(messages: &[ChatMessage], tools: Option<&[Value]>, format: ToolCallFormat) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = messages.iter().map(|m| shown_calls(m, format)).collect();
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let preamble = preamble(tools, format);
        match out.first_mut().filter(|m| m.role == "system") {
            Some(system) => system.content = format!("{preamble}\n\n{}", system.content),
            None => out.insert(0, ChatMessage::new("system", preamble)),
        }
    }
    out
}

/// An assistant turn with its calls written into its text.
fn shown_calls(message: &ChatMessage, format: ToolCallFormat) -> ChatMessage {
    if message.tool_calls.is_empty() {
        return message.clone();
    }
    let calls: Vec<(&str, &Value)> =
        message.tool_calls.iter().map(|c| (c.function.name.as_str(), &c.function.arguments)).collect();
    let written = format.write_calls(&calls);
    let content =
        if message.content.trim().is_empty() { written } else { format!("{}\n{written}", message.content.trim_end()) };
    ChatMessage { content, tool_calls: Vec::new(), ..message.clone() }
}

/// The system prompt's tool section: how to call, then one definition per line.
fn preamble(tools: &[Value], format: ToolCallFormat) -> String {
    let definitions: Vec<String> = tools.iter().map(Value::to_string).collect();
    match format {
        ToolCallFormat::Llama3Json => format!(
            "You have access to the following functions. To call a function, respond with only a JSON object in \
             the format {{\"name\": function name, \"parameters\": dictionary of argument name and its value}}. \
             Do not use variables. To call several functions, separate the objects with \";\". If no function \
             fits, answer in plain text.\n\n{}",
            definitions.join("\n")
        ),
        ToolCallFormat::Pythonic => format!(
            "You are an expert in composing functions. You are given a question and a set of possible functions. \
             Based on the question, you will need to make one or more function/tool calls to achieve the purpose. \
             If you decide to invoke any of the function(s), you MUST put it in the format of \
             [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\
             You SHOULD NOT include any other text in the response if you call a function. If no function fits, \
             answer in plain text.\n\nHere is a list of functions in JSON format that you can invoke.\n\n{}",
            definitions.join("\n")
        ),
        ToolCallFormat::Hermes => format!(
            "You may call one or more functions to assist with the user query.\n\nYou are provided with function \
             signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\nFor each function call, return \
             a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
             <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
            definitions.join("\n")
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::text::chat_template::{FunctionCallTurn, ToolCallTurn};

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    #[test]
    fn the_preamble_leads_the_system_prompt_or_becomes_it() {
        let tools = [weather_tool()];
        let out = rewrite(&[ChatMessage::new("user", "Weather in Paris?")], Some(&tools), ToolCallFormat::Llama3Json);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].role, "system");
        assert!(out[0].content.contains("\"parameters\": dictionary"), "{}", out[0].content);
        assert!(out[0].content.ends_with(&weather_tool().to_string()), "{}", out[0].content);
        let with_system = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
        let out = rewrite(&with_system, Some(&tools), ToolCallFormat::Hermes);
        assert_eq!(out.len(), 2);
        assert!(out[0].content.starts_with("You may call") && out[0].content.ends_with("\n\nBe brief."));
        // No tools offered: the conversation is unchanged.
        assert_eq!(rewrite(&with_system, Some(&[]), ToolCallFormat::Llama3Json), with_system);
    }

    #[test]
    fn earlier_calls_are_written_as_the_format_writes_them() {
        let mut assistant = ChatMessage::new("assistant", "");
        assistant.tool_calls = vec![ToolCallTurn {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCallTurn { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
        }];
        let mut result = ChatMessage::new("tool", "18 C, sunny");
        result.tool_call_id = Some("call_1".into());
        let conversation = [ChatMessage::new("user", "Weather?"), assistant, result.clone()];
        let out = rewrite(&conversation, None, ToolCallFormat::Llama3Json);
        assert_eq!(out[1].content, r#"{"name":"get_weather","parameters":{"city":"Paris"}}"#);
        assert!(out[1].tool_calls.is_empty());
        assert_eq!(out[2], result);
        let out = rewrite(&conversation, None, ToolCallFormat::Pythonic);
        assert_eq!(out[1].content, r#"[get_weather(city="Paris")]"#);
    }
}
