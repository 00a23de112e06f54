//! [`Prompt`]: a generation's input as a route received it, before any backend reads it — a leaf that the
//! routes, the pipeline and every backend kind share.

use llamagate_engine::{ChatMessage, ChatTools};

/// A generation's input as the route received it.
#[derive(Debug)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template, and the tools offered with it.
    Chat(Vec<ChatMessage>, Option<ChatTools>),
    /// A raw prompt (legacy completions): no template.
    Text(String),
    /// A raw prompt already tokenized by the caller.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// The prompt as text for the audit trail (`audit.record_prompts`): a conversation as one
    /// `role: content` line per turn (an assistant turn's tool calls after its text), token ids by their
    /// count only.
    pub fn audit_text(&self) -> String {
        match self {
            Self::Chat(messages, _) => messages.iter().map(audit_line).collect::<Vec<_>>().join("\n"),
            Self::Text(text) => text.clone(),
            Self::Tokens(ids) => format!("[{} token ids]", ids.len()),
        }
    }
}

/// One turn as an audit line: `role: content`, then each call the turn made as `name(arguments)`.
fn audit_line(message: &ChatMessage) -> String {
    let mut line = format!("{}: {}", message.role, message.content);
    for call in &message.tool_calls {
        line.push_str(&format!(" {}({})", call.function.name, call.function.arguments));
    }
    line
}

#[cfg(test)]
mod tests {
    use llamagate_engine::{FunctionCallTurn, ToolCallTurn};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_audit_text_shows_tool_calls() {
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCallTurn {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCallTurn { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
        }];
        let prompt = Prompt::Chat(vec![ChatMessage::new("user", "Weather?"), call], None);
        assert_eq!(prompt.audit_text(), "user: Weather?\nassistant:  get_weather({\"city\":\"Paris\"})");
    }
}
