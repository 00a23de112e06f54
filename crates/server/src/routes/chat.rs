//! `POST /v1/chat/completions`: parse the body, run [`crate::pipeline::generate`], shape the answer.
//!
//! The body is fully validated before the model is looked up, as Llama Stack does, so a bad body is a
//! 400 even for an unknown model. Streaming answers with `chat.completion.chunk` events
//! ([`ChatChunks`]); the plain response waits for the whole generation. Either way, dropping the
//! response cancels the generation. With tools, each choice's output is read for calls
//! ([`crate::routes::chat_tool_calls`]); a stream holds text back while it may be a call.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use llamagate_engine::{ChatTools, FinishReason, OutputFormat, TokenLogprobs, ToolCallFormat, Usage};
use serde_json::{Value, json};
use std::mem;

use super::chat_tool_calls::{HeldOutput, StreamEnd, ToolReader, finish_reason};
use super::chat_types::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatInput, ChunkChoice, ChunkDelta,
};

use crate::backends::prompt::Prompt;
use crate::backends::provider_data::ProviderData;
use crate::gate::caller::Caller;
use crate::http::error::ApiError;
use crate::http::json_body::JsonBody;
use crate::http::sse::ChunkFormat;
use crate::pipeline::{self, Ask};
use crate::routes::generation_fields::{GenerationFailures, UsageBody, response_id, unix_now};
use crate::routes::logprobs_body::ChatLogprobs;
use crate::state::AppState;

/// Answers a chat completion, streamed or not.
#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "create_chat_completion", tag = "inference", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events whose `data:` lines \
            are `chat.completion.chunk` objects, ending with `data: [DONE]` (an error mid-stream arrives as a \
            final `{\"error\":{...}}` event)",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        GenerationFailures,
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let ChatInput { messages, mut params, tools, tool_mode } = request.validate()?;
    let n = request.fields.choices()?;
    let stream = request.fields.streaming();
    let with_logprobs = params.logprobs.is_some();
    let provider_data = ProviderData::from_headers(&headers)?;
    // Only to read the answer: the format the model writes calls in. Whether the caller may use the
    // model (and the 404 for one it may not see) is decided in the pipeline before anything runs; a
    // remote model refuses tools there.
    let call_format =
        state.registry.get(&request.model).ok().and_then(|served| served.backend.local().map(|m| m.tool_call_format()));
    // A primed call's arguments are held to the function's `parameters` schema by the grammar engine.
    if let (Some(tools), Some(format)) = (&tools, call_format) {
        params.output_format = primed_arguments(tools, format);
    }
    let tool_reader = call_format.and_then(|format| ToolReader::new(format, tool_mode));
    let prompts = vec![Prompt::Chat(messages, tools)];
    let ask = Ask { model: request.model.clone(), prompts, n, params, stream, provider_data };

    let (id, created, model) = (response_id("chatcmpl"), unix_now(), request.model);
    let include_usage = request.fields.include_usage();
    let format = ChatChunks {
        id: id.clone(),
        created,
        model: model.clone(),
        include_usage,
        with_logprobs,
        tools: tool_reader.clone(),
        held: Vec::new(),
    };
    pipeline::generate(&state, caller, ask, format, |outputs, usage| {
        ChatCompletion::new(id, created, model, outputs, usage, with_logprobs, tool_reader.as_ref())
    })
    .await
}

/// `chat.completion.chunk` objects for one stream; all keys present, nulls included (§a.5).
struct ChatChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// The request asked for `logprobs`: every content chunk carries its tokens'.
    with_logprobs: bool,
    /// How outputs are read for tool calls; `None` without tools.
    tools: Option<ToolReader>,
    /// Per choice: the output held back while it may be a call, and its tokens' log-probabilities.
    held: Vec<(HeldOutput, Vec<TokenLogprobs>)>,
}

impl ChatChunks {
    /// A content chunk for choice `index`.
    fn content(&self, index: usize, text: String, logprobs: &[TokenLogprobs]) -> Value {
        let delta = ChunkDelta { content: Some(text), ..Default::default() };
        self.chunk(choice(index, delta, None, self.with_logprobs.then(|| ChatLogprobs::new(logprobs))), None)
    }

    /// Choice `index`'s held output.
    fn held(&mut self, index: usize) -> &mut (HeldOutput, Vec<TokenLogprobs>) {
        if self.held.len() <= index {
            self.held.resize_with(index + 1, Default::default);
        }
        &mut self.held[index]
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<UsageBody>) -> Value {
        json!(ChatCompletionChunk {
            id: self.id.clone(),
            choices,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            service_tier: None,
            system_fingerprint: None,
            usage,
        })
    }
}

/// The one choice of a chunk: each chunk carries one choice's piece, with that choice's `index`.
fn choice(
    index: usize,
    delta: ChunkDelta,
    finish_reason: Option<&'static str>,
    logprobs: Option<ChatLogprobs>,
) -> Vec<ChunkChoice> {
    vec![ChunkChoice { delta, finish_reason, index: index as u32, logprobs }]
}

impl ChunkFormat for ChatChunks {
    fn opening(&mut self, index: usize) -> Option<Value> {
        let delta = ChunkDelta { role: Some("assistant"), content: Some(String::new()), ..Default::default() };
        Some(self.chunk(choice(index, delta, None, None), None))
    }

    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> Vec<Value> {
        let Some(reader) = self.tools.clone() else {
            return vec![self.content(index, text.to_string(), logprobs)];
        };
        let (held, held_logprobs) = self.held(index);
        let released = held.push(&reader, text);
        held_logprobs.extend_from_slice(logprobs);
        if released.is_empty() {
            return Vec::new();
        }
        let logprobs = mem::take(held_logprobs);
        vec![self.content(index, released, &logprobs)]
    }

    fn finished(&mut self, index: usize, reason: FinishReason) -> Vec<Value> {
        let mut chunks = Vec::new();
        let mut finish = reason.as_str();
        if let Some(reader) = self.tools.clone() {
            let (held, held_logprobs) = self.held(index);
            // A refused output is cut where the check stopped it: never read as calls.
            let end = held.finish(&reader, reason != FinishReason::ContentFilter);
            let logprobs = mem::take(held_logprobs);
            match end {
                StreamEnd::Calls(calls) => {
                    finish = finish_reason(reason, true);
                    let delta = ChunkDelta { tool_calls: Some(calls), ..Default::default() };
                    let logprobs = self.with_logprobs.then(|| ChatLogprobs::new(&logprobs));
                    chunks.push(self.chunk(choice(index, delta, None, logprobs), None));
                }
                StreamEnd::Text(rest) if !rest.is_empty() || !logprobs.is_empty() => {
                    chunks.push(self.content(index, rest, &logprobs));
                }
                StreamEnd::Text(_) => {}
            }
        }
        chunks.push(self.chunk(choice(index, ChunkDelta::default(), Some(finish), None), None));
        chunks
    }

    fn usage(&mut self, usage: Usage) -> Option<Value> {
        // OpenAI's usage chunk: no choices, usage filled in.
        self.include_usage.then(|| self.chunk(Vec::new(), Some(UsageBody::from(usage))))
    }
}

/// The grammar for the rest of a primed call (a named `tool_choice`): arguments matching the function's
/// `parameters` (any object when it has none), then the format's closing text. `None` when no call is
/// primed or the format's arguments are not JSON (pythonic).
fn primed_arguments(tools: &ChatTools, format: ToolCallFormat) -> Option<OutputFormat> {
    let name = tools.primed.as_deref()?;
    let closing = format.primed_call_closing()?;
    let function = tools.definitions.iter().map(|tool| &tool["function"]).find(|function| function["name"] == name)?;
    let schema = match &function["parameters"] {
        Value::Object(schema) if !schema.is_empty() => Value::Object(schema.clone()),
        _ => serde_json::json!({"type": "object"}),
    };
    Some(OutputFormat::ToolArguments { schema, closing: closing.to_string() })
}
