//! `POST /v1/completions` (legacy): a raw prompt, no chat template, streamed or not — parse the body,
//! run [`crate::pipeline::generate`], shape the answer. With content safety on, the prompt is checked
//! as one user turn and the output as the reply.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};

use llamagate_engine::{GenerationSummary, TokenLogprobs};
use serde_json::{Value, json};

use super::completions_types::{CompletionRequest, PromptInput, TextCompletion};

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
    let (prompt, params) = request.validate()?;
    let prompt = match prompt {
        PromptInput::Text(text) => Prompt::Text(text),
        PromptInput::Tokens(ids) => Prompt::Tokens(ids),
    };
    let stream = request.fields.streaming();
    let with_logprobs = params.logprobs.is_some();
    let provider_data = ProviderData::from_headers(&headers)?;
    let ask = Ask { model: request.model.clone(), prompt, params, stream, provider_data };

    let (id, created, model) = (response_id("cmpl"), unix_now(), request.model);
    let format = TextChunks {
        id: id.clone(),
        created,
        model: model.clone(),
        include_usage: request.fields.include_usage(),
        with_logprobs,
        chars_sent: AtomicUsize::new(0),
    };
    pipeline::generate(&state, caller, ask, format, |output| {
        TextCompletion::new(id, created, model, output, with_logprobs)
    })
    .await
}

/// Streamed `text_completion` objects: the same shape as the plain response, one piece of text each.
struct TextChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// The request asked for `logprobs`: every text chunk carries its tokens'.
    with_logprobs: bool,
    /// Characters of text sent so far: where the next chunk's `text_offset`s start.
    chars_sent: AtomicUsize,
}

impl TextChunks {
    fn chunk(&self, text: &str, finish_reason: Option<&str>, logprobs: Option<CompletionLogprobs>) -> Value {
        json!({
            "id": self.id,
            "choices": [{ "finish_reason": finish_reason, "index": 0, "text": text, "logprobs": logprobs }],
            "created": self.created,
            "model": self.model,
            "object": "text_completion",
            "system_fingerprint": null,
            "usage": null,
        })
    }
}

impl ChunkFormat for TextChunks {
    fn opening(&self) -> Option<Value> {
        None
    }

    fn text(&self, text: &str, logprobs: &[TokenLogprobs]) -> Value {
        let offset = self.chars_sent.fetch_add(text.chars().count(), Ordering::Relaxed);
        self.chunk(text, None, self.with_logprobs.then(|| CompletionLogprobs::new(logprobs, offset)))
    }

    fn finished(&self, summary: &GenerationSummary) -> Vec<Value> {
        let mut chunks = vec![self.chunk("", Some(summary.finish_reason.as_str()), None)];
        if self.include_usage {
            let mut usage = self.chunk("", None, None);
            usage["choices"] = json!([]);
            usage["usage"] = json!(UsageBody::from(summary.usage));
            chunks.push(usage);
        }
        chunks
    }
}
