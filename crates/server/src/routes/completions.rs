//! `POST /v1/completions` (legacy): a raw prompt, no chat template, streamed or not.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use llamagate_engine::GenerationSummary;
use serde_json::{Value, json};

use super::completions_types::{CompletionRequest, PromptInput, TextCompletion};
use llamagate_authz::Principal;

use crate::app::AppState;
use crate::auth::authorize_model;
use crate::error::ApiError;
use crate::generation_fields::{UsageBody, response_id, unix_now};
use crate::json_body::JsonBody;
use crate::sse::{self, ChunkFormat};

/// Answers a legacy completion, streamed or not.
pub async fn create(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    JsonBody(request): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (prompt, params) = request.validate()?;
    authorize_model(state.auth.as_deref(), &request.model, principal.as_deref())?;
    let served = state.registry.get(&request.model)?;
    let prompt_ids = match prompt {
        PromptInput::Text(text) => served.engine.tokenize(&text)?,
        PromptInput::Tokens(ids) => ids,
    };
    let generation = served.engine.submit(served.engine.prepare(prompt_ids, params)?)?;

    let (id, created, model) = (response_id("cmpl"), unix_now(), request.model);
    let format =
        TextChunks { id: id.clone(), created, model: model.clone(), include_usage: request.fields.include_usage() };
    sse::respond(generation, request.fields.streaming(), format, |output| {
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
