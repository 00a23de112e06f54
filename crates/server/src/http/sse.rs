//! The answer of a generation: server-sent events for streamed completions
//! (docs/reference/llama-stack-api.md §a.5), or the whole output as one JSON body.
//!
//! [`stream_generation`] turns a request's engine streams (one per choice, each behind its output safety
//! check, [`GuardedGeneration`]) into `data: <json>` events, interleaved as tokens come, using a
//! [`ChunkFormat`] for the route's chunk shape, and ends with `data: [DONE]`. An error after the first
//! byte can no longer change the status, so it is sent as a final `{"error":{...}}` event instead.
//! The SSE body owns the engine stream: when the client disconnects, hyper drops the body, the engine
//! stream is dropped with it, and the engine cancels the generation at its next step. The body also
//! owns the request's [`Settlement`], so a disconnect charges only the tokens generated.

use std::convert::Infallible;
use std::time::Instant;

use axum::Json;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use llamagate_engine::{FinishReason, GenerationEvent, GenerationOutput, GenerationSummary, TokenLogprobs, Usage};
use serde_json::Value;

use crate::gate::safety::GuardedGeneration;
use crate::gate::settlement::Settlement;
use crate::http::error::ApiError;

/// How one route shapes its stream chunks. `index` is the choice a chunk belongs to (OpenAI's
/// `choices[].index`: `prompt × n + choice`).
pub trait ChunkFormat: Send + 'static {
    /// A chunk sent for a choice before any of its text (chat announces the assistant role here, an
    /// echoing completion sends the prompt).
    fn opening(&mut self, index: usize) -> Option<Value>;
    /// The chunks carrying a choice's newly generated text, with the log-probabilities of the tokens
    /// behind it (empty unless the request asked for them): usually one, none while a format holds
    /// text back (chat, while the text may be a tool call).
    fn text(&mut self, index: usize, text: &str, logprobs: &[TokenLogprobs]) -> Vec<Value>;
    /// The chunks that end a choice: what was held back, then the one with the finish reason.
    fn finished(&mut self, index: usize, finish_reason: FinishReason) -> Vec<Value>;
    /// The chunk that ends a successful stream, after every choice ended, when usage was asked for.
    fn usage(&mut self, usage: Usage) -> Option<Value>;
}

/// The choices of one request, in OpenAI's order: `per_prompt` consecutive choices for each prompt.
#[derive(Debug)]
pub struct Choices {
    /// One generation per choice, each behind its own output check.
    pub generations: Vec<GuardedGeneration>,
    /// Choices per prompt (`n`).
    pub per_prompt: usize,
}

/// The summary of a whole request from its choices' (in choice order, `per_prompt` per prompt): each
/// prompt's tokens once (its choices shared one prefill), every choice's completion tokens, the first
/// choice's finish reason and timings. This is what the budget, the metrics and the audit record get.
pub fn combined_summary(summaries: &[GenerationSummary], per_prompt: usize) -> GenerationSummary {
    let prompt_tokens = summaries.iter().step_by(per_prompt.max(1)).map(|s| s.usage.prompt_tokens).sum();
    let completion_tokens = summaries.iter().map(|s| s.usage.completion_tokens).sum();
    let first = summaries.first().cloned().unwrap_or_default();
    GenerationSummary { usage: Usage { prompt_tokens, completion_tokens }, ..first }
}

/// Streams a request's choices as SSE events in the given format, interleaved as their tokens come.
/// The stream owns the settlement: it counts the tokens as they come (what a disconnect is charged)
/// and settles before `[DONE]`, once every choice has ended; a failure ends it with `failure(reason)`'s
/// error event.
pub fn stream_generation<F: ChunkFormat>(
    choices: Choices,
    mut settlement: Settlement,
    mut format: F,
    failure: fn(String) -> ApiError,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let started = Instant::now();
    let Choices { generations, per_prompt } = choices;
    let count = generations.len();
    let events = async_stream::stream! {
        let mut guard = DisconnectLog { finished: false };
        for index in 0..count {
            if let Some(chunk) = format.opening(index) {
                yield Ok(json_event(&chunk));
            }
        }
        let mut merged = futures::stream::select_all(generations.into_iter().enumerate().map(|(index, generation)| {
            futures::stream::unfold(generation, |mut generation| async move {
                generation.next().await.map(|event| (event, generation))
            })
            .map(move |event| (index, event))
            .boxed()
        }));
        // Log-probabilities of tokens whose text is still held back, sent with the text that releases it.
        let mut pending: Vec<Vec<TokenLogprobs>> = vec![Vec::new(); count];
        let mut summaries: Vec<Option<GenerationSummary>> = vec![None; count];
        loop {
            match merged.next().await {
                Some((index, GenerationEvent::Text { text, token, logprobs })) => {
                    if token.is_some() {
                        settlement.generated_token();
                    }
                    pending[index].extend(logprobs);
                    // Empty pieces mean the decoder is holding back a partial character or stop string.
                    if !text.is_empty() {
                        for chunk in format.text(index, &text, &pending[index]) {
                            yield Ok(json_event(&chunk));
                        }
                        pending[index].clear();
                    }
                }
                Some((index, GenerationEvent::Done(summary))) => {
                    // Tokens whose text never showed (a stop string's first tokens, say) still count.
                    if !pending[index].is_empty() {
                        for chunk in format.text(index, "", &pending[index]) {
                            yield Ok(json_event(&chunk));
                        }
                        pending[index].clear();
                    }
                    for chunk in format.finished(index, summary.finish_reason) {
                        yield Ok(json_event(&chunk));
                    }
                    summaries[index] = Some(summary);
                    if summaries.iter().all(Option::is_some) {
                        let all: Vec<GenerationSummary> = summaries.iter().flatten().cloned().collect();
                        let summary = combined_summary(&all, per_prompt);
                        log_finished(&summary, started);
                        settlement.settle(&summary).await;
                        if let Some(chunk) = format.usage(summary.usage) {
                            yield Ok(json_event(&chunk));
                        }
                        yield Ok(Event::default().data("[DONE]"));
                        guard.finished = true;
                        break;
                    }
                }
                Some((_, GenerationEvent::Failed(reason))) => {
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
/// otherwise every choice collected and shaped by `plain` (the outputs in choice order and the
/// request's usage). Either way the response carries the rate-limit headers of `settlement`, which is
/// settled with the real token count at the end (or charged for what was used if the response is
/// dropped first). A generation that fails after it started is answered with `failure(reason)`: the
/// status and the envelope (or the stream's error event) say whose failure it was.
pub async fn respond<F: ChunkFormat, T: serde::Serialize>(
    choices: Choices,
    mut settlement: Settlement,
    streaming: bool,
    format: F,
    plain: impl FnOnce(Vec<GenerationOutput>, Usage) -> T,
    failure: fn(String) -> ApiError,
) -> Result<Response, ApiError> {
    settlement.started();
    let headers = settlement.headers();
    let mut response = if streaming {
        stream_generation(choices, settlement, format, failure).into_response()
    } else {
        let started = Instant::now();
        // The choices run side by side in the engine; collecting them one after another waits no longer
        // than the slowest.
        let mut outputs = Vec::with_capacity(choices.generations.len());
        for generation in choices.generations {
            match generation.collect(|| settlement.generated_token()).await {
                Ok(output) => outputs.push(output),
                // The closing audit record says what failed, as a stream's does.
                Err(ApiError::Internal(reason)) => {
                    settlement.failed(&reason);
                    return Err(failure(reason));
                }
                Err(e) => return Err(e),
            }
        }
        let summaries: Vec<GenerationSummary> = outputs.iter().map(|o| o.summary.clone()).collect();
        let summary = combined_summary(&summaries, choices.per_prompt);
        log_finished(&summary, started);
        settlement.settle(&summary).await;
        Json(plain(outputs, summary.usage)).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(prompt_tokens: usize, completion_tokens: usize, finish_reason: FinishReason) -> GenerationSummary {
        GenerationSummary { finish_reason, usage: Usage { prompt_tokens, completion_tokens }, ..Default::default() }
    }

    /// Two prompts (10 and 20 tokens) with two choices each: each prompt counts once, every choice's
    /// completion counts.
    #[test]
    fn a_prompt_counts_once_and_every_choice_counts() {
        let all = [
            summary(10, 3, FinishReason::Length),
            summary(10, 4, FinishReason::Stop),
            summary(20, 5, FinishReason::Stop),
            summary(20, 6, FinishReason::Stop),
        ];
        let combined = combined_summary(&all, 2);
        assert_eq!(combined.usage, Usage { prompt_tokens: 30, completion_tokens: 18 });
        assert_eq!(combined.finish_reason, FinishReason::Length);
        assert_eq!(combined_summary(&all[..1], 1).usage, Usage { prompt_tokens: 10, completion_tokens: 3 });
    }
}
