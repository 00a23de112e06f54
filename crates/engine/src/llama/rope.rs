//! Rotary position embeddings: the per-dimension frequencies, and cos/sin rows for arbitrary positions.
//!
//! Tables are computed per forward call for exactly the positions in the batch (a few KB), instead of
//! precomputing a fixed `max_seq_len` table: sequences in one batch sit at unrelated positions, and no
//! hard-coded position cap exists (candle's `quantized_llama` fails past 4096).

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::llama::hparams::LlamaHparams;

/// Inverse frequencies for each rotated pair, with Llama 3 scaling or GGUF `rope_freqs` already applied.
#[derive(Debug, Clone)]
pub struct RopeFrequencies {
    inv_freq: Vec<f32>,
}

impl RopeFrequencies {
    /// Frequencies as transformers computes them (`1 / theta^(2i/d)`, then `llama3` scaling if configured).
    /// `freq_factors` are GGUF's `rope_freqs.weight`: llama.cpp stores Llama 3 scaling as per-pair divisors.
    pub fn new(hp: &LlamaHparams, freq_factors: Option<&[f32]>) -> Self {
        let half = hp.head_dim / 2;
        let mut inv_freq: Vec<f64> =
            (0..half).map(|i| 1.0 / hp.rope_theta.powf((2 * i) as f64 / hp.head_dim as f64)).collect();
        if let Some(s) = hp.rope_scaling {
            let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        if let Some(factors) = freq_factors {
            for (f, d) in inv_freq.iter_mut().zip(factors) {
                *f /= f64::from(*d);
            }
        }
        Self { inv_freq: inv_freq.into_iter().map(|f| f as f32).collect() }
    }

    /// cos and sin tables of shape `[positions.len(), head_dim / 2]` on `device`.
    pub fn cos_sin(&self, positions: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                // f32 product like transformers, so large positions round the same way.
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let shape = (positions.len(), half);
        Ok((Tensor::from_vec(cos, shape, device)?, Tensor::from_vec(sin, shape, device)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::hparams::{Llama3RopeScaling, RopeLayout};

    fn hp(scaling: Option<Llama3RopeScaling>) -> LlamaHparams {
        LlamaHparams {
            vocab_size: 10,
            hidden_size: 64,
            intermediate_size: 10,
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: scaling,
            rope_layout: RopeLayout::HalfSplit,
            context_length: 8192,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = RopeFrequencies::new(&hp(None), None).inv_freq;
        let scaled = RopeFrequencies::new(&hp(Some(s)), None).inv_freq;
        // Highest frequency: wavelength 2π, far below 8192/4, untouched.
        assert_eq!(plain[0], scaled[0]);
        // Lowest frequency: wavelength way above 8192, divided by the factor.
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
        // In between, the smooth blend lies between the two.
        for (p, s) in plain.iter().zip(&scaled) {
            assert!(*s <= *p && *s >= p / 8.0 - 1e-12);
        }
    }

    #[test]
    fn gguf_freq_factors_divide_frequencies() {
        let factors = vec![2.0f32; 32];
        let plain = RopeFrequencies::new(&hp(None), None).inv_freq;
        let divided = RopeFrequencies::new(&hp(None), Some(&factors)).inv_freq;
        assert!((divided[5] - plain[5] / 2.0).abs() < 1e-9);
    }

    #[test]
    fn cos_sin_rows_follow_positions() {
        let rope = RopeFrequencies::new(&hp(None), None);
        let (cos, sin) = rope.cos_sin(&[0, 7], &Device::Cpu).unwrap();
        assert_eq!(cos.dims(), &[2, 32]);
        let c = cos.to_vec2::<f32>().unwrap();
        let s = sin.to_vec2::<f32>().unwrap();
        assert_eq!(c[0][3], 1.0);
        assert_eq!(s[0][3], 0.0);
        assert!((c[1][0] - 7f32.cos()).abs() < 1e-6);
    }
}
