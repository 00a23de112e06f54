//! [`LlamaModel`]: a loaded Llama model and the forward pass it runs. There are two passes, chosen once at
//! load as a `Pass`: the CPU pass (`cpu_forward`: llama.cpp's arithmetic on our SIMD kernels, for
//! GGUF models on the CPU) and the candle pass (`candle_forward`: candle ops, for everything
//! else). Both take the same batch of sequences ([`SequenceBatch`]), each with its own tokens,
//! position and preallocated [`KvCache`].

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::llama::candle_forward::CandleWeights;
use crate::llama::cpu_forward::{self, CpuWeights};
use crate::llama::host_cache::HostLayerCache;
use crate::llama::hparams::LlamaHparams;
pub use crate::llama::kv_cache::{KvCache, SequenceBatch};
use crate::llama::kv_cache_type::KvCacheType;
use crate::llama::kv_pages::KvPagePool;
use crate::llama::layer::WeightTally;
pub use crate::llama::layer::{Embedding, LayerWeights};

/// A loaded Llama model: weights and the numbers that shape them. Immutable and shareable across threads;
/// all per-sequence state lives in [`KvCache`].
#[derive(Debug)]
pub struct LlamaModel {
    hp: LlamaHparams,
    embedding: Embedding,
    device: Device,
    /// Element type of the CPU pass's host cache ([`ModelOptions::kv_cache_type`](crate::ModelOptions)).
    host_kv: KvCacheType,
    /// Freed pages of the CPU pass's caches, kept for the next sequence.
    kv_pages: Arc<KvPagePool>,
    pass: Pass,
}

/// Which forward pass a model runs, with the weights that pass reads.
#[derive(Debug)]
pub(crate) enum Pass {
    /// GGUF models on CPU (quantized, F16 or BF16): llama.cpp's arithmetic on our SIMD kernels.
    Cpu(CpuWeights),
    /// Everything else (full-precision checkpoints, accelerators, formats the kernels lack): candle ops.
    Candle(CandleWeights),
}

impl LlamaModel {
    /// A model from what a loader read: the embedding table on `device` and the pass's weights. The CPU
    /// pass's cache starts as f16; [`Self::set_kv_cache_type`] may change it before serving.
    pub(crate) fn new(hp: LlamaHparams, embedding: Embedding, device: Device, pass: Pass) -> Self {
        Self { hp, embedding, device, host_kv: KvCacheType::F16, kv_pages: Arc::default(), pass }
    }

    /// The model's hyper-parameters.
    pub fn hparams(&self) -> &LlamaHparams {
        &self.hp
    }

    /// Chooses the KV cache's element type before the model serves. Only the CPU pass has a choice;
    /// elsewhere anything but the model's own type is refused, so a config cannot ask for a saving it
    /// would not get.
    pub(crate) fn set_kv_cache_type(&mut self, kind: KvCacheType) -> Result<()> {
        if let Pass::Candle(candle) = &self.pass
            && kind != KvCacheType::F16
        {
            return Err(EngineError::InvalidRequest(format!(
                "kv_cache_type {kind} needs the CPU pass (a GGUF model in Q4_0, Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16 or BF16 on the CPU); this model runs on candle \
                 with a {:?} cache: leave kv_cache_type unset or f16",
                candle.kv_dtype
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
        let per_layer = match &self.pass {
            Pass::Cpu(_) => HostLayerCache::bytes_per_position(kv, d, self.host_kv),
            Pass::Candle(candle) => 2 * kv * d * candle.kv_dtype.size_in_bytes(),
        };
        per_layer * layers
    }

    /// Bytes of weights the model holds in memory, each shared weight (a tied LM head) counted once: what
    /// a format costs (16-bit checkpoints kept 16-bit hold half the bytes of f32).
    pub fn weight_bytes(&self) -> usize {
        let mut tally = WeightTally::default();
        tally.embedding(&self.embedding);
        match &self.pass {
            Pass::Cpu(cpu) => cpu.tally(&mut tally),
            Pass::Candle(candle) => {
                for layer in &candle.layers {
                    tally.layer(layer);
                }
                tally.dense(&candle.final_norm);
                tally.linear(&candle.lm_head);
            }
        }
        tally.bytes
    }

    /// Keeps up to `bytes` of the CPU pass's freed KV pages for later sequences instead of freeing them,
    /// so resident memory settles at the busiest moment's KV use rather than swinging with the load (see
    /// `kv_pages.rs`). The scheduler asks for its KV budget plus its prefix cache; nothing is kept before.
    pub fn keep_freed_kv_pages(&self, bytes: usize) {
        self.kv_pages.retain_up_to(bytes);
    }

    /// Bytes of freed KV pages waiting for a sequence now.
    pub fn freed_kv_page_bytes(&self) -> usize {
        self.kv_pages.free_bytes()
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
        Ok(match &self.pass {
            Pass::Cpu(_) => KvCache::on_host(
                (0..self.hp.num_layers)
                    .map(|_| HostLayerCache::new(kv, d, self.host_kv, self.kv_pages.clone()))
                    .collect(),
                capacity,
            ),
            Pass::Candle(candle) => {
                let shape = (kv, capacity.max(1), d);
                let layers = (0..self.hp.num_layers)
                    .map(|_| {
                        Ok((
                            Tensor::zeros(shape, candle.kv_dtype, &self.device)?,
                            Tensor::zeros(shape, candle.kv_dtype, &self.device)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                KvCache::on_device(layers, capacity)
            }
        })
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
            let start = seq.cache.len();
            if start + seq.tokens.len() > seq.cache.capacity() {
                return Err(EngineError::InvalidRequest(format!(
                    "sequence would grow to {} positions; its cache holds {}",
                    start + seq.tokens.len(),
                    seq.cache.capacity()
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
        let embeddings = self.embedding.forward(&ids)?;
        match &self.pass {
            Pass::Cpu(cpu) => cpu_forward::forward(cpu, &self.hp, embeddings, &positions, batch),
            Pass::Candle(candle) => candle.forward(&self.hp, &self.device, embeddings, &positions, batch),
        }
    }
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
