//! The weights both forward passes start from, as the loaders build them: the token embedding table and
//! one [`LayerWeights`] per transformer block. A leaf module, so the passes and the model that picks
//! between them read the same types without reading each other.

use candle_core::Tensor;

use crate::error::Result;
use crate::llama::linear::Linear;

/// Token embedding table: quantized GGUF tables are looked up row by row without dequantizing the whole
/// table (113 MB for SmolLM2 in f32); dense tables use `index_select`.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// A GGUF table, kept in its quantized format.
    Quantized(std::sync::Arc<candle_core::quantized::QTensor>),
    /// A safetensors table, `[vocab, hidden]`.
    Dense(Tensor),
}

impl Embedding {
    /// The rows of `ids`: `[T]` → `[T, hidden]`.
    pub(crate) fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Quantized(q) => q.embedding(ids)?,
            Self::Dense(w) => w.index_select(ids, 0)?,
        })
    }
}

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// RMS norm weights before attention.
    pub attn_norm: Tensor,
    /// Query projection.
    pub wq: Linear,
    /// Key projection.
    pub wk: Linear,
    /// Value projection.
    pub wv: Linear,
    /// Attention output projection.
    pub wo: Linear,
    /// RMS norm weights before the feed-forward block.
    pub ffn_norm: Tensor,
    /// SwiGLU gate projection.
    pub w_gate: Linear,
    /// SwiGLU up projection.
    pub w_up: Linear,
    /// Feed-forward down projection.
    pub w_down: Linear,
}
