//! Tokenizing prompts so that what a caller wrote stays text: a message whose content spells one of
//! the model's control tokens (`<|im_end|>`, `<|eot_id|>`, …) must not end its own turn, forge a
//! system or assistant turn, or write a guard model's verdict. Only the chat template (and the
//! documented raw-prompt mode of completions) may produce control tokens.
//!
//! A conversation without such spellings is tokenized exactly as before — the rendered template as
//! one string, as the reference implementations do. One with them is rendered with each message's
//! content wrapped in two private-use marker characters, and the rendered text is tokenized piece by
//! piece: the template's own text with special-token parsing on, each content with it off
//! ([`Tokenizer::encode_text`]). Whitespace around a content stays outside the markers, so a template
//! that trims contents (Llama 3's `| trim`) trims the same characters it would have trimmed.

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::text::chat_template::{ChatMessage, ChatTemplate};
use crate::text::tokenizer::Tokenizer;

/// Whether `text` spells any of the tokenizer's control tokens.
pub(crate) fn spells_control_tokens(tokenizer: &Tokenizer, text: &str) -> bool {
    tokenizer.special_spellings().any(|spelling| text.contains(spelling))
}

/// The ids of `messages` rendered with `template` (with `tools` in its `tools` variable), every content
/// kept as text, followed by `primer` as text (the opening of a call the model is made to make; empty
/// for none). Tool definitions and earlier calls are rendered by the template itself, outside any
/// content, so a spelling of a control token in them is refused rather than marked.
pub(crate) fn tokenize_conversation(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
    tools: Option<&[Value]>,
    primer: &str,
) -> Result<Vec<u32>> {
    check_tool_text(tokenizer, messages, tools)?;
    if !messages.iter().any(|m| spells_control_tokens(tokenizer, &m.content)) {
        let rendered = template.render_with_tools(messages, tools, true)?;
        if primer.is_empty() {
            return tokenizer.encode(&rendered);
        }
        return tokenizer.encode_parts(&[(&rendered, true), (primer, false)]);
    }
    let (open, close) = markers(messages.iter().map(|m| m.content.as_str()))?;
    let marked: Vec<ChatMessage> = messages.iter().map(|m| mark(m, open, close)).collect();
    splice(tokenizer, &template.render_with_tools(&marked, tools, true)?, open, close, primer)
}

/// Refuses tool definitions, calls or call ids that spell a control token: the template writes them
/// outside the marked contents, where such a spelling would become the token itself.
fn check_tool_text(tokenizer: &Tokenizer, messages: &[ChatMessage], tools: Option<&[Value]>) -> Result<()> {
    let tools_text = tools.map(|t| serde_json::to_string(t).unwrap_or_default()).unwrap_or_default();
    let spelled = spells_control_tokens(tokenizer, &tools_text)
        || messages.iter().any(|m| {
            m.tool_call_id.as_deref().is_some_and(|id| spells_control_tokens(tokenizer, id))
                || (!m.tool_calls.is_empty()
                    && spells_control_tokens(tokenizer, &serde_json::to_string(&m.tool_calls).unwrap_or_default()))
        });
    if spelled {
        return Err(EngineError::InvalidRequest(
            "tool definitions and tool calls must not spell the model's control tokens".into(),
        ));
    }
    Ok(())
}

/// The ids of `before` + `text` + `after`, where only `before` and `after` (a prompt format written
/// by the server) may contain control tokens.
pub(crate) fn tokenize_around(tokenizer: &Tokenizer, before: &str, text: &str, after: &str) -> Result<Vec<u32>> {
    if !spells_control_tokens(tokenizer, text) {
        return tokenizer.encode(&format!("{before}{text}{after}"));
    }
    tokenizer.encode_parts(&[(before, true), (text, false), (after, true)])
}

/// Two private-use characters that occur in none of `contents`.
fn markers<'a>(contents: impl Iterator<Item = &'a str> + Clone) -> Result<(char, char)> {
    let unused = |c: &char| !contents.clone().any(|content| content.contains(*c));
    let mut free = ('\u{F8F0}'..='\u{F8FF}').filter(unused);
    match (free.next(), free.next()) {
        (Some(open), Some(close)) => Ok((open, close)),
        _ => Err(EngineError::InvalidRequest("the messages use every private-use marker character".into())),
    }
}

/// `message` with its content (leading and trailing whitespace left outside) between the markers.
fn mark(message: &ChatMessage, open: char, close: char) -> ChatMessage {
    let content = &message.content;
    let core = content.trim();
    let start = content.len() - content.trim_start().len();
    let (lead, trail) = (&content[..start], &content[start + core.len()..]);
    ChatMessage { content: format!("{lead}{open}{core}{close}{trail}"), ..message.clone() }
}

/// Tokenizes `rendered` and then `primer`: marked spans and the primer as caller text, the rest as the
/// template's, in one [`Tokenizer::encode_parts`] call (SentencePiece segments them as one text).
fn splice(tokenizer: &Tokenizer, rendered: &str, open: char, close: char, primer: &str) -> Result<Vec<u32>> {
    let transformed = || {
        EngineError::InvalidRequest(
            "a message spells the model's control tokens and the chat template rewrites message contents, \
             so they cannot be kept as text"
                .into(),
        )
    };
    let mut parts = Vec::new();
    let mut rest = rendered;
    while let Some(at) = rest.find(open) {
        let (template_text, after) = rest.split_at(at);
        let after = &after[open.len_utf8()..];
        let end = after.find(close).ok_or_else(transformed)?;
        let content = &after[..end];
        if template_text.contains(close) || content.contains(open) {
            return Err(transformed());
        }
        parts.push((template_text, true));
        parts.push((content, false));
        rest = &after[end + close.len_utf8()..];
    }
    if rest.contains(close) {
        return Err(transformed());
    }
    parts.push((rest, true));
    if !primer.is_empty() {
        parts.push((primer, false));
    }
    tokenizer.encode_parts(&parts)
}
