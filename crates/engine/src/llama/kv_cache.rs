//! A sequence's KV cache ([`KvCache`]) and its share of a forward call ([`SequenceBatch`]): what every
//! forward pass takes and what the serving layer holds per sequence. A leaf below both passes, so they
//! share it without importing each other.

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::llama::host_cache::HostLayerCache;

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
    /// An empty cache of `capacity` positions in candle tensors, one `(keys, values)` pair per layer,
    /// each `[KV, capacity, D]`: what the candle pass reads and writes.
    pub(crate) fn on_device(layers: Vec<(Tensor, Tensor)>, capacity: usize) -> Self {
        Self { storage: KvStorage::Tensors(layers), capacity, len: 0 }
    }

    /// An empty cache of `capacity` positions in host pages, one [`HostLayerCache`] per layer: what the
    /// CPU pass reads and writes.
    pub(crate) fn on_host(layers: Vec<HostLayerCache>, capacity: usize) -> Self {
        Self { storage: KvStorage::Host(layers), capacity, len: 0 }
    }

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

    /// The tensors of one layer. Only the candle pass calls this, on caches it allocated.
    pub(crate) fn device_layer(&self, layer: usize) -> Result<&(Tensor, Tensor)> {
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
    /// The sequence's cache: read for the past, appended to with `tokens`.
    pub cache: &'a mut KvCache,
    /// Return logits for every position of `tokens` (teacher forcing, scoring), not just the last.
    pub all_logits: bool,
}
