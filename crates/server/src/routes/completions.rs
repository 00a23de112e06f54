//! `POST /v1/completions` (legacy): a raw prompt, no chat template, streamed or not — parse the body,
//! run [`crate::pipeline::generate`], shape the answer. A list of prompts is answered with `n` choices
//! each (`index = prompt × n + choice`); with `echo` each choice's text starts with its prompt (streamed:
//! a first chunk per choice). With content safety on, each prompt is checked as one user turn and each
//! choice's output as the reply.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use llamagate_engine::{FinishReason, TokenLogprobs, Usage};
use serde_json::{Value, json};

use super::completions_types::{CompletionRequest, Echo, PromptInput, TextCompletion, ValidCompletion};

use crate::backends::prompt::Prompt;
use crate::backends::provider_data::ProviderData;
use crate::gate::caller::Caller;
use crate::http::error::ApiError;
use crate::http::json_body::JsonBody;
use crate::http::sse::ChunkFormat;
use crate::pipeline::{self, Ask};
use crate::routes::generation_fields::{GenerationFailures, UsageBody, response_id, unix_now};
use crate::routes::logprobs_body::CompletionLogprobs;
use crate::state::AppState;

/// Answers a legacy completion, streamed or not.
#[utoipa::path(post, path = "/v1/completions", operation_id = "create_completion", tag = "inference", request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events whose `data:` lines \
            are `text_completion` objects of the same shape, ending with `data: [DONE]`",
            content((TextCompletion = "application/json"), (TextCompletion = "text/event-stream"))),
        GenerationFailures,
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let ValidCompletion { prompts, params, n, echo } = request.validate()?;
    let echo = Echo::new(echo, &prompts, n);
    let prompts = prompts
        .into_iter()
        .map(|prompt| match prompt {
            PromptInput::Text(text) => Prompt::Text(text),
            PromptInput::Tokens(ids) => Prompt::Tokens(ids),
        })
        .collect();
    let stream = request.fields.streaming();
    let with_logprobs = params.logprobs.is_some();
    let provider_data = ProviderData::from_headers(&headers)?;
    let ask = Ask { model: request.model.clone(), prompts, n, params, stream, provider_data };

    let (id, created, model) = (response_id("cmpl"), unix_now(), request.model);
    let format = TextChunks {
        id: id.clone(),
        created,
        model: model.clone(),
        include_usage: request.fields.include_usage(),
        with_logprobs,
        chars_sent: Vec::new(),
        echo: echo.clone(),
    };
    pipeline::generate(&state, caller, ask, format, move |outputs, usage| {
        TextCompletion::new(id, created, model, outputs, usage, with_logprobs, &echo)
    })
    .await
}

/// Streamed `text_completion` objects: the same shape as the plain response, one piece of one choice's
/// text each.
struct TextChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// The request asked for `logprobs`: every text chunk carries its tokens'.
    with_logprobs: bool,
    /// Characters of text sent so far, per choice: where its next chunk's `text_offset`s start.
    chars_sent: Vec<usize>,
    /// The prompts to send first, when `echo` asked for them.
    echo: Echo,
}

impl TextChunks {
    fn chunk(
        &self,
        index: usize,
        text: &str,
        finish_reason: Option<&str>,
        logprobs: Option<CompletionLogprobs>,
    ) -> Value {
        json!({
            "id": self.id,
            "choices": [{ "finish_reason": finish_reason, "index": index, "text": text, "logprobs": logprobs }],
            "created": self.created,
            "model": self.model,
            "object": "text_completion",
            "system_fingerprint": null,
            "usage": null,
        })
    }

    /// Counts `text` as sent on choice `index` and returns where it starts.
    fn advance(&mut self, index: usize, text: &str) -> usize {
        if self.chars_sent.len() <= index {
            self.chars_sent.resize(index + 1, 0);
        }
        let offset = self.chars_sent[index];
        self.chars_sent[index] += text.chars().count();
        offset
    }
}

impl ChunkFormat for TextChunks {
    fn opening(&mut self, index: usize) -> Option<Value> {
        let prompt = self.echo.prompt_of(index).to_string();
        if prompt.is_empty() {
            return None;
        }
        self.advance(index, &prompt);
        Some(self.chunk(index, &prompt, None, None))
    }

    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> Vec<Value> {
        let offset = self.advance(index, text);
        vec![self.chunk(index, text, None, self.with_logprobs.then(|| CompletionLogprobs::new(logprobs, offset)))]
    }

    fn finished(&mut self, index: usize, finish_reason: FinishReason) -> Vec<Value> {
        vec![self.chunk(index, "", Some(finish_reason.as_str()), None)]
    }

    fn usage(&mut self, usage: Usage) -> Option<Value> {
        self.include_usage.then(|| {
            let mut chunk = self.chunk(0, "", None, None);
            chunk["choices"] = json!([]);
            chunk["usage"] = json!(UsageBody::from(usage));
            chunk
        })
    }
}
