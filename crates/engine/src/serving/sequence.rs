//! One running generation: its cache, sampler, detokenizer and stop matcher, and the rules for when it ends.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use crate::llama::model::KvCache;
use crate::serving::constraint::OutputConstraint;
use crate::serving::generation::{FinishReason, GenerationEvent, GenerationRequest, GenerationSummary, Timings, Usage};
use crate::serving::logprobs::TokenLogprobs;
use crate::serving::sampling::Sampler;
use crate::text::detokenize::IncrementalDecoder;
use crate::text::stop::{StopMatcher, StopOutcome};
use crate::text::tokenizer::Tokenizer;

/// A sequence the scheduler is running.
pub(crate) struct ActiveSequence {
    pub cache: KvCache,
    pub prompt_ids: Vec<u32>,
    /// The request's [`crate::GenerationRequest::prefix_scope`], kept for the prefix cache.
    pub prefix_scope: u64,
    /// The last sampled token: the input of the next decode step.
    pub last_token: u32,
    sampler: Sampler,
    /// The grammar a structured output must follow.
    constraint: Option<OutputConstraint>,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    tokenizer: Arc<Tokenizer>,
    completion_tokens: usize,
    max_tokens: usize,
    /// [`crate::GenerationRequest::logprobs`].
    logprobs: Option<usize>,
    tx: UnboundedSender<GenerationEvent>,
    submitted: Instant,
    started: Instant,
    first_token: Option<Instant>,
}

/// What happened to a sequence after one step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StepResult {
    Running,
    Finished,
}

impl ActiveSequence {
    pub fn new(
        request: GenerationRequest,
        cache: KvCache,
        tokenizer: Arc<Tokenizer>,
        tx: UnboundedSender<GenerationEvent>,
        submitted: Instant,
    ) -> Self {
        Self {
            cache,
            last_token: request.prompt_ids.last().copied().unwrap_or_default(),
            prompt_ids: request.prompt_ids,
            prefix_scope: request.prefix_scope,
            sampler: Sampler::new(request.sampling),
            constraint: request.constraint,
            decoder: IncrementalDecoder::default(),
            stop: StopMatcher::new(&request.stop),
            tokenizer,
            completion_tokens: 0,
            max_tokens: request.max_tokens,
            logprobs: request.logprobs,
            tx,
            submitted,
            started: Instant::now(),
            first_token: None,
        }
    }

    /// When the request was submitted (its forks report the same queue time).
    pub fn submitted(&self) -> Instant {
        self.submitted
    }

    /// Whether the consumer has gone away (client disconnected): the sequence should leave the batch.
    pub fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    /// Samples from `logits`, streams the resulting text, and says whether the sequence is done.
    pub fn step(&mut self, logits: &mut [f32]) -> StepResult {
        // The model's own distribution, read before the sampler biases and penalizes `logits` in place.
        let raw = self.logprobs.map(|_| logits.to_vec());
        if let Some(constraint) = &mut self.constraint
            && let Err(e) = constraint.mask(logits)
        {
            self.fail(&e.to_string());
            return StepResult::Finished;
        }
        let token = self.sampler.sample(logits);
        if let Some(constraint) = &mut self.constraint
            && let Err(e) = constraint.accept(token)
        {
            self.fail(&e.to_string());
            return StepResult::Finished;
        }
        self.first_token.get_or_insert_with(Instant::now);
        self.completion_tokens += 1;
        self.last_token = token;
        if self.tokenizer.stop_ids().contains(&token) {
            self.send(GenerationEvent::Text { text: String::new(), token: Some(token), logprobs: Vec::new() });
            return self.finish(FinishReason::Stop, true);
        }
        let logprobs = match (raw, self.logprobs) {
            (Some(raw), Some(top_n)) => vec![TokenLogprobs::read(&raw, token, top_n, &self.tokenizer)],
            _ => Vec::new(),
        };
        let text = if self.tokenizer.is_special(token) {
            String::new()
        } else {
            self.decoder.push(self.tokenizer.token_bytes(token))
        };
        match self.stop.push(&text) {
            StopOutcome::Stopped(last) => {
                self.send(GenerationEvent::Text { text: last, token: Some(token), logprobs });
                self.finish(FinishReason::Stop, false)
            }
            StopOutcome::Continue(out) => {
                self.send(GenerationEvent::Text { text: out, token: Some(token), logprobs });
                if self.constraint.as_ref().is_some_and(OutputConstraint::is_finished) {
                    // The structured output is complete: nothing may follow it.
                    self.finish(FinishReason::Stop, true)
                } else if self.completion_tokens >= self.max_tokens {
                    self.finish(FinishReason::Length, true)
                } else {
                    StepResult::Running
                }
            }
        }
    }

    /// Ends the sequence with an error event (a failed forward pass).
    pub fn fail(&self, message: &str) {
        self.send(GenerationEvent::Failed(message.to_string()));
    }

    fn finish(&mut self, reason: FinishReason, flush: bool) -> StepResult {
        if flush {
            let tail = self.decoder.finish();
            let released = match self.stop.push(&tail) {
                StopOutcome::Stopped(t) => t,
                StopOutcome::Continue(t) => t + &self.stop.finish(),
            };
            if !released.is_empty() {
                self.send(GenerationEvent::Text { text: released, token: None, logprobs: Vec::new() });
            }
        }
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        self.send(GenerationEvent::Done(GenerationSummary {
            finish_reason: reason,
            usage: Usage { prompt_tokens: self.prompt_ids.len(), completion_tokens: self.completion_tokens },
            timings: Timings {
                queued: self.started.duration_since(self.submitted),
                prefill: first.duration_since(self.started),
                decode: now.duration_since(first),
            },
        }));
        StepResult::Finished
    }

    fn send(&self, event: GenerationEvent) {
        // A closed channel means the consumer left; the scheduler notices via `is_cancelled`.
        let _ = self.tx.send(event);
    }
}
