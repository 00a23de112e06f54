//! Log-probabilities of generated tokens, as OpenAI-compatible clients ask for them (`logprobs`,
//! `top_logprobs`): read from the model's own distribution at each step — the raw logits' log-softmax,
//! before `logit_bias`, penalties, temperature and top-k/top-p shape the draw — so they say how likely
//! the model found a token, whatever the sampling settings (vLLM's default, "raw logprobs").

use crate::text::tokenizer::Tokenizer;

/// The most alternatives a caller may ask for per position (OpenAI's limit for `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One token as a logprob entry names it: its id, its text and its bytes (a token can be part of a
/// multi-byte character, so its text alone may not be valid UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobToken {
    /// The vocabulary id.
    pub id: u32,
    /// The token's bytes as text, invalid UTF-8 replaced (clients that need the exact bytes use `bytes`).
    pub text: String,
    /// The token's exact bytes.
    pub bytes: Vec<u8>,
    /// Natural log of its probability.
    pub logprob: f32,
}

/// The log-probability of one generated token, with the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The token that was generated.
    pub chosen: LogprobToken,
    /// The `top_logprobs` most likely tokens at this position, most likely first (ties by id).
    pub top: Vec<LogprobToken>,
}

impl TokenLogprobs {
    /// The log-softmax of `logits` at `chosen`, and the `top_n` most likely tokens.
    pub(crate) fn read(logits: &[f32], chosen: u32, top_n: usize, tokenizer: &Tokenizer) -> Self {
        let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| f64::from(l - max).exp()).sum();
        let log_norm = f64::from(max) + sum.ln();
        let logprob = |id: u32| {
            let logit = logits.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
            (f64::from(logit) - log_norm) as f32
        };
        let entry = |id: u32| {
            let bytes = tokenizer.token_bytes(id).to_vec();
            LogprobToken { id, text: String::from_utf8_lossy(&bytes).into_owned(), bytes, logprob: logprob(id) }
        };
        let top = top_ids(logits, top_n.min(MAX_TOP_LOGPROBS)).into_iter().map(entry).collect();
        Self { chosen: entry(chosen), top }
    }
}

/// The ids of the `n` largest finite logits, largest first, ties broken by the smaller id.
fn top_ids(logits: &[f32], n: usize) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (id, &l) in logits.iter().enumerate() {
        if !l.is_finite() || (best.len() == n && l <= best[n - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= l);
        best.insert(at, (id as u32, l));
        best.truncate(n);
    }
    best.into_iter().map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ids_are_the_largest_in_order_with_ties_to_the_smaller_id() {
        let logits = [0.5, 3.0, f32::NAN, 3.0, -1.0, 2.0, f32::INFINITY];
        assert_eq!(top_ids(&logits, 3), [1, 3, 5]);
        assert_eq!(top_ids(&logits, 0), Vec::<u32>::new());
        assert_eq!(top_ids(&logits, 10), [1, 3, 5, 0, 4]);
    }
}
