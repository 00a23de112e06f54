//! Wire types of the legacy `POST /v1/completions` (docs/reference/llama-stack-api.md §a.4): a raw prompt in, a
//! `text_completion` object out. Batches and the echo/suffix/best_of extras are refused with a 400 rather
//! than ignored; `logprobs` is served in either spelling.

use llamagate_engine::{GenerateParams, GenerationOutput};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::routes::logprobs_body::CompletionLogprobs;

use crate::http::error::ApiError;
use crate::routes::generation_fields::{GenerationFields, UsageBody};

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The served model id.
    pub model: String,
    /// One prompt, as text or token ids.
    pub prompt: Prompt,
    /// Echoing the prompt back is not supported.
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

/// Every spelling of `prompt` OpenAI accepts; only a single prompt is served.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// A batch of text prompts.
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// A batch of token-id prompts.
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

impl CompletionRequest {
    /// Checks what serde cannot and returns the single prompt and the engine parameters.
    pub fn validate(&self) -> Result<(PromptInput, GenerateParams), ApiError> {
        let refuse = |what: &str| Err(ApiError::BadRequest(format!("{what} is not supported by this server")));
        if self.echo == Some(true) {
            return refuse("echo");
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return refuse("suffix");
        }
        if self.best_of.is_some_and(|b| b != 1) {
            return refuse("best_of other than 1");
        }
        let one_prompt = || ApiError::BadRequest("prompt must be one prompt: batches are not supported".into());
        let prompt = match &self.prompt {
            Prompt::Text(text) => PromptInput::Text(text.clone()),
            Prompt::Texts(texts) => match texts.as_slice() {
                [text] => PromptInput::Text(text.clone()),
                _ => return Err(one_prompt()),
            },
            Prompt::Tokens(ids) => PromptInput::Tokens(ids.clone()),
            Prompt::TokenBatches(batches) => match batches.as_slice() {
                [ids] => PromptInput::Tokens(ids.clone()),
                _ => return Err(one_prompt()),
            },
        };
        let mut params = self.fields.to_params(None)?;
        params.logprobs = self.logprobs.and_then(LogprobsRequest::alternatives);
        Ok((prompt, params))
    }
}

/// The `text_completion` object; streamed chunks have the same shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// Exactly one choice.
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
    /// Always 0.
    pub index: u32,
    /// The generated text (or this chunk's piece of it).
    pub text: String,
    /// The tokens' log-probabilities when `logprobs` asked for them; null otherwise.
    #[schema(required = true)]
    pub logprobs: Option<CompletionLogprobs>,
}

impl TextCompletion {
    /// Wraps a finished generation; `with_logprobs` when the request asked for them.
    pub fn new(id: String, created: u64, model: String, output: GenerationOutput, with_logprobs: bool) -> Self {
        let choice = TextChoice {
            finish_reason: Some(output.summary.finish_reason.as_str()),
            index: 0,
            logprobs: with_logprobs.then(|| CompletionLogprobs::new(&output.logprobs, 0)),
            text: output.text,
        };
        Self {
            id,
            choices: vec![choice],
            created,
            model,
            object: "text_completion",
            system_fingerprint: None,
            usage: Some(output.summary.usage.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CompletionRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_single_prompt_spelling_is_accepted() {
        let text = PromptInput::Text("hi".into());
        assert_eq!(request(r#"{"model":"m","prompt":"hi"}"#).validate().unwrap().0, text);
        assert_eq!(request(r#"{"model":"m","prompt":["hi"]}"#).validate().unwrap().0, text);
        assert_eq!(request(r#"{"model":"m","prompt":[1,2]}"#).validate().unwrap().0, PromptInput::Tokens(vec![1, 2]));
        assert_eq!(request(r#"{"model":"m","prompt":[[3]]}"#).validate().unwrap().0, PromptInput::Tokens(vec![3]));
    }

    #[test]
    fn batches_and_extras_are_refused() {
        for body in [
            r#"{"model":"m","prompt":["a","b"]}"#,
            r#"{"model":"m","prompt":"a","echo":true}"#,
            r#"{"model":"m","prompt":"a","best_of":2}"#,
        ] {
            assert!(matches!(request(body).validate(), Err(ApiError::BadRequest(_))), "{body}");
        }
    }

    /// The Llama Stack SDK sends a boolean, OpenAI clients a count (0 still reports the chosen tokens).
    #[test]
    fn logprobs_in_either_spelling() {
        let alternatives = |body: &str| request(body).validate().unwrap().1.logprobs;
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":false}"#), None);
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a"}"#), None);
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":true}"#), Some(0));
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":0}"#), Some(0));
        assert_eq!(alternatives(r#"{"model":"m","prompt":"a","logprobs":3}"#), Some(3));
    }
}
