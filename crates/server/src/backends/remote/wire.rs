//! OpenAI's wire format, both ways: the body sent to an upstream ([`RemoteRequest::body`]) and the
//! translation of its server-sent chunks into the engine's [`GenerationEvent`]s ([`ChunkReader`]), so
//! that everything after the backend — output safety, our own SSE framing, settlement — is the same
//! for local and remote models.
//!
//! The upstream is asked for the shape our client asked for. A stream is requested with
//! `stream_options.include_usage`, so its last chunk carries the upstream's counts; the read timeout
//! applies between chunks, and a client disconnect closes the upstream connection at once. A
//! non-streamed request is sent non-streamed: the upstream does less work (no per-token framing), the
//! answer and its `usage` come in one body, read as one chunk ([`ChunkReader::read_whole`]), and the
//! read timeout bounds the wait for that whole body.

use std::time::{Duration, Instant};

use llamagate_engine::{ChatMessage, FinishReason, GenerateParams, GenerationEvent, GenerationSummary, Timings, Usage};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What a remote model is asked for.
#[derive(Debug)]
pub enum RemoteInput {
    /// A conversation (`/chat/completions`).
    Chat(Vec<ChatMessage>),
    /// A raw prompt (`/completions`).
    Text(String),
    /// A raw prompt as token ids (`/completions`; the ids are the upstream's tokenizer's).
    Tokens(Vec<u32>),
}

/// A remote generation ready to send: the input, the sampling, and what was reserved for it.
#[derive(Debug)]
pub struct RemoteRequest {
    /// The input.
    pub input: RemoteInput,
    /// Sampling and stop strings.
    pub params: GenerateParams,
    /// Completion tokens asked for — and reserved: the upstream is never allowed more.
    pub max_tokens: usize,
    /// The prompt's token count before the call: what is reserved, and what is charged if the upstream
    /// reports no usage.
    pub prompt_estimate: usize,
    /// How `prompt_estimate` was counted.
    pub prompt_count: PromptCount,
    /// Whether the upstream is asked for a stream: whether our client asked for one.
    pub stream: bool,
}

/// How a remote prompt's tokens were counted before the call, for the audit record's `prompt_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptCount {
    /// With the model's own tokenizer and chat template: exact for a server running that model.
    Tokenizer,
    /// From the bytes ([`estimate_prompt_tokens`]): never below the real count.
    Estimate,
}

impl PromptCount {
    /// The audit record's `prompt_count`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenizer => "tokenizer",
            Self::Estimate => "estimate",
        }
    }
}

/// Tokens per message for the chat template's markers (role headers, end-of-turn), counted generously.
const TEMPLATE_TOKENS_PER_MESSAGE: usize = 8;

/// A conservative prompt token count without the upstream's tokenizer: one token per byte of text (a
/// BPE token is almost always at least one byte), plus the template's markers. Settled to the upstream's
/// real count when it reports one.
pub fn estimate_prompt_tokens(input: &RemoteInput) -> usize {
    match input {
        RemoteInput::Chat(messages) => {
            messages.iter().map(|m| m.role.len() + m.content.len() + TEMPLATE_TOKENS_PER_MESSAGE).sum::<usize>()
                + TEMPLATE_TOKENS_PER_MESSAGE
        }
        RemoteInput::Text(text) => text.len() + 1,
        RemoteInput::Tokens(ids) => ids.len(),
    }
}

impl RemoteRequest {
    /// The path under the provider's base URL.
    pub fn path(&self) -> &'static str {
        match self.input {
            RemoteInput::Chat(_) => "/chat/completions",
            RemoteInput::Text(_) | RemoteInput::Tokens(_) => "/completions",
        }
    }

    /// Whether the answer is chat chunks (`delta.content`) or completion chunks (`text`).
    pub fn is_chat(&self) -> bool {
        matches!(self.input, RemoteInput::Chat(_))
    }

    /// The JSON body for `model` (the upstream's id): streamed with usage requested, or not streamed
    /// (a whole answer carries its `usage` anyway).
    pub fn body(&self, model: &str) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        match &self.input {
            RemoteInput::Chat(messages) => {
                let messages: Vec<Value> =
                    messages.iter().map(|m| json!({ "role": m.role, "content": m.content })).collect();
                body.insert("messages".into(), json!(messages));
            }
            RemoteInput::Text(text) => {
                body.insert("prompt".into(), json!(text));
            }
            RemoteInput::Tokens(ids) => {
                body.insert("prompt".into(), json!(ids));
            }
        }
        body.insert("max_tokens".into(), json!(self.max_tokens));
        body.insert("stream".into(), json!(self.stream));
        if self.stream {
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        let sampling = &self.params.sampling;
        body.insert("temperature".into(), json!(sampling.temperature));
        body.insert("top_p".into(), json!(sampling.top_p));
        // Only what the caller set: hosted APIs refuse parameters they do not know (`top_k`).
        if sampling.top_k > 0 {
            body.insert("top_k".into(), json!(sampling.top_k));
        }
        if let Some(seed) = sampling.seed {
            body.insert("seed".into(), json!(seed));
        }
        if sampling.frequency_penalty != 0.0 {
            body.insert("frequency_penalty".into(), json!(sampling.frequency_penalty));
        }
        if sampling.presence_penalty != 0.0 {
            body.insert("presence_penalty".into(), json!(sampling.presence_penalty));
        }
        if !sampling.logit_bias.is_empty() {
            let bias: Map<String, Value> =
                sampling.logit_bias.iter().map(|(id, bias)| (id.to_string(), json!(bias))).collect();
            body.insert("logit_bias".into(), Value::Object(bias));
        }
        if !self.params.stop.is_empty() {
            body.insert("stop".into(), json!(self.params.stop));
        }
        Value::Object(body)
    }
}

/// Where a generation's token counts came from, for the audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageSource {
    /// The upstream's `usage`.
    Upstream,
    /// Our estimate: the upstream reported none.
    Estimate,
}

impl UsageSource {
    /// The audit record's `usage_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Estimate => "estimate",
        }
    }
}

/// One streamed chunk, as far as it is read: the first choice's text and finish reason, and usage.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    /// A stream chunk's piece of a chat answer.
    #[serde(default)]
    delta: Option<Delta>,
    /// A whole chat answer (not streamed).
    #[serde(default)]
    message: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Reads an upstream's chunks, one `data:` payload at a time, into generation events.
#[derive(Debug)]
pub struct ChunkReader {
    chat: bool,
    prompt_estimate: usize,
    pieces: usize,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// When the call was made, and when its first text arrived: the summary's timings.
    started: Instant,
    first_text: Option<Instant>,
}

impl ChunkReader {
    /// A reader for chat (`true`) or completion chunks of a call made at `started`.
    pub fn new(chat: bool, prompt_estimate: usize, started: Instant) -> Self {
        Self { chat, prompt_estimate, pieces: 0, finish_reason: None, usage: None, started, first_text: None }
    }

    /// The event for one `data:` payload (none for a chunk without text); `Err` when the payload is not
    /// a chunk or is an error — the message is ours, never the upstream's text.
    pub fn read(&mut self, data: &str) -> Result<Option<GenerationEvent>, &'static str> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|_| "the provider sent a malformed chunk")?;
        if chunk.error.is_some() {
            return Err("the provider's stream ended with an error");
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens });
        }
        let Some(choice) = chunk.choices.into_iter().next() else { return Ok(None) };
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish_reason = Some(finish_reason(reason));
        }
        let text = if self.chat { choice.delta.or(choice.message).and_then(|d| d.content) } else { choice.text };
        match text.filter(|t| !t.is_empty()) {
            Some(text) => {
                self.pieces += 1;
                self.first_text.get_or_insert_with(Instant::now);
                // One piece is one token for llama.cpp, vLLM and TGI; what a disconnect is charged.
                Ok(Some(GenerationEvent::Text { text, token: Some(0), logprobs: Vec::new() }))
            }
            None => Ok(None),
        }
    }

    /// The event for a whole (non-streamed) answer's body: one chunk with all the text. Without the
    /// upstream's `usage` its completion is estimated at a token per byte, as the prompt is.
    pub fn read_whole(&mut self, body: &[u8]) -> Result<Option<GenerationEvent>, &'static str> {
        let body = std::str::from_utf8(body).map_err(|_| "the provider sent a malformed answer")?;
        let event = self.read(body).map_err(|_| "the provider sent a malformed answer")?;
        if let Some(GenerationEvent::Text { text, .. }) = &event {
            self.pieces = text.len();
        }
        Ok(event)
    }

    /// The summary once the stream ended (`[DONE]` or the end of the body), and where its counts came from.
    pub fn finish(self) -> (GenerationSummary, UsageSource) {
        let (usage, source) = match self.usage {
            Some(usage) => (usage, UsageSource::Upstream),
            None => {
                (Usage { prompt_tokens: self.prompt_estimate, completion_tokens: self.pieces }, UsageSource::Estimate)
            }
        };
        let finish_reason = self.finish_reason.unwrap_or_default();
        // The upstream's queue and prefill are one wait from here: "prefill" is the time to the first text.
        let now = Instant::now();
        let first = self.first_text.unwrap_or(now);
        let timings = Timings {
            queued: Duration::ZERO,
            prefill: first.saturating_duration_since(self.started),
            decode: now.saturating_duration_since(first),
        };
        (GenerationSummary { finish_reason, usage, timings }, source)
    }
}

/// OpenAI's finish reasons in ours; anything else (`tool_calls`, `eos`) ended the turn.
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_asks_for_a_stream_with_usage_and_only_the_set_parameters() {
        let mut params = GenerateParams { stop: vec!["\n\n".into()], ..GenerateParams::default() };
        params.sampling.seed = Some(7);
        let input = RemoteInput::Chat(vec![ChatMessage::new("user", "Hi")]);
        let request = RemoteRequest {
            prompt_estimate: estimate_prompt_tokens(&input),
            prompt_count: PromptCount::Estimate,
            input,
            params,
            max_tokens: 16,
            stream: true,
        };
        let body = request.body("upstream-model");
        assert_eq!(body["model"], "upstream-model");
        assert_eq!(body["messages"], json!([{ "role": "user", "content": "Hi" }]));
        assert_eq!(
            (body["stream"].clone(), body["stream_options"]["include_usage"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!((body["max_tokens"].clone(), body["seed"].clone()), (json!(16), json!(7)));
        assert_eq!(body["stop"], json!(["\n\n"]));
        assert!(body.get("top_k").is_none() && body.get("logit_bias").is_none());
        assert_eq!(request.path(), "/chat/completions");
        assert_eq!(request.prompt_estimate, 4 + 2 + 8 + 8);
        let whole = RemoteRequest { stream: false, ..request }.body("upstream-model");
        assert_eq!(whole["stream"], json!(false));
        assert!(whole.get("stream_options").is_none(), "{whole}");
    }

    #[test]
    fn a_whole_answer_is_one_text_event_with_the_upstreams_usage() {
        let mut reader = ChunkReader::new(true, 100, Instant::now());
        let body =
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        assert_eq!(
            reader.read_whole(body).unwrap(),
            Some(GenerationEvent::Text { text: "Paris.".into(), token: Some(0), logprobs: Vec::new() })
        );
        let (summary, source) = reader.finish();
        assert_eq!((summary.usage, source), (Usage { prompt_tokens: 12, completion_tokens: 3 }, UsageSource::Upstream));
        // No usage: a token per byte of the answer.
        let mut reader = ChunkReader::new(false, 7, Instant::now());
        assert!(
            reader
                .read_whole(br#"{"choices":[{"index":0,"text":"abcd","finish_reason":"length"}]}"#)
                .unwrap()
                .is_some()
        );
        let (summary, source) = reader.finish();
        assert_eq!((summary.usage, source), (Usage { prompt_tokens: 7, completion_tokens: 4 }, UsageSource::Estimate));
        assert_eq!(summary.finish_reason, FinishReason::Length);
        assert!(ChunkReader::new(true, 1, Instant::now()).read_whole(b"\xff{").is_err());
    }

    #[test]
    fn chat_chunks_become_text_events_and_usage_settles_the_summary() {
        let mut reader = ChunkReader::new(true, 100, Instant::now());
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}]}"#;
        assert_eq!(reader.read(role).unwrap(), None);
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(
            reader.read(text).unwrap(),
            Some(GenerationEvent::Text { text: "Hel".into(), token: Some(0), logprobs: Vec::new() })
        );
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#;
        assert_eq!(reader.read(last).unwrap(), None);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;
        assert_eq!(reader.read(usage).unwrap(), None);
        let (summary, source) = reader.finish();
        assert_eq!(source, UsageSource::Upstream);
        assert_eq!(summary.finish_reason, FinishReason::Length);
        assert_eq!(summary.usage, Usage { prompt_tokens: 9, completion_tokens: 2 });
    }

    #[test]
    fn without_usage_the_counts_are_the_estimate_and_garbage_is_an_error() {
        let mut reader = ChunkReader::new(false, 40, Instant::now());
        for piece in ["a", "b", "c"] {
            let chunk = format!(r#"{{"choices":[{{"index":0,"text":"{piece}","finish_reason":null}}]}}"#);
            assert!(reader.read(&chunk).unwrap().is_some());
        }
        let (summary, source) = reader.finish();
        assert_eq!(source, UsageSource::Estimate);
        assert_eq!(summary.usage, Usage { prompt_tokens: 40, completion_tokens: 3 });
        let mut reader = ChunkReader::new(true, 1, Instant::now());
        assert!(reader.read("\u{0}garbage").is_err());
        assert!(reader.read(r#"{"error":{"message":"upstream at http://10.0.0.5 failed"}}"#).is_err());
    }
}
