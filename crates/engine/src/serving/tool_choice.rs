//! `tool_choice: required` with several tools, without a grammar engine: the model must call one of
//! them, so the function is chosen from the model's own probabilities and its call then primed, as
//! for a named function. One scoring prefill of the prompt, then each function's call opening
//! ([`ToolCallFormat::primer`], which ends past the name, so `get` and `get_weather` are told apart)
//! scored as a forced continuation; the most likely opening wins.

use crate::error::{EngineError, Result};
use crate::serving::scoring::NextTokenLogits;

/// Of the functions in `openings` (a name and its call opening's tokens), the one whose opening the
/// model finds most likely after the prompt `session` was prefilled with (the sum of the opening's
/// token log-probabilities); the first on a tie.
pub(crate) fn most_likely_call(session: &mut impl NextTokenLogits, openings: &[(String, Vec<u32>)]) -> Result<String> {
    let mut best: Option<(f32, &String)> = None;
    for (name, tokens) in openings {
        let rows = session.continuation_logits(tokens)?;
        let score: f32 = tokens.iter().zip(&rows).map(|(&token, row)| log_softmax_at(row, token)).sum();
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, name));
        }
    }
    best.map(|(_, name)| name.clone()).ok_or_else(|| EngineError::InvalidRequest("no function to call".into()))
}

/// `ln softmax(row)[token]`, computed stably (the maximum subtracted first).
fn log_softmax_at(row: &[f32], token: u32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    row.get(token as usize).map_or(f32::NEG_INFINITY, |&x| x - max - sum.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that favour token 2 after the prompt and token 5 after it: the opening `[2, 5]` wins
    /// over `[1, 5]` and over the longer `[2, 5, 1]` (one more unlikely token).
    struct Favouring;

    impl NextTokenLogits for Favouring {
        fn continuation_logits(&mut self, forced: &[u32]) -> Result<Vec<Vec<f32>>> {
            let favourite = |after: usize| if after == 0 { 2 } else { 5 };
            Ok((0..=forced.len())
                .map(|i| (0..8).map(|t| if t == favourite(i) { 4.0 } else { 0.0 }).collect())
                .collect())
        }
    }

    #[test]
    fn the_most_likely_opening_wins() {
        let openings = [("a".to_string(), vec![1, 5]), ("b".to_string(), vec![2, 5]), ("c".to_string(), vec![2, 5, 1])];
        assert_eq!(most_likely_call(&mut Favouring, &openings).unwrap(), "b");
        assert!(most_likely_call(&mut Favouring, &[]).is_err());
    }

    #[test]
    fn log_softmax_is_normalised_and_stable() {
        let row = [1000.0, 1000.0, 998.0];
        let total: f32 = (0..3).map(|t| log_softmax_at(&row, t).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(log_softmax_at(&row, 0) > log_softmax_at(&row, 2));
        assert_eq!(log_softmax_at(&row, 7), f32::NEG_INFINITY);
    }
}
