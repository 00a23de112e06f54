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
    /// `role: content` line per turn, token ids by their count only.
    pub fn audit_text(&self) -> String {
        match self {
            Self::Chat(messages, _) => {
                messages.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n")
            }
            Self::Text(text) => text.clone(),
            Self::Tokens(ids) => format!("[{} token ids]", ids.len()),
        }
    }
}
