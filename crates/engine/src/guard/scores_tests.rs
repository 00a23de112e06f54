//! The scoring arithmetic against hand-made logits whose answers are known exactly.

use std::collections::HashMap;

use super::*;
use crate::guard::categories::category_by_code;

// A ten-token vocabulary: the verdict words, the pieces of `unsafe\nS<digits>`, a comma, an end token
// and one token that stands for everything else.
const SAFE: u32 = 0;
const UNSAFE: u32 = 1;
const NEWLINE: u32 = 2;
const S: u32 = 3;
const ONE: u32 = 4;
const ZERO: u32 = 5;
const TWO: u32 = 6;
const END: u32 = 8;
const OTHER: u32 = 9;
const VOCAB: usize = 10;

/// Next-token rows keyed by the forced prefix; unlisted prefixes predict [`OTHER`].
struct ControlledLogits {
    rows: HashMap<Vec<u32>, Vec<f32>>,
    /// Every `forced` asked for, in order.
    asked: Vec<Vec<u32>>,
}

impl NextTokenLogits for ControlledLogits {
    fn continuation_logits(&mut self, forced: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.asked.push(forced.to_vec());
        Ok((0..=forced.len()).map(|i| self.rows.get(&forced[..i]).cloned().unwrap_or_else(|| row(&[], 0.0))).collect())
    }
}

/// Logits whose softmax gives these probabilities (the rest on [`OTHER`]), all shifted by `shift`:
/// softmax ignores a shift, so the scorer must too.
fn row(probs: &[(u32, f64)], shift: f32) -> Vec<f32> {
    let mut logits = vec![f32::NEG_INFINITY; VOCAB];
    let rest = 1.0 - probs.iter().map(|(_, p)| p).sum::<f64>();
    if rest > 1e-12 {
        logits[OTHER as usize] = rest.ln() as f32 + shift;
    }
    for (t, p) in probs {
        logits[*t as usize] = p.ln() as f32 + shift;
    }
    logits
}

fn cat(code: &str) -> GuardCategory {
    *category_by_code(code).unwrap()
}

fn vocab() -> GuardVocab {
    GuardVocab::from_ids(
        vec![SAFE],
        vec![UNSAFE],
        vec![
            (cat("S1"), vec![UNSAFE, NEWLINE, S, ONE]),
            (cat("S10"), vec![UNSAFE, NEWLINE, S, ONE, ZERO]),
            (cat("S2"), vec![UNSAFE, NEWLINE, S, TWO]),
        ],
        &[ONE, ZERO, TWO],
        VOCAB,
    )
}

/// P(safe) 0.2, P(unsafe) 0.6 (0.2 elsewhere); after `unsafe\nS`: `1` 0.7, `2` 0.3; after `S1`: `0`
/// 0.4, end 0.6; `S10` and `S2` end for sure.
fn model(shift: f32) -> ControlledLogits {
    let rows = HashMap::from([
        (vec![], row(&[(SAFE, 0.2), (UNSAFE, 0.6)], shift)),
        (vec![UNSAFE], row(&[(NEWLINE, 0.9)], shift)),
        (vec![UNSAFE, NEWLINE], row(&[(S, 0.8)], shift)),
        (vec![UNSAFE, NEWLINE, S], row(&[(ONE, 0.7), (TWO, 0.3)], shift)),
        (vec![UNSAFE, NEWLINE, S, ONE], row(&[(ZERO, 0.4), (END, 0.6)], shift)),
        (vec![UNSAFE, NEWLINE, S, ONE, ZERO], row(&[(END, 1.0)], shift)),
        (vec![UNSAFE, NEWLINE, S, TWO], row(&[(END, 1.0)], shift)),
    ]);
    ControlledLogits { rows, asked: Vec::new() }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn unsafe_probability_is_normalised_over_the_two_verdicts() {
    let scores = score_continuations(&mut model(0.0), &vocab()).unwrap();
    // 0.6 / (0.2 + 0.6): the 0.2 on other tokens is not a verdict.
    assert!(close(scores.unsafe_probability, 0.75), "{}", scores.unsafe_probability);
}

#[test]
fn multi_token_codes_are_products_of_conditionals_and_must_end() {
    let scores = score_continuations(&mut model(0.0), &vocab()).unwrap();
    let given = |code: &str| scores.categories.iter().find(|c| c.category.code == code).unwrap().given_unsafe;
    // S1 = 0.7 × P(end after S1) 0.6 = 0.42; S10 = 0.7 × 0.4 × 1 = 0.28; S2 = 0.3. They already sum to 1.
    // Without the end factor S1 would take 0.7 / 1.28 = 0.55 (it would include S10's mass).
    assert!(close(given("S1"), 0.42), "{scores:?}");
    assert!(close(given("S10"), 0.28), "{scores:?}");
    assert!(close(given("S2"), 0.30), "{scores:?}");
    let sum: f64 = scores.categories.iter().map(|c| c.given_unsafe).sum();
    assert!(close(sum, 1.0));
    // Joint probabilities: P(unsafe) × P(code | unsafe).
    assert!(close(scores.probability("S1"), 0.75 * 0.42));
    assert!(close(scores.probability("S10"), 0.75 * 0.28));
    assert_eq!(scores.probability("S5"), 0.0, "a category the shield does not check scores 0");
    assert_eq!(scores.most_likely().unwrap().category.code, "S1");
    let order: Vec<&str> = scores.categories.iter().map(|c| c.category.code).collect();
    assert_eq!(order, ["S1", "S10", "S2"], "prompt order is kept");
}

#[test]
fn shifted_logits_give_the_same_scores() {
    let plain = score_continuations(&mut model(0.0), &vocab()).unwrap();
    let shifted = score_continuations(&mut model(37.5), &vocab()).unwrap();
    assert!(close(plain.unsafe_probability, shifted.unsafe_probability));
    for (a, b) in plain.categories.iter().zip(&shifted.categories) {
        assert!(close(a.given_unsafe, b.given_unsafe), "{a:?} {b:?}");
    }
}

#[test]
fn the_normalisation_is_relative_between_categories() {
    // Rarer codes overall, same ratios: P(code | unsafe) does not change.
    let mut m = model(0.0);
    m.rows.insert(vec![UNSAFE, NEWLINE, S], row(&[(ONE, 0.07), (TWO, 0.03)], 0.0));
    let scores = score_continuations(&mut m, &vocab()).unwrap();
    assert!(close(scores.categories[0].given_unsafe, 0.42), "{scores:?}");
}

#[test]
fn extreme_logits_stay_finite_and_in_range() {
    let mut m = model(0.0);
    let mut first = vec![-1000.0f32; VOCAB];
    first[UNSAFE as usize] = 1000.0;
    m.rows.insert(vec![], first);
    let scores = score_continuations(&mut m, &vocab()).unwrap();
    assert!(close(scores.unsafe_probability, 1.0));
    for c in &scores.categories {
        assert!((0.0..=1.0).contains(&c.probability) && (0.0..=1.0).contains(&c.given_unsafe), "{c:?}");
    }
    let mut safe = model(0.0);
    safe.rows.insert(vec![], row(&[(SAFE, 1.0)], 0.0));
    assert_eq!(score_continuations(&mut safe, &vocab()).unwrap().unsafe_probability, 0.0);
}

#[test]
fn non_finite_logits_are_an_error_not_a_verdict() {
    let mut m = model(0.0);
    m.rows.insert(vec![], vec![f32::NAN; VOCAB]);
    assert!(score_continuations(&mut m, &vocab()).is_err());
}

#[test]
fn only_codes_that_begin_other_codes_are_checked_for_their_end() {
    let mut m = model(0.0);
    // S10 is no other code's beginning: what may follow it is not asked for.
    m.rows.insert(vec![UNSAFE, NEWLINE, S, ONE, ZERO], row(&[(ZERO, 0.5), (END, 0.5)], 0.0));
    let scores = score_continuations(&mut m, &vocab()).unwrap();
    assert!(close(scores.categories[1].given_unsafe, 0.28), "{scores:?}");
    // Single-token verdicts need nothing past the prompt; S1 is forced whole to read its end, S10 and
    // S2 only up to their last token.
    let expected: [&[u32]; 5] =
        [&[], &[], &[UNSAFE, NEWLINE, S, ONE], &[UNSAFE, NEWLINE, S, ONE], &[UNSAFE, NEWLINE, S]];
    assert_eq!(m.asked, expected);
    assert_eq!(vocab().longest_continuation(), 5);
}
