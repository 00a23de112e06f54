//! The generation contract between the engine and its callers: what a request asks for, the events a
//! stream yields, and the finished result with exact token counts.

use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::serving::constraint::OutputConstraint;
use crate::serving::logprobs::TokenLogprobs;
use crate::serving::sampling::SamplingParams;

/// A validated request, ready for the scheduler: the prompt is already tokenized so its length is exact.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The prompt, tokenized (its length is what is billed).
    pub prompt_ids: Vec<u32>,
    /// How each next token is chosen, already validated.
    pub sampling: SamplingParams,
    /// Tokens to generate at most; already capped so that prompt + max_tokens fits the context.
    pub max_tokens: usize,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// Scheduling priority: waiting requests with a higher value are admitted first (FIFO among
    /// equals). The server sets it from the caller's tier, so paying tiers can be favoured under load.
    pub priority: u8,
    /// Which remembered prompts this request may reuse, and which may reuse its own: only those of the
    /// same scope. A reused prompt answers sooner, so requests that share a scope can learn from their
    /// timing whether another sent a prompt; the server gives each tenant its own scope.
    pub prefix_scope: u64,
    /// `Some(n)`: report each generated token's log-probability with the `n` most likely alternatives
    /// (at most [`crate::MAX_TOP_LOGPROBS`]); `None`: none (the work is skipped).
    pub logprobs: Option<usize>,
    /// The grammar the output must follow (structured output), advanced token by token; `None`: free text.
    pub constraint: Option<OutputConstraint>,
}

/// Why generation ended, in OpenAI's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn or a stop string matched (also the placeholder of an output still
    /// being collected).
    #[default]
    Stop,
    /// `max_tokens` (or the context window) was reached.
    Length,
    /// The server's output safety check stopped the text (never set by the engine itself).
    ContentFilter,
}

impl FinishReason {
    /// The wire name (`stop`, `length`, `content_filter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// Token counts as billed: exact, from the tokenizer and the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated, including a final end-of-turn token.
    pub completion_tokens: usize,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total_tokens(&self) -> usize {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Where the time went, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Waiting in the scheduler's queue.
    pub queued: Duration,
    /// Processing the prompt, up to and including the first sampled token.
    pub prefill: Duration,
    /// Generating the remaining tokens.
    pub decode: Duration,
}

/// How a finished generation ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationSummary {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Exact token counts.
    pub usage: Usage,
    /// Where the time went.
    pub timings: Timings,
}

/// What a generation stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// Text released after one more generated token (`token`), or by the final flush (`token: None`).
    /// May be empty while a multi-byte character or a possible stop string is incomplete; the pieces
    /// always join to the full text.
    Text {
        /// The released text (possibly empty).
        text: String,
        /// The token that released it; `None` for the final flush.
        token: Option<u32>,
        /// The log-probabilities of the tokens behind `text`, when the request asked for them: one
        /// entry per generated token (none for an end-of-turn token, which has no text). A stage that
        /// holds text back (the output safety check) holds these with it, so an entry may arrive with
        /// a later event than its token.
        logprobs: Vec<TokenLogprobs>,
    },
    /// The last event of a successful generation.
    Done(GenerationSummary),
    /// The last event of a failed generation.
    Failed(String),
}

/// The receiving end of one generation. Dropping it cancels the generation at the next step.
#[derive(Debug)]
pub struct GenerationStream {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>,
}

impl GenerationStream {
    /// A stream fed from outside the engine (a remote provider's answer, translated): events sent on the
    /// returned sender arrive here in order; when this stream is dropped, the sender sees it closed
    /// ([`tokio::sync::mpsc::UnboundedSender::closed`]) and should stop producing.
    pub fn channel() -> (tokio::sync::mpsc::UnboundedSender<GenerationEvent>, Self) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, Self { rx })
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }

    /// The next event if one has already arrived, without waiting; `None` also when the stream has ended.
    pub fn try_next(&mut self) -> Option<GenerationEvent> {
        self.rx.try_recv().ok()
    }

    /// The next event, blocking the thread; for command-line tools and tests outside a runtime.
    pub fn blocking_next(&mut self) -> Option<GenerationEvent> {
        self.rx.blocking_recv()
    }

    /// Collects the whole stream into one result.
    pub async fn collect(mut self) -> Result<GenerationOutput> {
        let mut output = GenerationOutput::default();
        while let Some(event) = self.next().await {
            if output.absorb(event)? {
                return Ok(output);
            }
        }
        Err(EngineError::Unavailable("the generation ended without a result".into()))
    }

    /// Collects the whole stream, blocking the thread.
    pub fn collect_blocking(mut self) -> Result<GenerationOutput> {
        let mut output = GenerationOutput::default();
        while let Some(event) = self.blocking_next() {
            if output.absorb(event)? {
                return Ok(output);
            }
        }
        Err(EngineError::Unavailable("the generation ended without a result".into()))
    }
}

/// A finished, non-streamed generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationOutput {
    /// The whole generated text, stop strings removed.
    pub text: String,
    /// Every generated token id, including a final end-of-turn token.
    pub token_ids: Vec<u32>,
    /// The log-probabilities of the generated tokens, when the request asked for them.
    pub logprobs: Vec<TokenLogprobs>,
    /// How it ended, with its usage and timings.
    pub summary: GenerationSummary,
}

impl GenerationOutput {
    /// Adds one event of a stream to what was collected so far; `true` once the stream is done (the
    /// summary is then filled in). For callers that collect a stream themselves because they must see
    /// each token as it comes (to charge it, say) — [`GenerationStream::collect`] is this in a loop.
    pub fn absorb(&mut self, event: GenerationEvent) -> Result<bool> {
        match event {
            GenerationEvent::Text { text, token, logprobs } => {
                self.text.push_str(&text);
                self.token_ids.extend(token);
                self.logprobs.extend(logprobs);
                Ok(false)
            }
            GenerationEvent::Done(summary) => {
                self.summary = summary;
                Ok(true)
            }
            GenerationEvent::Failed(e) => Err(EngineError::Inference(e)),
        }
    }
}
