//! Llama hyper-parameters, read from either a GGUF header or a Hugging Face `config.json`.
//!
//! Both formats describe the same architecture with different spellings; this module folds them into one
//! [`LlamaHparams`] so the forward pass never needs to know where a model came from. `config.json` has two
//! spellings of RoPE settings: the classic `rope_theta` + `rope_scaling` and the newer `rope_parameters`
//! (transformers ≥ 4.5x); both are accepted.

use std::path::Path;

use serde::Deserialize;

use crate::error::{EngineError, Result};

/// How query/key pairs are laid out for rotary embeddings. llama.cpp's converter permutes Q/K weights so
/// that GGUF files rotate adjacent pairs, while Hugging Face checkpoints rotate the two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs (0,1), (2,3), … — GGUF.
    Interleaved,
    /// Pairs (i, i + d/2) — Hugging Face.
    HalfSplit,
}

/// Llama 3.x frequency-dependent RoPE scaling (`rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// How much the context was stretched: low frequencies are divided by this.
    pub factor: f64,
    /// Wavelengths longer than `original / low_freq_factor` are fully scaled.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original / high_freq_factor` are left as they are.
    pub high_freq_factor: f64,
    /// The context length the model was first trained for.
    pub original_max_position_embeddings: f64,
}

/// The numbers that define a Llama model's shape, whatever file format it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHparams {
    /// Token ids run from 0 to this (exclusive).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward block's hidden layer.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (fewer than query heads with grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The RMS norms' epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Llama 3.x RoPE scaling, when the model uses it.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Which dimensions RoPE rotates together (differs between GGUF and Hugging Face weights).
    pub rope_layout: RopeLayout,
    /// The longest sequence the model was trained for; the engine's context window.
    pub context_length: usize,
    /// The LM head reuses the embedding table.
    pub tie_word_embeddings: bool,
}

impl LlamaHparams {
    /// Checks the invariants the forward pass relies on, so a malformed file fails at load, not mid-request.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(EngineError::invalid_model(path, reason));
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_layers == 0 {
            return bad("head and layer counts must be positive".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {} must be even and positive", self.head_dim));
        }
        if self.hidden_size == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return bad("hidden, intermediate and vocabulary sizes must be positive".into());
        }
        if self.context_length == 0 {
            return bad("context length must be positive".into());
        }
        Ok(())
    }

    /// Reads `config.json` of a Hugging Face Llama checkpoint.
    pub fn from_hf_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let raw: HfConfig =
            serde_json::from_str(&text).map_err(|e| EngineError::invalid_model(path, format!("config.json: {e}")))?;
        raw.into_hparams(path)
    }
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeParams>,
    rope_parameters: Option<HfRopeParams>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HfRopeParams {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    2048
}

impl HfConfig {
    fn into_hparams(self, path: &Path) -> Result<LlamaHparams> {
        let is_llama =
            self.model_type.as_deref() == Some("llama") || self.architectures.iter().any(|a| a == "LlamaForCausalLM");
        if !is_llama {
            let what = self
                .model_type
                .clone()
                .or_else(|| self.architectures.first().cloned())
                .unwrap_or_else(|| "unknown".into());
            return Err(EngineError::unsupported(
                path,
                format!("architecture '{what}' (config.json model_type); only 'llama' is supported"),
            ));
        }
        if self.attention_bias || self.mlp_bias {
            return Err(EngineError::unsupported(path, "attention_bias/mlp_bias = true"));
        }
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(EngineError::unsupported(path, format!("hidden_act '{act}'; only 'silu'")));
        }
        // The newer spelling carries rope_theta inside rope_parameters; the older one at top level.
        let rope = self.rope_parameters.or(self.rope_scaling);
        let rope_theta = rope.as_ref().and_then(|r| r.rope_theta).or(self.rope_theta).unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None => None,
            Some(r) => match r.rope_type.as_deref() {
                None | Some("default") => None,
                Some("llama3") => Some(Llama3RopeScaling {
                    factor: required(r.factor, "rope_scaling.factor", path)?,
                    low_freq_factor: required(r.low_freq_factor, "rope_scaling.low_freq_factor", path)?,
                    high_freq_factor: required(r.high_freq_factor, "rope_scaling.high_freq_factor", path)?,
                    original_max_position_embeddings: required(
                        r.original_max_position_embeddings,
                        "rope_scaling.original_max_position_embeddings",
                        path,
                    )?,
                }),
                Some(other) => {
                    return Err(EngineError::unsupported(
                        path,
                        format!("rope type '{other}'; supported: default, llama3"),
                    ));
                }
            },
        };
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        let hp = LlamaHparams {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            rope_layout: RopeLayout::HalfSplit,
            context_length: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        };
        hp.validate(path)?;
        Ok(hp)
    }
}

fn required(v: Option<f64>, key: &str, path: &Path) -> Result<f64> {
    v.ok_or_else(|| EngineError::invalid_model(path, format!("config.json lacks {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, json: &str) -> std::path::PathBuf {
        let p = dir.path().join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    const BASE: &str = r#""vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2"#;

    #[test]
    fn both_rope_spellings_give_the_same_hparams() {
        let dir = tempfile::tempdir().unwrap();
        let scaling = r#""factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64, "rope_type": "llama3""#;
        let old = write(
            &dir,
            &format!(r#"{{"model_type": "llama", {BASE}, "rope_theta": 500000.0, "rope_scaling": {{{scaling}}}}}"#),
        );
        let a = LlamaHparams::from_hf_config(&old).unwrap();
        let new = write(
            &dir,
            &format!(r#"{{"model_type": "llama", {BASE}, "rope_parameters": {{{scaling}, "rope_theta": 500000.0}}}}"#),
        );
        let b = LlamaHparams::from_hf_config(&new).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.rope_scaling.unwrap().factor, 32.0);
        assert_eq!(a.head_dim, 8);
    }

    #[test]
    fn unsupported_architecture_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, &format!(r#"{{"model_type": "mistral", {BASE}}}"#));
        let err = LlamaHparams::from_hf_config(&p).unwrap_err().to_string();
        assert!(err.contains("architecture 'mistral'"), "{err}");
    }

    #[test]
    fn unsupported_rope_type_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            &format!(r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"type": "yarn", "factor": 2.0}}}}"#),
        );
        let err = LlamaHparams::from_hf_config(&p).unwrap_err().to_string();
        assert!(err.contains("rope type 'yarn'"), "{err}");
    }

    #[test]
    fn inconsistent_heads_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8,
               "num_hidden_layers": 1, "num_attention_heads": 8, "num_key_value_heads": 3}"#,
        );
        assert!(matches!(LlamaHparams::from_hf_config(&p), Err(EngineError::InvalidModel { .. })));
    }
}
