//! Token log-probabilities in the two shapes OpenAI-compatible clients read: chat's `logprobs.content`
//! (one entry per token, with `bytes` and `top_logprobs`) and legacy completions' parallel lists
//! (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`). The engine's [`TokenLogprobs`] are the
//! model's own distribution at each generated token (see docs/api.md, "Log-probabilities").

use std::collections::BTreeMap;

use llamagate_engine::{LogprobToken, TokenLogprobs};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `choices[].logprobs` of a chat completion or chunk.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatLogprobs {
    /// One entry per generated token of this message or chunk, in order.
    pub content: Vec<ChatTokenLogprob>,
    /// Null: refusals carry no tokens.
    #[schema(required = true)]
    pub refusal: Option<Value>,
}

/// One generated token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatTokenLogprob {
    /// The token's text (invalid UTF-8 replaced; see `bytes`).
    pub token: String,
    /// Natural log of the model's probability for it.
    pub logprob: f32,
    /// The token's exact bytes.
    pub bytes: Vec<u8>,
    /// The `top_logprobs` most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative at one position.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Natural log of its probability.
    pub logprob: f32,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
}

impl ChatLogprobs {
    /// The chat shape of `entries`.
    pub fn new(entries: &[TokenLogprobs]) -> Self {
        let top = |t: &LogprobToken| TopLogprob { token: t.text.clone(), logprob: t.logprob, bytes: t.bytes.clone() };
        let content = entries
            .iter()
            .map(|e| ChatTokenLogprob {
                token: e.chosen.text.clone(),
                logprob: e.chosen.logprob,
                bytes: e.chosen.bytes.clone(),
                top_logprobs: e.top.iter().map(top).collect(),
            })
            .collect();
        Self { content, refusal: None }
    }
}

/// `choices[].logprobs` of a legacy completion: parallel lists, one position per generated token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionLogprobs {
    /// The tokens' texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<f32>,
    /// Per position, the most likely tokens' texts and log-probabilities (an empty object when none
    /// were asked for).
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    /// Per position, where the token's text starts in the completion text, in characters.
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// The completions shape of `entries`, whose text starts `offset` characters into the completion.
    pub fn new(entries: &[TokenLogprobs], mut offset: usize) -> Self {
        let mut body =
            Self { tokens: Vec::new(), token_logprobs: Vec::new(), top_logprobs: Vec::new(), text_offset: Vec::new() };
        for entry in entries {
            body.text_offset.push(offset);
            offset += entry.chosen.text.chars().count();
            body.tokens.push(entry.chosen.text.clone());
            body.token_logprobs.push(entry.chosen.logprob);
            body.top_logprobs.push(entry.top.iter().map(|t| (t.text.clone(), t.logprob)).collect());
        }
        body
    }

    /// Characters of text the entries cover (where the next chunk's offsets start).
    pub fn covered_chars(&self) -> usize {
        self.tokens.iter().map(|t| t.chars().count()).sum()
    }
}
