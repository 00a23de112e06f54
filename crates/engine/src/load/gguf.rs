//! Loading a llama-architecture GGUF file: hyper-parameters, quantized weights, tokenizer and chat template,
//! all from the one file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{self, Value};

use crate::error::{EngineError, Result};
use crate::llama::candle_forward::CandleWeights;
use crate::llama::cpu_forward::CpuWeights;
use crate::llama::hparams::{LlamaHparams, RopeLayout};
use crate::llama::layer::{Embedding, LayerWeights};
use crate::llama::linear::{Linear, projection_weight};
use crate::llama::model::{LlamaModel, Pass};
use crate::llama::rope::RopeFrequencies;
use crate::load::quantize::QuantizeOnLoad;
use crate::text::tokenizer::Tokenizer;

/// Everything a GGUF file provides.
pub struct GgufModel {
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    /// `general.name`, for listings.
    pub name: Option<String>,
}

/// Reads a GGUF file, its full-precision matrices converted to `quantize`'s format when given. Truncated or
/// corrupt files are reported as [`EngineError::InvalidModel`]; files of another architecture as
/// [`EngineError::Unsupported`].
pub fn load(path: &Path, device: &Device, quantize: Option<QuantizeOnLoad>) -> Result<GgufModel> {
    let (mut file, file_len, content) = read_header(path)?;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let bytes = (elems / block.max(1)) as u64 * info.ggml_dtype.type_size() as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > file_len {
            return Err(EngineError::invalid_model(
                path,
                format!("tensor '{name}' ends at byte {end} but the file has {file_len} bytes (truncated?)"),
            ));
        }
    }
    let md = &content.metadata;
    let arch = md_str(md, "general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(EngineError::unsupported(path, format!("architecture '{arch}'; only 'llama' is supported")));
    }
    let hp = hparams(md, path)?;
    let tokenizer = Tokenizer::from_gguf(md, path)?;
    let chat_template = md_str(md, "tokenizer.chat_template");
    let name = md_str(md, "general.name");

    let mut tensor = |name: &str| -> Result<QTensor> {
        if !content.tensor_infos.contains_key(name) {
            return Err(EngineError::invalid_model(path, format!("tensor '{name}' is missing")));
        }
        content
            .tensor(&mut file, name, device)
            .map_err(|e| EngineError::invalid_model(path, format!("tensor '{name}': {e}")))
    };
    let dense = |q: QTensor| -> Result<candle_core::Tensor> { Ok(q.dequantize(device)?) };
    // A matrix as the projections read it: quantized now if the options ask (a tied LM head shares the
    // embedding table's quantized copy, as it does in a file llama.cpp's quantizer makes).
    let matrix = |q: QTensor| -> Result<Arc<QTensor>> {
        match quantize {
            Some(format) => format.apply(Arc::new(q)),
            None => Ok(Arc::new(q)),
        }
    };

    let token_embd = matrix(tensor("token_embd.weight")?)?;
    let expect_shape = [hp.hidden_size, hp.vocab_size];
    if token_embd.shape().dims() != [hp.vocab_size, hp.hidden_size] {
        return Err(EngineError::invalid_model(
            path,
            format!("token_embd.weight has shape {:?}, expected {expect_shape:?} (GGUF order)", token_embd.shape()),
        ));
    }
    let lm_head = if content.tensor_infos.contains_key("output.weight") {
        projection_weight(matrix(tensor("output.weight")?)?)?.into()
    } else {
        projection_weight(token_embd.clone())?.into()
    };
    let freq_factors = if content.tensor_infos.contains_key("rope_freqs.weight") {
        Some(dense(tensor("rope_freqs.weight")?)?.to_vec1::<f32>()?)
    } else {
        None
    };
    let mut layers = Vec::with_capacity(hp.num_layers);
    for i in 0..hp.num_layers {
        let mut q = |suffix: &str| -> Result<Linear> {
            Ok(projection_weight(matrix(tensor(&format!("blk.{i}.{suffix}"))?)?)?.into())
        };
        let wq = q("attn_q.weight")?;
        let wk = q("attn_k.weight")?;
        let wv = q("attn_v.weight")?;
        let wo = q("attn_output.weight")?;
        let w_gate = q("ffn_gate.weight")?;
        let w_up = q("ffn_up.weight")?;
        let w_down = q("ffn_down.weight")?;
        layers.push(LayerWeights {
            attn_norm: dense(tensor(&format!("blk.{i}.attn_norm.weight"))?)?,
            wq,
            wk,
            wv,
            wo,
            ffn_norm: dense(tensor(&format!("blk.{i}.ffn_norm.weight"))?)?,
            w_gate,
            w_up,
            w_down,
        });
    }
    let final_norm = dense(tensor("output_norm.weight")?)?;
    let rope = RopeFrequencies::new(&hp, freq_factors.as_deref());
    let candle = CandleWeights { layers, final_norm, lm_head, rope, kv_dtype: candle_core::DType::F16 };
    let cpu = CpuWeights::new(&hp, &candle.layers, &candle.final_norm, &candle.lm_head, freq_factors.as_deref());
    let pass = match cpu {
        Some(cpu) => Pass::Cpu(cpu),
        None => Pass::Candle(candle),
    };
    let model = LlamaModel::new(hp, Embedding::Quantized(token_embd), device.clone(), pass);
    Ok(GgufModel { model, tokenizer, chat_template, name })
}

/// Opens a GGUF file and parses its header (metadata and tensor table), after checking every declared
/// length against the file's size so a corrupt header cannot make the parser allocate wildly.
fn read_header(path: &Path) -> Result<(File, u64, gguf_file::Content)> {
    let mut file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    crate::load::gguf_check::check_header(&mut file, file_len)
        .map_err(|reason| EngineError::invalid_model(path, format!("not a valid GGUF file: {reason}")))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| EngineError::invalid_model(path, format!("not a valid GGUF file: {e}")))?;
    Ok((file, file_len, content))
}

/// The tokenizer and chat template of a GGUF file, from its header alone (no tensor is read).
pub(crate) fn load_tokenizer(path: &Path) -> Result<(Tokenizer, Option<String>)> {
    let (_, _, content) = read_header(path)?;
    let tokenizer = Tokenizer::from_gguf(&content.metadata, path)?;
    Ok((tokenizer, md_str(&content.metadata, "tokenizer.chat_template")))
}

// Defined here rather than in `text/` so the tokenizer never depends on the file loader.
impl Tokenizer {
    /// Reads only the header of a GGUF file and builds its tokenizer: a vocabulary-only GGUF (no
    /// tensors) is enough, which is how tokenizers are tested against llama.cpp's vocab files.
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let (_, _, content) = read_header(path)?;
        Self::from_gguf(&content.metadata, path)
    }
}

fn hparams(md: &HashMap<String, Value>, path: &Path) -> Result<LlamaHparams> {
    let get = |key: &str| -> Result<usize> {
        md.get(key)
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .map(|v| v as usize)
            .ok_or_else(|| EngineError::invalid_model(path, format!("metadata '{key}' is missing")))
    };
    let float = |key: &str| md.get(key).and_then(|v| v.to_f32().ok());
    let hidden_size = get("llama.embedding_length")?;
    let num_heads = get("llama.attention.head_count")?;
    let num_kv_heads = get("llama.attention.head_count_kv").unwrap_or(num_heads);
    let head_dim = md
        .get("llama.rope.dimension_count")
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .unwrap_or(hidden_size / num_heads.max(1));
    let vocab_size = match get("llama.vocab_size") {
        Ok(v) => v,
        Err(_) => md
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(Vec::len)
            .ok_or_else(|| EngineError::invalid_model(path, "vocabulary size unknown"))?,
    };
    let hp = LlamaHparams {
        vocab_size,
        hidden_size,
        intermediate_size: get("llama.feed_forward_length")?,
        num_layers: get("llama.block_count")?,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: f64::from(float("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5)),
        rope_theta: f64::from(float("llama.rope.freq_base").unwrap_or(10_000.0)),
        rope_scaling: None,
        rope_layout: RopeLayout::Interleaved,
        context_length: get("llama.context_length").unwrap_or(2048),
        tie_word_embeddings: true,
    };
    hp.validate(path)?;
    Ok(hp)
}

fn md_str(md: &HashMap<String, Value>, key: &str) -> Option<String> {
    md.get(key).and_then(|v| v.to_string().ok()).cloned()
}
