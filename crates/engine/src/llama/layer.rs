//! The weights both forward passes start from, as the loaders build them: the token embedding table and
//! one [`LayerWeights`] per transformer block. A leaf module, so the passes and the model that picks
//! between them read the same types without reading each other.

use std::collections::HashSet;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Tensor, TensorId};

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

/// Counts the bytes of weights a model holds, each storage once: a tied LM head shares the embedding
/// table, and counting it twice would overstate what loading cost.
#[derive(Debug, Default)]
pub(crate) struct WeightTally {
    seen: HashSet<StorageKey>,
    /// Bytes counted so far.
    pub(crate) bytes: usize,
}

/// What identifies a weight's storage: the shared quantized tensor, or candle's tensor id (clones share it).
#[derive(Debug, PartialEq, Eq, Hash)]
enum StorageKey {
    Quantized(usize),
    Dense(TensorId),
}

impl WeightTally {
    /// A GGUF-style tensor, in its own format.
    pub(crate) fn quantized(&mut self, q: &Arc<QTensor>) {
        if self.seen.insert(StorageKey::Quantized(Arc::as_ptr(q) as usize)) {
            self.bytes += q.storage_size_in_bytes();
        }
    }

    /// A dense tensor.
    pub(crate) fn dense(&mut self, t: &Tensor) {
        if self.seen.insert(StorageKey::Dense(t.id())) {
            self.bytes += t.elem_count() * t.dtype().size_in_bytes();
        }
    }

    /// A projection's weight.
    pub(crate) fn linear(&mut self, l: &Linear) {
        match l.weight() {
            QMatMul::QTensor(q) => self.quantized(q),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => self.dense(t),
        }
    }

    /// An embedding table.
    pub(crate) fn embedding(&mut self, e: &Embedding) {
        match e {
            Embedding::Quantized(q) => self.quantized(q),
            Embedding::Dense(t) => self.dense(t),
        }
    }

    /// Every weight of a block.
    pub(crate) fn layer(&mut self, l: &LayerWeights) {
        self.dense(&l.attn_norm);
        self.dense(&l.ffn_norm);
        for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
            self.linear(w);
        }
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
