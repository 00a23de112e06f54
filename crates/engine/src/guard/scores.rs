//! Llama Guard scores from next-token probabilities: [`GuardScores`] and the arithmetic behind them.
//!
//! A Llama Guard model answers `safe`, or `unsafe` followed by a newline and the violated codes
//! (`unsafe\nS1,S10`). Instead of sampling that answer and parsing it, the answer's possible beginnings
//! are scored by teacher forcing after the prompt:
//!
//! - **P(unsafe)**: the probability of the token sequence of `unsafe` against that of `safe`, normalised
//!   over the two (the model's other continuations are not verdicts). For tokenizers where each word is
//!   one token — Llama 3's — this is the probability mass on the first token of each.
//! - **P(category | unsafe)**: the probability of each `unsafe\n<code>` sequence, as a product of the
//!   conditional probabilities of its tokens (so codes that span several tokens, such as `S10`, are
//!   scored exactly). A code whose tokens begin another code's (`S1` before `S10` … `S14` in tokenizers
//!   that write digits one per token) is also multiplied by the probability that it ends there — the
//!   next token does not start with a digit; without that factor `S1` would collect the mass of
//!   `S10` … `S14`. The results are normalised over the shield's categories: the distribution of the
//!   first violated code, given that the content is unsafe.
//!
//! The sequences share their beginnings, and [`crate::ScoringSession`] reuses shared beginnings, so
//! after the prompt only a handful of tokens are forwarded in all.
//!
//! Everything is computed in log space (f64), so tiny probabilities neither underflow nor dominate.

use crate::error::{EngineError, Result};
use crate::guard::categories::GuardCategory;
use crate::serving::scoring::NextTokenLogits;
use crate::text::tokenizer::Tokenizer;

/// One category's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryScore {
    /// The category.
    pub category: GuardCategory,
    /// P(this is the first violated code | unsafe): the shield's categories sum to 1.
    pub given_unsafe: f64,
    /// P(unsafe) × `given_unsafe`: the probability that the content is unsafe because of this category,
    /// in [0, 1] — what moderation `category_scores` report and safety levels compare with thresholds.
    pub probability: f64,
}

/// What a Llama Guard model says about one conversation, as probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardScores {
    /// P(unsafe), normalised over the two verdicts.
    pub unsafe_probability: f64,
    /// One entry per category in the prompt, in prompt order.
    pub categories: Vec<CategoryScore>,
}

impl GuardScores {
    /// The joint probability for `code` (`S1` …); 0 for a category the shield does not check.
    pub fn probability(&self, code: &str) -> f64 {
        self.categories.iter().find(|c| c.category.code == code).map_or(0.0, |c| c.probability)
    }

    /// The category the model would most likely name first — what greedy decoding would write.
    pub fn most_likely(&self) -> Option<&CategoryScore> {
        self.categories.iter().max_by(|a, b| a.given_unsafe.total_cmp(&b.given_unsafe))
    }
}

/// The token sequences a guard's answer can start with, in one model's tokenizer.
#[derive(Debug, Clone)]
pub struct GuardVocab {
    safe: Vec<u32>,
    unsafe_: Vec<u32>,
    codes: Vec<CodeTokens>,
    /// Indexed by token id: does the token's text start with an ASCII digit?
    digit_start: Vec<bool>,
}

impl GuardVocab {
    /// Tokenizes the verdicts and every category's code with the guard model's tokenizer.
    pub fn new(tokenizer: &Tokenizer, categories: &[GuardCategory]) -> Result<Self> {
        let encode = |text: &str| -> Result<Vec<u32>> {
            let ids = tokenizer.encode(text)?;
            if ids.is_empty() {
                return Err(EngineError::Tokenizer(format!("`{}` encodes to no tokens", text.escape_debug())));
            }
            Ok(ids)
        };
        let codes =
            categories.iter().map(|c| Ok((*c, encode(&format!("unsafe\n{}", c.code))?))).collect::<Result<Vec<_>>>()?;
        let codes = CodeTokens::mark_prefixes(codes);
        let digit_start = (0..tokenizer.vocab_size() as u32)
            .map(|id| tokenizer.token_bytes(id).first().is_some_and(u8::is_ascii_digit))
            .collect();
        Ok(Self { safe: encode("safe")?, unsafe_: encode("unsafe")?, codes, digit_start })
    }

    /// Builds a vocabulary from explicit token ids, for tests with controlled logits.
    #[cfg(test)]
    pub(crate) fn from_ids(
        safe: Vec<u32>,
        unsafe_: Vec<u32>,
        codes: Vec<(GuardCategory, Vec<u32>)>,
        digit_tokens: &[u32],
        vocab_size: usize,
    ) -> Self {
        let mut digit_start = vec![false; vocab_size];
        for &t in digit_tokens {
            digit_start[t as usize] = true;
        }
        Self { safe, unsafe_, codes: CodeTokens::mark_prefixes(codes), digit_start }
    }

    /// The longest continuation that will be forced, to size the scoring cache.
    pub fn longest_continuation(&self) -> usize {
        let codes = self.codes.iter().map(|c| c.ids.len()).max().unwrap_or(0);
        codes.max(self.safe.len()).max(self.unsafe_.len())
    }
}

/// One category's answer `unsafe\n<code>` as tokens.
#[derive(Debug, Clone)]
struct CodeTokens {
    category: GuardCategory,
    ids: Vec<u32>,
    /// Another code's tokens start with these: the code must be seen to end.
    must_end: bool,
}

impl CodeTokens {
    fn mark_prefixes(codes: Vec<(GuardCategory, Vec<u32>)>) -> Vec<Self> {
        codes
            .iter()
            .map(|(category, ids)| {
                let must_end = codes.iter().any(|(_, other)| other.len() > ids.len() && other.starts_with(ids));
                Self { category: *category, ids: ids.clone(), must_end }
            })
            .collect()
    }
}

/// Scores the answer's possible beginnings after the prompt that `source` was prefilled with.
pub fn score_continuations(source: &mut impl NextTokenLogits, vocab: &GuardVocab) -> Result<GuardScores> {
    let log_safe = sequence_log_prob(source, &vocab.safe, None)?;
    let log_unsafe = sequence_log_prob(source, &vocab.unsafe_, None)?;
    // P(unsafe) / (P(safe) + P(unsafe)), as a logistic of the log-odds: stable for any magnitudes.
    let unsafe_probability = 1.0 / (1.0 + (log_safe - log_unsafe).exp());

    let code_logs = vocab
        .codes
        .iter()
        .map(|c| sequence_log_prob(source, &c.ids, c.must_end.then_some(vocab.digit_start.as_slice())))
        .collect::<Result<Vec<f64>>>()?;
    let normaliser = log_sum_exp(&code_logs);
    let categories = vocab
        .codes
        .iter()
        .zip(&code_logs)
        .map(|(code, log_p)| {
            let given_unsafe = if normaliser.is_finite() { (log_p - normaliser).exp() } else { 0.0 };
            CategoryScore { category: code.category, given_unsafe, probability: unsafe_probability * given_unsafe }
        })
        .collect::<Vec<CategoryScore>>();
    // Non-finite logits (a broken model file) must not turn into a verdict.
    let finite = unsafe_probability.is_finite() && categories.iter().all(|c| c.given_unsafe.is_finite());
    if !finite {
        return Err(EngineError::Inference("the guard model produced non-finite probabilities".into()));
    }
    Ok(GuardScores { unsafe_probability, categories })
}

/// log P(`ids` follow the prompt) as a sum of conditional log-probabilities; with `ends_unless`, also
/// the log-probability that the next token is not one of the marked ones (the sequence ends there).
fn sequence_log_prob(source: &mut impl NextTokenLogits, ids: &[u32], ends_unless: Option<&[bool]>) -> Result<f64> {
    // Forcing all but the last token yields a row predicting each token; the row after the last token
    // is only needed for the end factor.
    let forced = if ends_unless.is_some() { ids } else { &ids[..ids.len().saturating_sub(1)] };
    let rows = source.continuation_logits(forced)?;
    let mut total = 0.0;
    for (i, &token) in ids.iter().enumerate() {
        let row = rows.get(i).ok_or_else(|| EngineError::Inference("missing logits row while scoring".into()))?;
        let logit = *row
            .get(token as usize)
            .ok_or_else(|| EngineError::Inference(format!("token {token} is outside the logits row")))?;
        total += f64::from(logit) - log_sum_exp_f32(row);
    }
    if let Some(marked) = ends_unless {
        let row =
            rows.get(ids.len()).ok_or_else(|| EngineError::Inference("missing logits row while scoring".into()))?;
        let norm = log_sum_exp_f32(row);
        let continuing: f64 = row
            .iter()
            .zip(marked)
            .filter(|(_, marked)| **marked)
            .map(|(logit, _)| (f64::from(*logit) - norm).exp())
            .sum();
        total += (1.0 - continuing).max(f64::MIN_POSITIVE).ln();
    }
    Ok(total)
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn log_sum_exp_f32(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let max = f64::from(max);
    max + row.iter().map(|v| (f64::from(*v) - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
#[path = "scores_tests.rs"]
mod tests;
