//! `POST /v1/completions` (legacy): a raw prompt, no chat template, streamed or not. With content safety
//! on, the prompt is checked as one user turn and the output as the reply ([`crate::safety_gate`]).

use axum::extract::State;
use axum::response::Response;
use llamagate_engine::{ChatMessage, GenerationSummary};
use serde_json::{Value, json};

use super::completions_types::{CompletionRequest, PromptInput, TextCompletion};

use crate::app::AppState;
use crate::auth::authorize_model;
use crate::caller::Caller;
use crate::error::{ApiError, ErrorEnvelope};
use crate::generation_fields::{UsageBody, response_id, unix_now};
use crate::json_body::JsonBody;
use crate::sse::{self, ChunkFormat};
use crate::start;

/// Answers a legacy completion, streamed or not.
#[utoipa::path(post, path = "/v1/completions", operation_id = "create_completion", tag = "inference", request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events whose `data:` lines \
            are `text_completion` objects of the same shape, ending with `data: [DONE]`",
            content((TextCompletion = "application/json"), (TextCompletion = "text/event-stream"))),
        (status = 400, description = "Malformed body, a feature this server refuses, or input refused by content \
            safety (`type: content_policy_violation`, the violated `categories`; see docs/safety.md)", body = ErrorEnvelope),
        (status = 404, description = "No such model", body = ErrorEnvelope),
        (status = 413, description = "Body over `server.max_body_bytes`", body = ErrorEnvelope),
        (status = 429, description = "The caller's tier has no budget left for this request; `Retry-After`, \
            `x-ratelimit-*` and `RateLimit` headers say when (see `GET /v1/usage`)", body = ErrorEnvelope),
        (status = 503, description = "The model's engine queue is full (retry after `Retry-After` seconds), or the \
            rate limiter's Redis is unreachable in fail-closed mode", body = ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (prompt, mut params) = request.validate()?;
    params.priority = caller.priority();
    caller.note_model(&request.model);
    authorize_model(state.auth.as_deref(), &request.model, caller.principal())?;
    let served = state.registry.get(&request.model)?;
    let (prompt_ids, text) = match prompt {
        PromptInput::Text(text) => (served.engine.tokenize(&text)?, text),
        PromptInput::Tokens(ids) => {
            let text = served.engine.tokenizer().decode(&ids);
            (ids, text)
        }
    };
    let prepared = served.engine.prepare(prompt_ids, params)?;
    // Content safety judges a raw prompt as the user's turn.
    let conversation = [ChatMessage::new("user", text)];
    let (generation, admission) =
        start::generation(&state, &caller, &request.model, &served.engine, prepared, &conversation).await?;

    let (id, created, model) = (response_id("cmpl"), unix_now(), request.model);
    let format =
        TextChunks { id: id.clone(), created, model: model.clone(), include_usage: request.fields.include_usage() };
    sse::respond(generation, admission, request.fields.streaming(), format, |output| {
        TextCompletion::new(id, created, model, output)
    })
    .await
}

/// Streamed `text_completion` objects: the same shape as the plain response, one piece of text each.
struct TextChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl TextChunks {
    fn chunk(&self, text: &str, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "choices": [{ "finish_reason": finish_reason, "index": 0, "text": text, "logprobs": null }],
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

    fn text(&self, text: &str) -> Value {
        self.chunk(text, None)
    }

    fn finished(&self, summary: &GenerationSummary) -> Vec<Value> {
        let mut chunks = vec![self.chunk("", Some(summary.finish_reason.as_str()))];
        if self.include_usage {
            let mut usage = self.chunk("", None);
            usage["choices"] = json!([]);
            usage["usage"] = json!(UsageBody::from(summary.usage));
            chunks.push(usage);
        }
        chunks
    }
}
