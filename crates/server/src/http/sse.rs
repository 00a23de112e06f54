//! The answer of a generation: server-sent events for streamed completions
//! (docs/reference/llama-stack-api.md §a.5), or the whole output as one JSON body.
//!
//! [`stream_generation`] turns an engine stream, behind its output safety check ([`GuardedGeneration`]),
//! into `data: <json>` events, using a [`ChunkFormat`] for the route's chunk shape, and ends with
//! `data: [DONE]`. An error after the first
//! byte can no longer change the status, so it is sent as a final `{"error":{...}}` event instead.
//! The SSE body owns the engine stream: when the client disconnects, hyper drops the body, the engine
//! stream is dropped with it, and the engine cancels the generation at its next step. The body also
//! owns the request's [`Settlement`], so a disconnect charges only the tokens generated.

use std::convert::Infallible;
use std::time::Instant;

use axum::Json;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use llamagate_engine::{GenerationEvent, GenerationOutput, GenerationSummary, TokenLogprobs};
use serde_json::Value;

use crate::gate::safety::GuardedGeneration;
use crate::gate::settlement::Settlement;
use crate::http::error::ApiError;

/// How one route shapes its stream chunks.
pub trait ChunkFormat: Send + 'static {
    /// A chunk sent before any text (chat announces the assistant role here).
    fn opening(&self) -> Option<Value>;
    /// A chunk carrying newly generated text, with the log-probabilities of the tokens behind it
    /// (empty unless the request asked for them).
    fn text(&self, text: &str, logprobs: &[TokenLogprobs]) -> Value;
    /// The chunks that end a successful stream (finish reason, then usage if asked for).
    fn finished(&self, summary: &GenerationSummary) -> Vec<Value>;
}

/// Streams a generation as SSE events in the given format. The stream owns the settlement: it counts
/// the tokens as they come (what a disconnect is charged) and settles before `[DONE]`; a failure
/// ends it with `failure(reason)`'s error event.
pub fn stream_generation<F: ChunkFormat>(
    mut generation: GuardedGeneration,
    mut settlement: Settlement,
    format: F,
    failure: fn(String) -> ApiError,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let started = Instant::now();
    let events = async_stream::stream! {
        let mut guard = DisconnectLog { finished: false };
        if let Some(chunk) = format.opening() {
            yield Ok(json_event(&chunk));
        }
        // Log-probabilities of tokens whose text is still held back, sent with the text that releases it.
        let mut pending: Vec<TokenLogprobs> = Vec::new();
        loop {
            match generation.next().await {
                Some(GenerationEvent::Text { text, token, logprobs }) => {
                    if token.is_some() {
                        settlement.generated_token();
                    }
                    pending.extend(logprobs);
                    // Empty pieces mean the decoder is holding back a partial character or stop string.
                    if !text.is_empty() {
                        yield Ok(json_event(&format.text(&text, &pending)));
                        pending.clear();
                    }
                }
                Some(GenerationEvent::Done(summary)) => {
                    log_finished(&summary, started);
                    settlement.settle(&summary).await;
                    // Tokens whose text never showed (a stop string's first tokens, say) still count.
                    if !pending.is_empty() {
                        yield Ok(json_event(&format.text("", &pending)));
                    }
                    for chunk in format.finished(&summary) {
                        yield Ok(json_event(&chunk));
                    }
                    yield Ok(Event::default().data("[DONE]"));
                    guard.finished = true;
                    break;
                }
                Some(GenerationEvent::Failed(reason)) => {
                    // `settlement` is dropped with the stream and charges what was generated.
                    settlement.failed(&reason);
                    yield Ok(json_event(&failure(reason).body()));
                    guard.finished = true;
                    break;
                }
                None => {
                    let error = ApiError::Unavailable("the generation ended without a result".into());
                    yield Ok(json_event(&error.body()));
                    guard.finished = true;
                    break;
                }
            }
        }
    };
    // Comment lines keep proxies and the SDKs' 60 s read timeout from closing a slow stream.
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The shared end of every generation route: an SSE stream in `format` when the client asked for one,
/// otherwise the whole generation collected and shaped by `plain`. Either way the response carries
/// the rate-limit headers of `settlement`, which is settled with the real token count at the end (or
/// charged for what was used if the response is dropped first). A generation that fails after it
/// started is answered with `failure(reason)`: the status and the envelope (or the stream's error
/// event) say whose failure it was.
pub async fn respond<F: ChunkFormat, T: serde::Serialize>(
    generation: GuardedGeneration,
    mut settlement: Settlement,
    streaming: bool,
    format: F,
    plain: impl FnOnce(GenerationOutput) -> T,
    failure: fn(String) -> ApiError,
) -> Result<Response, ApiError> {
    settlement.started();
    let headers = settlement.headers();
    let mut response = if streaming {
        stream_generation(generation, settlement, format, failure).into_response()
    } else {
        let started = Instant::now();
        let output = match generation.collect(|| settlement.generated_token()).await {
            Ok(output) => output,
            // The closing audit record says what failed, as a stream's does.
            Err(ApiError::Internal(reason)) => {
                settlement.failed(&reason);
                return Err(failure(reason));
            }
            Err(e) => return Err(e),
        };
        log_finished(&output.summary, started);
        settlement.settle(&output.summary).await;
        Json(plain(output)).into_response()
    };
    response.headers_mut().extend(headers);
    Ok(response)
}

/// Logs the outcome of a generation: counts and timing only, never prompt or output text.
pub fn log_finished(summary: &GenerationSummary, started: Instant) {
    tracing::info!(
        prompt_tokens = summary.usage.prompt_tokens,
        completion_tokens = summary.usage.completion_tokens,
        finish_reason = summary.finish_reason.as_str(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "generation finished"
    );
}

/// Dropped with the SSE body: if that happens before the stream's last event, the client went away
/// and the engine stream (dropped alongside) is cancelling the generation. Logged so operators can
/// tell abandoned requests from finished ones.
struct DisconnectLog {
    finished: bool,
}

impl Drop for DisconnectLog {
    fn drop(&mut self) {
        if !self.finished {
            tracing::info!("client disconnected mid-stream; generation cancelled");
        }
    }
}

fn json_event(value: &Value) -> Event {
    Event::default().data(value.to_string())
}
