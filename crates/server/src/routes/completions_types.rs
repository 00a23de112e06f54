//! Wire types of the legacy `POST /v1/completions` (docs/reference/llama-stack-api.md §a.4): a raw prompt in, a
//! `text_completion` object out. A list of text prompts is a batch (each prompt answered with `n` choices,
//! numbered `prompt × n + choice` as OpenAI does); `echo` prepends each prompt to its choices' text.
//! Lists of token-id prompts, `echo` with `logprobs` or with token ids, `suffix` and `best_of` are refused
//! with a 400 rather than ignored; `logprobs` is served in either spelling.

use llamagate_engine::{GenerateParams, GenerationOutput, Usage};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::routes::logprobs_body::CompletionLogprobs;

use crate::http::error::ApiError;
use crate::routes::generation_fields::{GenerationFields, UsageBody};

/// The most prompts one batch may hold: each is tokenized, reserved and queued like a request of its
/// own, so a body of thousands of prompts would hold the engine's queue for everyone else.
pub const MAX_PROMPTS: usize = 16;

/// The most choices (prompts × `n`) one request may ask for: every choice is a sequence in the engine's
/// batch, 8 at a time by default, so 32 is four batches' worth for one caller.
pub const MAX_TOTAL_CHOICES: usize = 32;

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The served model id.
    pub model: String,
    /// One prompt as text or token ids, or a list of text prompts (at most 16).
    pub prompt: Prompt,
    /// Prepend each prompt to its choices' text (not with `logprobs`, nor with token-id prompts).
    pub echo: Option<bool>,
    /// Insertion (fill-in-the-middle) is not supported.
    pub suffix: Option<String>,
    /// Only 1 is served.
    pub best_of: Option<u32>,
    /// Report each generated token's log-probability: OpenAI's count (0–20: the chosen token plus
    /// that many alternatives per position) or Llama Stack's boolean (`true`: the chosen token only,
    /// `false`: none).
    pub logprobs: Option<LogprobsRequest>,
    /// Sampling and delivery fields shared with chat.
    #[serde(flatten)]
    pub fields: GenerationFields,
}

/// Every spelling of `prompt` OpenAI accepts; a list of token-id prompts holding more than one is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// A batch of text prompts (at most 16).
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// A batch of token-id prompts; only one is served.
    TokenBatches(Vec<Vec<u32>>),
}

/// `logprobs` in either spelling.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LogprobsRequest {
    /// Llama Stack's: whether to return them.
    Flag(bool),
    /// OpenAI's: how many alternatives per position.
    Count(u32),
}

impl LogprobsRequest {
    /// How many alternatives per position, or `None` when no log-probabilities are asked for.
    fn alternatives(self) -> Option<usize> {
        match self {
            Self::Flag(false) => None,
            Self::Flag(true) => Some(0),
            Self::Count(n) => Some(n as usize),
        }
    }
}

/// The prompt after validation: text to tokenize, or ids to use as they are.
#[derive(Debug, PartialEq)]
pub enum PromptInput {
    /// Text, tokenized by the model's tokenizer.
    Text(String),
    /// Token ids, checked against the vocabulary by the handler.
    Tokens(Vec<u32>),
}

/// A validated completion request: the prompts in order, the engine parameters, and whether to echo.
#[derive(Debug)]
pub struct ValidCompletion {
    /// One or more prompts, each answered with `n` choices.
    pub prompts: Vec<PromptInput>,
    /// Sampling and the rest, the same for every prompt.
    pub params: GenerateParams,
    /// Choices per prompt.
    pub n: usize,
    /// Whether each choice's text starts with its prompt.
    pub echo: bool,
}

impl CompletionRequest {
    /// Checks what serde cannot and returns the prompts, the engine parameters, `n` and `echo`.
    pub fn validate(&self) -> Result<ValidCompletion, ApiError> {
        let bad = |message: String| Err(ApiError::BadRequest(message));
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return bad("suffix is not supported by this server".into());
        }
        if self.best_of.is_some_and(|b| b != 1) {
            return bad("best_of other than 1 is not supported by this server".into());
        }
        let prompts = match &self.prompt {
            Prompt::Text(text) => vec![PromptInput::Text(text.clone())],
            Prompt::Texts(texts) => texts.iter().cloned().map(PromptInput::Text).collect(),
            Prompt::Tokens(ids) => vec![PromptInput::Tokens(ids.clone())],
            Prompt::TokenBatches(batches) => match batches.as_slice() {
                [ids] => vec![PromptInput::Tokens(ids.clone())],
                _ => {
                    return bad("prompt: a list of token-id prompts is not supported; send one token-id prompt \
                        or a list of strings"
                        .into());
                }
            },
        };
        if prompts.is_empty() || prompts.len() > MAX_PROMPTS {
            return bad(format!("prompt must hold 1 to {MAX_PROMPTS} prompts; got {}", prompts.len()));
        }
        let mut params = self.fields.to_params(None)?;
        let n = self.fields.choices()?;
        if prompts.len() * n > MAX_TOTAL_CHOICES {
            return bad(format!(
                "n: {} prompts × n={n} asks for {} choices; at most {MAX_TOTAL_CHOICES} per request",
                prompts.len(),
                prompts.len() * n
            ));
        }
        params.logprobs = self.logprobs.and_then(LogprobsRequest::alternatives);
        let echo = self.echo.unwrap_or(false);
        if echo && params.logprobs.is_some() {
            return bad(
                "echo with logprobs is not supported: the prompt tokens' log-probabilities are not computed".into()
            );
        }
        if echo && prompts.iter().any(|p| matches!(p, PromptInput::Tokens(_))) {
            return bad("echo is only supported for text prompts".into());
        }
        Ok(ValidCompletion { prompts, params, n, echo })
    }
}

/// The `text_completion` object; streamed chunks have the same shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// `n` choices per prompt, in `index` order.
    pub choices: Vec<TextChoice>,
    /// Unix seconds.
    pub created: u64,
    /// The id the client sent.
    pub model: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Not applicable; null.
    #[schema(required = true)]
    pub system_fingerprint: Option<String>,
    /// Exact token counts (null on streamed chunks other than the usage chunk).
    #[schema(required = true)]
    pub usage: Option<UsageBody>,
}

/// One choice of a text completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextChoice {
    /// `stop`, `length` or `content_filter`; null on streamed chunks before the last.
    #[schema(required = true)]
    pub finish_reason: Option<&'static str>,
    /// The choice's number: `prompt × n + choice`.
    pub index: u32,
    /// The generated text (or this chunk's piece of it), after the prompt when `echo` asked for it.
    pub text: String,
    /// The tokens' log-probabilities when `logprobs` asked for them; null otherwise.
    #[schema(required = true)]
    pub logprobs: Option<CompletionLogprobs>,
}

impl TextCompletion {
    /// Wraps a request's finished choices (in choice order, `n` per prompt) and its `usage`;
    /// `with_logprobs` when the request asked for them; `echo` holds the prompts to prepend, when asked.
    pub fn new(
        id: String,
        created: u64,
        model: String,
        outputs: Vec<GenerationOutput>,
        usage: Usage,
        with_logprobs: bool,
        echo: &Echo,
    ) -> Self {
        let choices = outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| TextChoice {
                finish_reason: Some(output.summary.finish_reason.as_str()),
                index: index as u32,
                logprobs: with_logprobs.then(|| CompletionLogprobs::new(&output.logprobs, 0)),
                text: echo.prompt_of(index).to_string() + &output.text,
            })
            .collect();
        Self {
            id,
            choices,
            created,
            model,
            object: "text_completion",
            system_fingerprint: None,
            usage: Some(usage.into()),
        }
    }
}

/// The prompts an echoing request prepends to its choices (none when `echo` is off).
#[derive(Debug, Default, Clone)]
pub struct Echo {
    prompts: Vec<String>,
    per_prompt: usize,
}

impl Echo {
    /// Echoes `prompts` (the text ones, in order) to each of their `per_prompt` choices when `on`.
    pub fn new(on: bool, prompts: &[PromptInput], per_prompt: usize) -> Self {
        if !on {
            return Self::default();
        }
        let prompts = prompts
            .iter()
            .map(|p| match p {
                PromptInput::Text(text) => text.clone(),
                PromptInput::Tokens(_) => String::new(),
            })
            .collect();
        Self { prompts, per_prompt }
    }

    /// The text choice `index` starts with: its prompt, or nothing.
    pub fn prompt_of(&self, index: usize) -> &str {
        self.prompts.get(index / self.per_prompt.max(1)).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CompletionRequest {
        serde_json::from_str(json).unwrap()
    }

    fn prompts(body: &str) -> Vec<PromptInput> {
        request(body).validate().unwrap().prompts
    }

    #[test]
    fn every_prompt_spelling_is_accepted() {
        let text = vec![PromptInput::Text("hi".into())];
        assert_eq!(prompts(r#"{"model":"m","prompt":"hi"}"#), text);
        assert_eq!(prompts(r#"{"model":"m","prompt":["hi"]}"#), text);
        assert_eq!(prompts(r#"{"model":"m","prompt":[1,2]}"#), [PromptInput::Tokens(vec![1, 2])]);
        assert_eq!(prompts(r#"{"model":"m","prompt":[[3]]}"#), [PromptInput::Tokens(vec![3])]);
        let batch = prompts(r#"{"model":"m","prompt":["a","b"]}"#);
        assert_eq!(batch, [PromptInput::Text("a".into()), PromptInput::Text("b".into())]);
    }

    #[test]
    fn what_cannot_be_served_is_refused_naming_the_field() {
        let seventeen = serde_json::to_string(&vec!["a"; 17]).unwrap();
        for (body, field) in [
            (r#"{"model":"m","prompt":[[1],[2]]}"#.to_string(), "prompt"),
            (r#"{"model":"m","prompt":[]}"#.to_string(), "prompt"),
            (format!(r#"{{"model":"m","prompt":{seventeen}}}"#), "prompt"),
            (r#"{"model":"m","prompt":["a","b","c","d","e"],"n":8}"#.to_string(), "n"),
            (r#"{"model":"m","prompt":"a","echo":true,"logprobs":1}"#.to_string(), "echo"),
            (r#"{"model":"m","prompt":[1,2],"echo":true}"#.to_string(), "echo"),
            (r#"{"model":"m","prompt":"a","best_of":2}"#.to_string(), "best_of"),
        ] {
            match request(&body).validate() {
                Err(ApiError::BadRequest(message)) => assert!(message.starts_with(field), "{body}: {message}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let valid = request(r#"{"model":"m","prompt":["a","b","c","d"],"n":8,"echo":true}"#).validate().unwrap();
        assert_eq!((valid.prompts.len(), valid.n, valid.echo), (4, 8, true));
    }

    #[test]
    fn echo_prepends_each_prompt_to_its_choices() {
        let echo = Echo::new(true, &[PromptInput::Text("a".into()), PromptInput::Text("b".into())], 2);
        assert_eq!((0..4).map(|i| echo.prompt_of(i)).collect::<Vec<_>>(), ["a", "a", "b", "b"]);
        assert_eq!(Echo::new(false, &[PromptInput::Text("a".into())], 1).prompt_of(0), "");
    }

    /// The Llama Stack SDK sends a boolean, OpenAI clients a count (0 still reports the chosen tokens).
    #[test]
    fn logprobs_in_either_spelling() {
        let alternatives = |body: &str| request(body).validate().unwrap().params.logprobs;
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":false}"#), None);
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a"}"#), None);
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":true}"#), Some(0));
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":0}"#), Some(0));
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":3}"#), Some(3));
    }
}
