//! [`ScoringSession`]: a prompt prefilled once, then any number of short forced continuations scored
//! against it, for classifiers such as Llama Guard that read probabilities instead of sampling.
//!
//! Runs outside the scheduler, on the caller's thread: scoring needs the logits of chosen tokens, not
//! sampled ones, and a few short continuations do not benefit from batching. The prompt is prefilled
//! once with only its last row of logits computed (the vocabulary-sized LM head is the expensive part
//! for long prompts); each continuation is then forwarded from that cache, and the next continuation
//! reuses whatever beginning it shares with the previous one.

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::llama::model::{KvCache, LlamaModel, SequenceBatch, last_logits, logits_rows};

/// Prompt tokens per forward call, as at prefill: bounds attention memory for long prompts.
const PREFILL_CHUNK: usize = 512;

/// A source of next-token logits after a fixed prompt followed by forced tokens. Implemented by
/// [`ScoringSession`] for a real model, and by test doubles with controlled logits so the scoring
/// arithmetic can be checked exactly.
pub trait NextTokenLogits {
    /// Logits of the next token after the prompt, then after each prefix of `forced`:
    /// `forced.len() + 1` rows, row `i` predicting `forced[i]`, the last one predicting what follows.
    fn continuation_logits(&mut self, forced: &[u32]) -> Result<Vec<Vec<f32>>>;
}

/// A prompt prefilled into its own KV cache, ready to score continuations of up to a fixed length.
pub struct ScoringSession {
    weights: Arc<LlamaModel>,
    cache: KvCache,
    prompt_len: usize,
    /// The forced tokens currently in the cache after the prompt.
    extension: Vec<u32>,
    /// `rows[i]`: logits after the prompt and `extension[..i]` (`rows[0]` follows the prompt alone).
    rows: Vec<Vec<f32>>,
}

impl ScoringSession {
    /// The cache, holding the prompt's positions (and the current extension's after them).
    pub(crate) fn cache(&self) -> &KvCache {
        &self.cache
    }
}

impl std::fmt::Debug for ScoringSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoringSession").field("prompt_len", &self.prompt_len).finish_non_exhaustive()
    }
}

impl ScoringSession {
    /// Prefills `prompt` (checked by the caller to be non-empty and within the vocabulary) with room for
    /// continuations of up to `max_continuation` tokens.
    pub(crate) fn new(weights: Arc<LlamaModel>, prompt: &[u32], max_continuation: usize) -> Result<Self> {
        let cache = weights.new_cache(prompt.len() + max_continuation)?;
        Self::resume(weights, cache, 0, prompt)
    }

    /// A cache of `capacity` positions with `tokens` prefilled: the fixed start of later prompts.
    pub(crate) fn prefill_part(weights: &LlamaModel, tokens: &[u32], capacity: usize) -> Result<(KvCache, usize)> {
        let mut cache = weights.new_cache(capacity)?;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            let mut batch = [SequenceBatch { tokens: chunk, cache: &mut cache, all_logits: false }];
            weights.forward(&mut batch)?;
        }
        Ok((cache, tokens.len()))
    }

    /// Finishes the prefill of `prompt` in `cache`, whose first `done` positions already hold it (at
    /// least one token must be left), and opens the session.
    pub(crate) fn resume(weights: Arc<LlamaModel>, mut cache: KvCache, done: usize, prompt: &[u32]) -> Result<Self> {
        let mut last = None;
        for chunk in prompt[done.min(prompt.len())..].chunks(PREFILL_CHUNK) {
            let mut batch = [SequenceBatch { tokens: chunk, cache: &mut cache, all_logits: false }];
            last = Some(weights.forward(&mut batch)?.remove(0));
        }
        let last = last.ok_or_else(|| EngineError::InvalidRequest("the prompt is empty".into()))?;
        let rows = vec![last_logits(&last)?];
        Ok(Self { weights, cache, prompt_len: prompt.len(), extension: Vec::new(), rows })
    }
}

impl NextTokenLogits for ScoringSession {
    /// Continuations that share a beginning with the previous one (`unsafe\nS1`, `unsafe\nS10`, …)
    /// reuse its cached positions and rows: only the tokens after the shared part are forwarded.
    fn continuation_logits(&mut self, forced: &[u32]) -> Result<Vec<Vec<f32>>> {
        let shared = forced.iter().zip(&self.extension).take_while(|(a, b)| a == b).count();
        if shared < forced.len() {
            self.cache.truncate(self.prompt_len + shared);
            self.extension.truncate(shared);
            self.rows.truncate(shared + 1);
            let new = &forced[shared..];
            let out = {
                let mut batch = [SequenceBatch { tokens: new, cache: &mut self.cache, all_logits: true }];
                self.weights.forward(&mut batch).and_then(|out| logits_rows(&out[0]))
            };
            match out {
                Ok(rows) => {
                    self.extension.extend_from_slice(new);
                    self.rows.extend(rows);
                }
                Err(e) => {
                    // Back to what the bookkeeping says is cached, whatever the failed call wrote.
                    self.cache.truncate(self.prompt_len + shared);
                    return Err(e);
                }
            }
        }
        Ok(self.rows[..=forced.len()].to_vec())
    }
}
