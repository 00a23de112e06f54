//! Loading a Hugging Face Llama checkpoint directory: `config.json`, `*.safetensors` (single file or
//! sharded with `model.safetensors.index.json`), `tokenizer.json`, and the chat template from
//! `chat_template.jinja` or `tokenizer_config.json`.
//!
//! Weight matrices (the projections and the embedding table) of an f16 or bf16 checkpoint stay in their
//! dtype on the CPU — half the memory of f32 — and multiply on our 16-bit kernels (`kernels::dot_half`,
//! activations rounded to the weight's type as llama.cpp and a bf16 transformers run do); norms are
//! widened to f32. f32 checkpoints, and every checkpoint on an accelerator, are computed in f32.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::llama::candle_forward::CandleWeights;
use crate::llama::hparams::LlamaHparams;
use crate::llama::layer::{Embedding, LayerWeights};
use crate::llama::linear::Linear;
use crate::llama::model::{LlamaModel, Pass};
use crate::llama::rope::RopeFrequencies;
use crate::load::quantize::QuantizeOnLoad;
use crate::text::tokenizer::Tokenizer;

/// Everything a checkpoint directory provides.
pub struct HfModel {
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
}

/// Loads the checkpoint in `dir`, its matrices converted to `quantize`'s format (on the CPU) when given.
pub fn load(dir: &Path, device: &Device, quantize: Option<QuantizeOnLoad>) -> Result<HfModel> {
    let hp = LlamaHparams::from_hf_config(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    let chat_template = chat_template(dir)?;
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; candle copies each tensor out of the map on load and
    // the map is dropped before this function returns, so a later change to the file cannot be observed
    // through a live tensor.
    let st = unsafe { MmapedSafetensors::multi(&files) }
        .map_err(|e| EngineError::invalid_model(dir, format!("safetensors: {e}")))?;
    let weights = Weights { st: &st, dir, device, quantize };
    let model = build(&hp, &weights)?;
    Ok(HfModel { model, tokenizer, chat_template })
}

struct Weights<'a> {
    st: &'a MmapedSafetensors,
    dir: &'a Path,
    device: &'a Device,
    quantize: Option<QuantizeOnLoad>,
}

impl Weights<'_> {
    /// The tensor as stored, after checking its shape against the one the config implies.
    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .st
            .load(name, self.device)
            .map_err(|e| EngineError::invalid_model(self.dir, format!("tensor '{name}': {e}")))?;
        if t.dims() != shape {
            return Err(EngineError::invalid_model(
                self.dir,
                format!("tensor '{name}' has shape {:?}, expected {shape:?}", t.dims()),
            ));
        }
        Ok(t)
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.load(name, shape)?;
        match t.dtype() {
            DType::F32 | DType::F16 | DType::BF16 => Ok(t.to_dtype(DType::F32)?),
            other => Err(EngineError::unsupported(self.dir, format!("tensor '{name}' has dtype {other:?}"))),
        }
    }

    /// A weight matrix: quantized if the options ask, else kept 16-bit (a [`QTensor`] our kernels read)
    /// when the checkpoint stores it so — both on the CPU only — and widened to f32 otherwise.
    fn matrix(&self, name: &str, shape: &[usize]) -> Result<WeightMatrix> {
        let t = self.load(name, shape)?;
        let half = match t.dtype() {
            DType::F16 => Some(GgmlDType::F16),
            DType::BF16 => Some(GgmlDType::BF16),
            DType::F32 => None,
            other => return Err(EngineError::unsupported(self.dir, format!("tensor '{name}' has dtype {other:?}"))),
        };
        if let Some(format) = self.quantize.filter(|_| self.device.is_cpu())
            && let Some(q) = format.apply_dense(&t)?
        {
            return Ok(WeightMatrix::Packed(q));
        }
        match half {
            // Exact: the values pass through f32 and back to the type they came in.
            Some(dtype) if self.device.is_cpu() => Ok(WeightMatrix::Packed(Arc::new(QTensor::quantize(&t, dtype)?))),
            _ => Ok(WeightMatrix::F32(t.to_dtype(DType::F32)?)),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }
}

/// A weight matrix as loaded: 16-bit or quantized on the CPU, f32 otherwise.
enum WeightMatrix {
    Packed(Arc<QTensor>),
    F32(Tensor),
}

impl WeightMatrix {
    fn linear(&self) -> Linear {
        match self {
            Self::Packed(q) => QMatMul::QTensor(q.clone()).into(),
            Self::F32(t) => QMatMul::Tensor(t.clone()).into(),
        }
    }

    /// As the embedding table (a 16-bit table is looked up row by row and widened, not widened whole).
    fn embedding(&self) -> Embedding {
        match self {
            Self::Packed(q) => Embedding::Quantized(q.clone()),
            Self::F32(t) => Embedding::Dense(t.clone()),
        }
    }
}

fn build(hp: &LlamaHparams, w: &Weights<'_>) -> Result<LlamaModel> {
    let (d, kv_dim, ff) = (hp.hidden_size, hp.num_kv_heads * hp.head_dim, hp.intermediate_size);
    let q_dim = hp.num_heads * hp.head_dim;
    let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> { Ok(w.matrix(name, &[out, inp])?.linear()) };
    let embed = w.matrix("model.embed_tokens.weight", &[hp.vocab_size, d])?;
    // A tied head shares the table's storage (counted once, loaded once).
    let lm_head = if !hp.tie_word_embeddings && w.has("lm_head.weight") {
        linear("lm_head.weight", hp.vocab_size, d)?
    } else {
        embed.linear()
    };
    let mut layers = Vec::with_capacity(hp.num_layers);
    for i in 0..hp.num_layers {
        let p = format!("model.layers.{i}");
        layers.push(LayerWeights {
            attn_norm: w.get(&format!("{p}.input_layernorm.weight"), &[d])?,
            wq: linear(&format!("{p}.self_attn.q_proj.weight"), q_dim, d)?,
            wk: linear(&format!("{p}.self_attn.k_proj.weight"), kv_dim, d)?,
            wv: linear(&format!("{p}.self_attn.v_proj.weight"), kv_dim, d)?,
            wo: linear(&format!("{p}.self_attn.o_proj.weight"), d, q_dim)?,
            ffn_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
            w_gate: linear(&format!("{p}.mlp.gate_proj.weight"), ff, d)?,
            w_up: linear(&format!("{p}.mlp.up_proj.weight"), ff, d)?,
            w_down: linear(&format!("{p}.mlp.down_proj.weight"), d, ff)?,
        });
    }
    let candle = CandleWeights {
        layers,
        final_norm: w.get("model.norm.weight", &[d])?,
        lm_head,
        rope: RopeFrequencies::new(hp, None),
        kv_dtype: DType::F32,
    };
    Ok(LlamaModel::new(hp.clone(), embed.embedding(), w.device.clone(), Pass::Candle(candle)))
}

/// `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| EngineError::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| EngineError::invalid_model(&index, e))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::invalid_model(&index, "no weight_map"))?;
        let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            // Shard names come from a file; refuse anything that would escape the checkpoint directory.
            if shard.contains('/') || shard.contains('\\') || shard == ".." {
                return Err(EngineError::invalid_model(
                    &index,
                    format!("shard name '{shard}' is not a plain file name"),
                ));
            }
            let path = dir.join(shard);
            if !path.exists() {
                return Err(EngineError::io(&path, std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
            files.push(path);
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        Ok(vec![single])
    } else {
        Err(EngineError::io(single, std::io::Error::from(std::io::ErrorKind::NotFound)))
    }
}

/// `chat_template.jinja` (newer transformers) wins over `tokenizer_config.json`'s `chat_template`.
pub(crate) fn chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(t) => return Ok(Some(t)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(EngineError::io(&jinja, e)),
        Err(_) => {}
    }
    let cfg = dir.join("tokenizer_config.json");
    let text = match std::fs::read_to_string(&cfg) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(&cfg, e)),
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| EngineError::invalid_model(&cfg, e))?;
    Ok(match json.get("chat_template") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        // A list of named templates: use the default one.
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    })
}
