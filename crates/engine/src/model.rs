//! Our Llama forward pass: one file, candle ops, and projections through [`Linear`] (candle's quantized
//! matmul at decode, a dequantized dense matmul for prefill chunks).
//!
//! Why our own and not candle-transformers' `quantized_llama`: that model runs batches only in lockstep
//! (one position for the whole batch), rebuilds its KV cache by concatenation every step, materialises
//! repeated K/V for grouped-query attention and caps positions at 4096. Here a forward call takes any
//! number of sequences, each with its own tokens (a prefill chunk or a single decode token), its own
//! position and its own preallocated cache. All rows of all sequences go through each weight matrix in one
//! matmul, so a decode step reads the weights once for the whole batch; only attention is per sequence.
//!
//! Shapes use: `T` = tokens in the whole batch, `L` = tokens of one sequence in this call, `S` = that
//! sequence's cached length after this call, `H`/`KV` = query/key-value heads, `G = H / KV`, `D` = head dim.

use candle_core::{DType, Device, Tensor};

use crate::cpu_forward::{self, CpuWeights, HostLayerCache};
use crate::error::{EngineError, Result};
use crate::hparams::{LlamaHparams, RopeLayout};
use crate::kv_cache_type::KvCacheType;
use crate::linear::Linear;
use crate::rope::RopeFrequencies;

/// Token embedding table: quantized GGUF tables are looked up row by row without dequantizing the whole
/// table (113 MB for SmolLM2 in f32); dense tables use `index_select`.
#[derive(Debug, Clone)]
pub enum Embedding {
    Quantized(std::sync::Arc<candle_core::quantized::QTensor>),
    Dense(Tensor),
}

impl Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Quantized(q) => q.embedding(ids)?,
            Self::Dense(w) => w.index_select(ids, 0)?,
        })
    }
}

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
}

/// A loaded Llama model: weights and the numbers that shape them. Immutable and shareable across threads;
/// all per-sequence state lives in [`KvCache`].
#[derive(Debug)]
pub struct LlamaModel {
    pub(crate) hp: LlamaHparams,
    pub(crate) embedding: Embedding,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) final_norm: Tensor,
    pub(crate) lm_head: Linear,
    pub(crate) rope: RopeFrequencies,
    pub(crate) device: Device,
    /// Element type of the KV cache.
    pub(crate) kv_dtype: DType,
    /// Element type of [`cpu_forward`]'s host cache ([`ModelOptions::kv_cache_type`](crate::ModelOptions)).
    pub(crate) host_kv: KvCacheType,
    /// Quantized GGUF models on CPU run [`cpu_forward`] (llama.cpp's arithmetic, our SIMD kernels);
    /// `None` runs the candle pass.
    pub(crate) cpu: Option<CpuWeights>,
}

/// One sequence's keys and values for every layer, allocated once for the sequence's whole lifetime
/// (`prompt + max_tokens`) so decoding writes in place instead of copying the past every step.
/// The element type follows the model's convention: f16 for GGUF models (llama.cpp's default cache —
/// half the memory, and the same rounding, which keeps our logits close to llama.cpp's on the same file),
/// f32 for full-precision checkpoints (matching transformers).
#[derive(Debug)]
pub struct KvCache {
    storage: KvStorage,
    capacity: usize,
    len: usize,
}

/// Per layer: keys and values, each `[KV, capacity, D]`.
#[derive(Debug)]
enum KvStorage {
    /// Candle tensors on the model's device (the candle pass).
    Tensors(Vec<(Tensor, Tensor)>),
    /// Host f16 arrays (the CPU pass).
    Host(Vec<HostLayerCache>),
}

impl KvCache {
    /// Positions already cached: the position the next token will take.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position from `len` on, so a scorer can try several continuations of one
    /// prefilled prompt; later forward calls overwrite the forgotten slots.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Marks `n` more positions as cached, after a forward call wrote them.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// A new cache of `capacity` positions holding a copy of this one's first `len`, for a sequence
    /// whose tokens start the same way; `None` for device caches (only host caches are copied).
    pub(crate) fn copy_prefix(&self, len: usize, capacity: usize) -> Option<KvCache> {
        let KvStorage::Host(layers) = &self.storage else { return None };
        let len = len.min(self.len).min(capacity);
        let layers = layers.iter().map(|layer| layer.copy_prefix(len)).collect();
        Some(KvCache { storage: KvStorage::Host(layers), capacity, len })
    }

    /// Positions this cache's memory holds: whole pages for host caches (they grow a page at a time),
    /// the capacity for device caches (allocated at once).
    pub(crate) fn allocated_positions(&self) -> usize {
        match &self.storage {
            KvStorage::Host(layers) => layers.first().map_or(0, HostLayerCache::allocated_positions),
            KvStorage::Tensors(_) => self.capacity,
        }
    }

    /// The host arrays of one layer. Only the CPU pass calls this, on caches it allocated.
    pub(crate) fn host_layer(&mut self, layer: usize) -> Result<&mut HostLayerCache> {
        match &mut self.storage {
            KvStorage::Host(layers) => Ok(&mut layers[layer]),
            KvStorage::Tensors(_) => Err(EngineError::Inference("a device cache reached the CPU pass".into())),
        }
    }

    fn tensors(&self, layer: usize) -> Result<&(Tensor, Tensor)> {
        match &self.storage {
            KvStorage::Tensors(layers) => Ok(&layers[layer]),
            KvStorage::Host(_) => Err(EngineError::Inference("a host cache reached the candle pass".into())),
        }
    }
}

/// One sequence's share of a forward call.
pub struct SequenceBatch<'a> {
    /// Tokens to append: the prompt (or a chunk of it) at prefill, one token at decode.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Return logits for every position of `tokens` (teacher forcing, scoring), not just the last.
    pub all_logits: bool,
}

impl LlamaModel {
    /// The model's hyper-parameters.
    pub fn hparams(&self) -> &LlamaHparams {
        &self.hp
    }

    /// Chooses the KV cache's element type before the model serves. Only the CPU pass has a choice;
    /// elsewhere anything but the model's own type is refused, so a config cannot ask for a saving it
    /// would not get.
    pub(crate) fn set_kv_cache_type(&mut self, kind: KvCacheType) -> Result<()> {
        if self.cpu.is_none() && kind != KvCacheType::F16 {
            return Err(EngineError::InvalidRequest(format!(
                "kv_cache_type {kind} needs the CPU pass (a Q4_1 or Q8_0 GGUF model on the CPU); this model runs on candle \
                 with a {:?} cache: leave kv_cache_type unset or f16",
                self.kv_dtype
            )));
        }
        self.host_kv = kind;
        Ok(())
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of KV cache one position of one sequence takes, over all layers: what the scheduler's
    /// memory budget counts.
    pub fn kv_bytes_per_position(&self) -> usize {
        let (kv, d, layers) = (self.hp.num_kv_heads, self.hp.head_dim, self.hp.num_layers);
        let per_layer = if self.cpu.is_some() {
            HostLayerCache::bytes_per_position(kv, d, self.host_kv)
        } else {
            2 * kv * d * self.kv_dtype.size_in_bytes()
        };
        per_layer * layers
    }

    /// Allocates a cache for a sequence that will hold at most `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        if capacity > self.hp.context_length {
            return Err(EngineError::InvalidRequest(format!(
                "{capacity} positions exceed the context window of {}",
                self.hp.context_length
            )));
        }
        let (kv, d) = (self.hp.num_kv_heads, self.hp.head_dim);
        let storage = if self.cpu.is_some() {
            KvStorage::Host((0..self.hp.num_layers).map(|_| HostLayerCache::new(kv, d, self.host_kv)).collect())
        } else {
            let shape = (kv, capacity.max(1), d);
            KvStorage::Tensors(
                (0..self.hp.num_layers)
                    .map(|_| {
                        Ok((
                            Tensor::zeros(shape, self.kv_dtype, &self.device)?,
                            Tensor::zeros(shape, self.kv_dtype, &self.device)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        };
        Ok(KvCache { storage, capacity, len: 0 })
    }

    /// Runs the model over every sequence's new tokens and appends them to the caches.
    /// Returns per sequence its logits `[n, vocab]`: `n = 1` (last position) or `L` with `all_logits`.
    pub fn forward(&self, batch: &mut [SequenceBatch<'_>]) -> Result<Vec<Tensor>> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for seq in batch.iter() {
            if seq.tokens.is_empty() {
                return Err(EngineError::InvalidRequest("a sequence in the batch has no tokens".into()));
            }
            let start = seq.cache.len;
            if start + seq.tokens.len() > seq.cache.capacity {
                return Err(EngineError::InvalidRequest(format!(
                    "sequence would grow to {} positions; its cache holds {}",
                    start + seq.tokens.len(),
                    seq.cache.capacity
                )));
            }
            if let Some(&bad) = seq.tokens.iter().find(|&&t| t as usize >= self.hp.vocab_size) {
                return Err(EngineError::InvalidRequest(format!("token id {bad} is outside the vocabulary")));
            }
            ids.extend_from_slice(seq.tokens);
            positions.extend(start..start + seq.tokens.len());
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        if let Some(cpu) = &self.cpu {
            return cpu_forward::forward(cpu, &self.hp, self.embedding.forward(&ids)?, &positions, batch);
        }
        let (cos, sin) = self.rope.cos_sin(&positions, &self.device)?;

        let mut x = self.embedding.forward(&ids)?.to_dtype(DType::F32)?; // [T, hidden]
        for (layer_idx, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.hp.rms_norm_eps as f32)?;
            let attn = self.attention(layer_idx, layer, &h, &cos, &sin, batch)?;
            x = (x + layer.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.hp.rms_norm_eps as f32)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        for seq in batch.iter_mut() {
            seq.cache.len += seq.tokens.len();
        }

        // Only the rows whose logits are wanted go through the (vocabulary-sized) LM head.
        let mut wanted = Vec::new();
        let mut offset = 0u32;
        for seq in batch.iter() {
            let n = seq.tokens.len() as u32;
            if seq.all_logits {
                wanted.extend(offset..offset + n);
            } else {
                wanted.push(offset + n - 1);
            }
            offset += n;
        }
        let wanted_len = wanted.len();
        let rows = x.index_select(&Tensor::from_vec(wanted, wanted_len, &self.device)?, 0)?;
        let rows = candle_nn::ops::rms_norm(&rows, &self.final_norm, self.hp.rms_norm_eps as f32)?;
        let logits = self.lm_head.forward(&rows)?.to_dtype(DType::F32)?;

        let mut out = Vec::with_capacity(batch.len());
        let mut row = 0;
        for seq in batch.iter() {
            let n = if seq.all_logits { seq.tokens.len() } else { 1 };
            out.push(logits.narrow(0, row, n)?);
            row += n;
        }
        Ok(out)
    }

    /// Self-attention of one layer for the whole batch. `h`: `[T, hidden]` → `[T, H * D]`.
    fn attention(
        &self,
        layer_idx: usize,
        layer: &LayerWeights,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        batch: &mut [SequenceBatch<'_>],
    ) -> Result<Tensor> {
        let hp = &self.hp;
        let (n_heads, n_kv, hd) = (hp.num_heads, hp.num_kv_heads, hp.head_dim);
        let group = n_heads / n_kv;
        let total = h.dim(0)?;
        let q = self.rotate(&layer.wq.forward(h)?, n_heads, cos, sin)?; // [H, T, D]
        let k = self.rotate(&layer.wk.forward(h)?, n_kv, cos, sin)?; // [KV, T, D]
        let v = layer.wv.forward(h)?.reshape((total, n_kv, hd))?.transpose(0, 1)?.contiguous()?; // [KV, T, D]
        let scale = 1.0 / (hd as f64).sqrt();

        let mut outputs = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for seq in batch.iter_mut() {
            let l = seq.tokens.len();
            let start = seq.cache.len;
            let end = start + l;
            let (k_cache, v_cache) = seq.cache.tensors(layer_idx)?;
            k_cache.slice_set(&k.narrow(1, offset, l)?.to_dtype(self.kv_dtype)?.contiguous()?, 1, start)?;
            v_cache.slice_set(&v.narrow(1, offset, l)?.to_dtype(self.kv_dtype)?.contiguous()?, 1, start)?;
            let keys = k_cache.narrow(1, 0, end)?.to_dtype(DType::F32)?; // [KV, S, D]
            let values = v_cache.narrow(1, 0, end)?.to_dtype(DType::F32)?;

            // Grouped-query attention without repeating K/V: the G query heads sharing a KV head become
            // G*L rows of one matmul against that head's keys.
            let q_seq = q.narrow(1, offset, l)?.contiguous()?.reshape((n_kv, group * l, hd))?;
            let scores = (q_seq.matmul(&keys.t()?)? * scale)?; // [KV, G*L, S]
            let scores = if l > 1 {
                let mask = causal_mask(l, start, &self.device)?; // [L, S]
                scores.reshape((n_kv, group, l, end))?.broadcast_add(&mask)?.reshape((n_kv, group * l, end))?
            } else {
                scores
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let o = probs.matmul(&values)?; // [KV, G*L, D]
            let o = o.reshape((n_heads, l, hd))?.transpose(0, 1)?.reshape((l, n_heads * hd))?;
            outputs.push(o);
            offset += l;
        }
        Ok(Tensor::cat(&outputs, 0)?)
    }

    /// `[T, heads * D]` projections → `[heads, T, D]` with rotary embeddings applied.
    fn rotate(&self, x: &Tensor, heads: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let total = x.dim(0)?;
        let x = x.reshape((total, heads, self.hp.head_dim))?.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
        let rotated = match self.hp.rope_layout {
            RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x, cos, sin)?,
            RopeLayout::HalfSplit => candle_nn::rotary_emb::rope(&x, cos, sin)?,
        };
        Ok(rotated.squeeze(0)?)
    }
}

/// Additive mask for `l` new queries starting at `start`, against `start + l` keys: query `i` sees keys
/// `0..=start + i`.
fn causal_mask(l: usize, start: usize, device: &Device) -> Result<Tensor> {
    let s = start + l;
    let mask: Vec<f32> =
        (0..l).flat_map(|i| (0..s).map(move |j| if j <= start + i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Ok(Tensor::from_vec(mask, (l, s), device)?)
}

/// The index of the largest logit: greedy decoding and the tests' top-1 comparisons.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Converts a `[n, vocab]` logits tensor to host rows.
pub fn logits_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

/// Last row of a logits tensor, for sampling.
pub fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let n = logits.dim(0)?;
    Ok(logits.get(n - 1)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
}
