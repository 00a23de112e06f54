//! The request fields chat completions and legacy completions share, and their translation into the
//! engine's [`GenerateParams`].
//!
//! Both routes flatten [`GenerationFields`] into their body type, so the rules (defaults, `n = 1`, stop
//! strings) are written once. Anything we cannot honour is rejected with a 400 that says so: silently
//! ignoring a parameter would hand the client an answer to a question it did not ask.

use llamagate_engine::{GenerateParams, SamplingParams, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};

use crate::http::error::{ApiError, ErrorEnvelope};

/// OpenAI's default temperature; clients that omit it expect sampling, not greedy decoding.
const DEFAULT_TEMPERATURE: f32 = 1.0;

/// OpenAI allows at most four stop sequences; more would only slow every decode step.
const MAX_STOP_SEQUENCES: usize = 4;

/// OpenAI allows at most 300 `logit_bias` entries.
const MAX_LOGIT_BIAS: usize = 300;

/// The most choices (`n`) one request may ask for: the choices decode side by side in the engine's
/// batch (8 sequences by default), and each reserves `max_tokens` of the caller's budget and of KV
/// memory. Eight covers what clients use `n` for (a few candidates to rank) without letting one
/// request take a whole batch of a larger model's slots.
pub const MAX_CHOICES: u32 = 8;

/// A caller's string, cut for an error message.
fn bounded(text: &str) -> String {
    text.chars().take(32).collect()
}

/// The JSON type of `value`, for an error message that does not echo the value.
fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Sampling and delivery fields common to `/v1/chat/completions` and `/v1/completions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct GenerationFields {
    /// Tokens to generate at most (the context window caps it further).
    pub max_tokens: Option<u32>,
    /// In [0, 2]; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: Option<f32>,
    /// Same seed, same output. OpenAI documents it as a signed integer.
    pub seed: Option<i64>,
    /// In [-2, 2].
    pub frequency_penalty: Option<f32>,
    /// In [-2, 2].
    pub presence_penalty: Option<f32>,
    /// One stop string or a list of them.
    pub stop: Option<Stop>,
    /// Number of choices, 1 to 8; they share one prefill of the prompt and each is sampled with its own
    /// seed (derived from `seed` and its index).
    pub n: Option<u32>,
    /// Answer as server-sent events.
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    pub stream_options: Option<StreamOptions>,
    /// Token id → bias added to its logit before sampling, each in [-100, 100] (at most 300 entries).
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    // `user` (an end-user id for abuse tracking) is accepted like any unknown key and not kept:
    // it influences nothing here and is personal data we have no reason to log.
}

/// `stop` as either spelling OpenAI accepts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// Options for a streamed response.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with the token usage before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl GenerationFields {
    /// Whether the client asked for server-sent events.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed response should end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// How many choices the client asked for (`n`, default 1): a 400 naming `n` outside 1..=[`MAX_CHOICES`].
    pub fn choices(&self) -> Result<usize, ApiError> {
        match self.n.unwrap_or(1) {
            n @ 1..=MAX_CHOICES => Ok(n as usize),
            n => Err(ApiError::BadRequest(format!("n must be between 1 and {MAX_CHOICES}; got {n}"))),
        }
    }

    /// Checks the fields and builds the engine's parameters; `max_tokens` may be overridden by a
    /// route-specific spelling (`max_completion_tokens`). `priority` is left at 0: it belongs to the
    /// caller's tier, not to the body, and the route sets it from [`crate::gate::caller::Caller::priority`].
    pub fn to_params(&self, max_tokens: Option<u32>) -> Result<GenerateParams, ApiError> {
        self.choices()?;
        if self.stream_options.is_some() && !self.streaming() {
            return Err(ApiError::BadRequest("stream_options is only allowed when stream is true".into()));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        };
        if stop.len() > MAX_STOP_SEQUENCES || stop.iter().any(String::is_empty) {
            return Err(ApiError::BadRequest(format!("stop must hold at most {MAX_STOP_SEQUENCES} non-empty strings")));
        }
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_p: self.top_p.unwrap_or(1.0),
            seed: self.seed.map(|s| s as u64),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            logit_bias: self.logit_bias()?,
            ..Default::default()
        };
        let max_tokens = max_tokens.or(self.max_tokens).map(|n| n as usize);
        Ok(GenerateParams {
            sampling,
            max_tokens,
            stop,
            priority: 0,
            prefix_scope: 0,
            logprobs: None,
            output_format: None,
        })
    }

    /// `logit_bias` as (token id, bias) pairs: keys are token ids written as strings, values numbers
    /// (their range, and the ids against the vocabulary, are checked by the engine). At most
    /// [`MAX_LOGIT_BIAS`] entries, OpenAI's limit, so a body cannot make every step walk a huge map.
    fn logit_bias(&self) -> Result<Vec<(u32, f32)>, ApiError> {
        let Some(map) = &self.logit_bias else { return Ok(Vec::new()) };
        if map.len() > MAX_LOGIT_BIAS {
            return Err(ApiError::BadRequest(format!("logit_bias may hold at most {MAX_LOGIT_BIAS} entries")));
        }
        map.iter()
            .map(|(key, value)| {
                let id = key.parse::<u32>().map_err(|_| {
                    ApiError::BadRequest(format!("logit_bias keys must be token ids; got '{}'", bounded(key)))
                })?;
                let bias = value.as_f64().ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "logit_bias values must be numbers; token {id} has {}",
                        value_kind(value)
                    ))
                })?;
                Ok((id, bias as f32))
            })
            .collect()
    }
}

/// The failures of both generation routes (chat and completions), documented once for the OpenAPI
/// document; each answer is the error envelope.
#[derive(IntoResponses)]
pub enum GenerationFailures {
    /// A 400.
    #[response(
        status = 400,
        description = "Malformed body, a feature this server refuses, or input refused by content safety \
            (`type: content_policy_violation`, the violated `categories`; see docs/safety.md)"
    )]
    BadRequest(ErrorEnvelope),
    /// A 404.
    #[response(status = 404, description = "No such model")]
    ModelNotFound(ErrorEnvelope),
    /// A 413.
    #[response(status = 413, description = "Body over `server.max_body_bytes`")]
    PayloadTooLarge(ErrorEnvelope),
    /// A 429.
    #[response(
        status = 429,
        description = "The caller's tier has no budget left for this request; `Retry-After`, `x-ratelimit-*` and \
            `RateLimit` headers say when (see `GET /v1/usage`)"
    )]
    RateLimited(ErrorEnvelope),
    /// A 503.
    #[response(
        status = 503,
        description = "The model's engine queue is full (retry after `Retry-After` seconds), the rate limiter's \
            Redis is unreachable in fail-closed mode, or a remote model's provider is busy or has no healthy upstream",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(ErrorEnvelope),
    /// A 502.
    #[response(
        status = 502,
        description = "A remote model's provider could not be reached or failed; the message names the provider, \
            never its address"
    )]
    BadGateway(ErrorEnvelope),
    /// A 504.
    #[response(status = 504, description = "A remote model's provider did not answer within its timeouts")]
    GatewayTimeout(ErrorEnvelope),
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageBody {
    /// Tokens in the prompt, as the engine counted them.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The sum of both.
    pub total_tokens: usize,
    /// Prompt tokens served from a cache (docs/reference/llama-stack-api.md §a.6 carries the breakdown).
    pub prompt_tokens_details: PromptTokensDetails,
    /// What the completion tokens were spent on.
    pub completion_tokens_details: CompletionTokensDetails,
}

/// The prompt-token breakdown OpenAI reports.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Always 0: the engine keeps no prefix cache between requests.
    pub cached_tokens: usize,
}

/// The completion-token breakdown OpenAI reports.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionTokensDetails {
    /// Always 0: no reasoning trace is separated from the answer.
    pub reasoning_tokens: usize,
}

impl From<Usage> for UsageBody {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: PromptTokensDetails { cached_tokens: 0 },
            completion_tokens_details: CompletionTokensDetails { reasoning_tokens: 0 },
        }
    }
}

/// A fresh response id such as `chatcmpl-3f2a…`; random so ids do not leak request volume.
pub fn response_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> GenerationFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn stop_accepts_a_string_or_a_list() {
        assert_eq!(fields(r#"{"stop":"x"}"#).to_params(None).unwrap().stop, ["x"]);
        assert_eq!(fields(r#"{"stop":["a","b"]}"#).to_params(None).unwrap().stop, ["a", "b"]);
    }

    #[test]
    fn n_is_bounded_and_named_when_refused() {
        assert_eq!(fields(r#"{}"#).choices().unwrap(), 1);
        assert_eq!(fields(r#"{"n":8}"#).choices().unwrap(), 8);
        for body in [r#"{"n":0}"#, r#"{"n":9}"#] {
            match fields(body).to_params(None) {
                Err(ApiError::BadRequest(message)) => assert!(message.starts_with("n must be"), "{message}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn logit_bias_is_read_as_token_ids_and_bad_keys_are_refused() {
        let bias = fields(r#"{"logit_bias":{"42":-100,"7":5.5}}"#).to_params(None).unwrap().sampling.logit_bias;
        assert_eq!(bias, [(42, -100.0), (7, 5.5)]);
        assert!(fields(r#"{"logit_bias":{"x":1}}"#).to_params(None).is_err());
        assert!(fields(r#"{"logit_bias":{"1":"a"}}"#).to_params(None).is_err());
    }

    #[test]
    fn the_body_cannot_choose_a_priority() {
        assert_eq!(fields(r#"{"priority":255}"#).to_params(None).unwrap().priority, 0);
    }

    #[test]
    fn the_route_specific_max_tokens_wins() {
        assert_eq!(fields(r#"{"max_tokens":5}"#).to_params(Some(3)).unwrap().max_tokens, Some(3));
        assert_eq!(fields(r#"{"max_tokens":5}"#).to_params(None).unwrap().max_tokens, Some(5));
    }
}
