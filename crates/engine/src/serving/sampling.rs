//! Choosing the next token from logits: `logit_bias`, penalties, temperature, top-k, top-p, and a seeded RNG.
//!
//! `logit_bias` (OpenAI's: token id → a bias in [-100, 100]) is added to the logits first; -100 in practice
//! bans a token and 100 forces it.
//! Penalties follow OpenAI's definition (counts over the generated tokens only):
//! `logit -= count * frequency_penalty + (count > 0) * presence_penalty`. A temperature of 0 is greedy.
//! The RNG is ChaCha8 seeded from `seed`, so the same seed and parameters give the same tokens on every
//! platform and release of this crate.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};

/// How to pick tokens. Defaults are greedy decoding with no penalties.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy; otherwise logits are divided by it. Range [0, 2].
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`. Range (0, 1].
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Same seed, same output. `None` draws a fresh seed.
    pub seed: Option<u64>,
    /// Range [-2, 2].
    pub frequency_penalty: f32,
    /// Range [-2, 2].
    pub presence_penalty: f32,
    /// Token id → bias added to its logit, each in [-100, 100]; the ids are checked against the
    /// vocabulary by [`crate::Model::prepare`].
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// The parameters of choice `index` of a request for several choices (`n > 1`): the same, with the
    /// seed of that choice. Choice 0 keeps the request's seed, so `n = 1` answers as before; each other
    /// choice gets a seed mixed from the request's and its index, so with a seed the choices are
    /// reproducible and, at a temperature above 0, differ from each other. Without a seed each choice
    /// draws its own.
    pub fn for_choice(&self, index: usize) -> Self {
        let seed = self.seed.map(|seed| if index == 0 { seed } else { choice_seed(seed, index as u64) });
        Self { seed, ..self.clone() }
    }

    /// Rejects values outside the ranges OpenAI-compatible clients are promised.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(EngineError::InvalidRequest(msg.into())) };
        check(
            self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature),
            "temperature must be between 0 and 2",
        )?;
        check(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0, "top_p must be in (0, 1]")?;
        check(
            self.frequency_penalty.is_finite() && (-2.0..=2.0).contains(&self.frequency_penalty),
            "frequency_penalty must be between -2 and 2",
        )?;
        check(
            self.presence_penalty.is_finite() && (-2.0..=2.0).contains(&self.presence_penalty),
            "presence_penalty must be between -2 and 2",
        )?;
        check(
            self.logit_bias.iter().all(|(_, b)| b.is_finite() && (-100.0..=100.0).contains(b)),
            "logit_bias values must be between -100 and 100",
        )
    }
}

/// SplitMix64's finalizer over `seed + index × golden ratio`: nearby seeds and indices give unrelated
/// streams, where `seed + index` would make choice 1 of seed 7 the same as choice 0 of seed 8.
fn choice_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-sequence sampling state: the RNG stream and the counts the penalties need.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    counts: HashMap<u32, u32>,
}

impl Sampler {
    /// A sampler for one sequence.
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Self { params, rng: ChaCha8Rng::seed_from_u64(seed), counts: HashMap::new() }
    }

    /// Picks the next token and records it for the penalties.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        for &(token, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        self.apply_penalties(logits);
        let token = if self.params.temperature <= f32::EPSILON { greedy(logits) } else { self.draw(logits) };
        *self.counts.entry(token).or_insert(0) += 1;
        token
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let (freq, pres) = (self.params.frequency_penalty, self.params.presence_penalty);
        if freq == 0.0 && pres == 0.0 {
            return;
        }
        for (&token, &count) in &self.counts {
            if let Some(l) = logits.get_mut(token as usize) {
                *l -= count as f32 * freq + pres;
            }
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let t = self.params.temperature;
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, l)| (i as u32, l / t)).collect();
        if candidates.is_empty() {
            return greedy(logits);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    cumulative += p;
                    cumulative >= self.params.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[probs.len() - 1].0
    }
}

fn greedy(logits: &[f32]) -> u32 {
    crate::llama::model::argmax(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.5, -1.0, 0.5]
    }

    #[test]
    fn temperature_zero_is_greedy() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&mut logits()), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams { temperature: 1.5, seed: Some(seed), ..Default::default() });
            (0..64).map(|_| s.sample(&mut logits())).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn choices_have_their_own_reproducible_seeds() {
        let params = SamplingParams { temperature: 1.0, seed: Some(7), ..Default::default() };
        assert_eq!(params.for_choice(0).seed, Some(7), "choice 0 answers as n = 1 does");
        let seeds: Vec<_> = (0..8).map(|i| params.for_choice(i).seed).collect();
        assert_eq!(seeds, (0..8).map(|i| params.for_choice(i).seed).collect::<Vec<_>>());
        let distinct: std::collections::HashSet<_> = seeds.iter().collect();
        assert_eq!(distinct.len(), 8);
        assert_ne!(params.for_choice(1).seed, Some(8));
        assert_eq!(SamplingParams::default().for_choice(3).seed, None);
    }

    #[test]
    fn top_k_one_is_greedy_even_when_hot() {
        let mut s = Sampler::new(SamplingParams { temperature: 2.0, top_k: 1, seed: Some(1), ..Default::default() });
        assert!((0..50).all(|_| s.sample(&mut logits()) == 1));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 1 alone holds > 50% of the mass at temperature 1, so top_p = 0.5 keeps only it.
        let mut s = Sampler::new(SamplingParams { temperature: 1.0, top_p: 0.5, seed: Some(3), ..Default::default() });
        assert!((0..50).all(|_| s.sample(&mut [0.0, 5.0, 1.0]) == 1));
    }

    #[test]
    fn frequency_penalty_moves_away_from_repeats() {
        let mut s = Sampler::new(SamplingParams { frequency_penalty: 2.0, ..Default::default() });
        let mut l = vec![0.0, 1.0, 0.9];
        assert_eq!(s.sample(&mut l.clone()), 1);
        // Token 1 now carries a penalty of 2, so token 2 wins.
        assert_eq!(s.sample(&mut l), 2);
    }

    #[test]
    fn presence_penalty_applies_once_per_token() {
        let mut s = Sampler::new(SamplingParams { presence_penalty: 0.5, ..Default::default() });
        s.sample(&mut [0.0, 1.0]);
        s.sample(&mut [0.0, 10.0]);
        let mut l = vec![0.0, 1.0];
        s.apply_penalties(&mut l);
        assert_eq!(l[1], 0.5);
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let banned = SamplingParams { logit_bias: vec![(1, -100.0)], ..Default::default() };
        assert_eq!(Sampler::new(banned).sample(&mut logits()), 2);
        let forced =
            SamplingParams { logit_bias: vec![(3, 100.0)], temperature: 1.0, seed: Some(9), ..Default::default() };
        let mut s = Sampler::new(forced);
        assert!((0..50).all(|_| s.sample(&mut logits()) == 3));
    }

    #[test]
    fn out_of_range_parameters_are_rejected() {
        assert!(SamplingParams { logit_bias: vec![(0, 101.0)], ..Default::default() }.validate().is_err());
        assert!(SamplingParams { temperature: 3.0, ..Default::default() }.validate().is_err());
        assert!(SamplingParams { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(SamplingParams { presence_penalty: f32::NAN, ..Default::default() }.validate().is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
