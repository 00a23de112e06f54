//! `POST /v1/chat/completions`: validate, resolve the model, render and tokenize, generate.
//!
//! The body is fully validated before the model is looked up, as Llama Stack does, so a bad body is a
//! 400 even for an unknown model. Streaming hands the engine stream to [`crate::sse`]; the plain
//! response waits for the whole generation. Either way, dropping the response cancels the generation.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use llamagate_engine::GenerationSummary;
use serde_json::{Value, json};

use super::chat_types::{ChatCompletion, ChatCompletionRequest};
use llamagate_authz::Principal;

use crate::app::AppState;
use crate::auth::authorize_model;
use crate::error::ApiError;
use crate::generation_fields::{UsageBody, response_id, unix_now};
use crate::json_body::JsonBody;
use crate::sse::{self, ChunkFormat};

/// Answers a chat completion, streamed or not.
pub async fn create(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    JsonBody(request): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let (messages, params) = request.validate()?;
    authorize_model(state.auth.as_deref(), &request.model, principal.as_deref())?;
    let served = state.registry.get(&request.model)?;
    let prompt = served.engine.render_chat(&messages)?;
    let prompt_ids = served.engine.tokenize(&prompt)?;
    let generation = served.engine.submit(served.engine.prepare(prompt_ids, params)?)?;

    let (id, created, model) = (response_id("chatcmpl"), unix_now(), request.model);
    let format =
        ChatChunks { id: id.clone(), created, model: model.clone(), include_usage: request.fields.include_usage() };
    sse::respond(generation, request.fields.streaming(), format, |output| {
        ChatCompletion::new(id, created, model, output)
    })
    .await
}

/// `chat.completion.chunk` objects for one stream; all keys present, nulls included (§a.5).
struct ChatChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChatChunks {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "choices": [{ "delta": delta, "finish_reason": finish_reason, "index": 0, "logprobs": null }],
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": null,
            "system_fingerprint": null,
            "usage": null,
        })
    }
}

fn delta(role: Option<&str>, content: Option<&str>) -> Value {
    json!({ "content": content, "refusal": null, "role": role, "tool_calls": null, "reasoning_content": null })
}

impl ChunkFormat for ChatChunks {
    fn opening(&self) -> Option<Value> {
        Some(self.chunk(delta(Some("assistant"), Some("")), None))
    }

    fn text(&self, text: &str) -> Value {
        self.chunk(delta(None, Some(text)), None)
    }

    fn finished(&self, summary: &GenerationSummary) -> Vec<Value> {
        let mut chunks = vec![self.chunk(delta(None, None), Some(summary.finish_reason.as_str()))];
        if self.include_usage {
            // OpenAI's usage chunk: no choices, usage filled in.
            let mut usage = self.chunk(Value::Null, None);
            usage["choices"] = json!([]);
            usage["usage"] = json!(UsageBody::from(summary.usage));
            chunks.push(usage);
        }
        chunks
    }
}
