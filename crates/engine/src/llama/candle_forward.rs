//! The candle forward pass: candle ops, and projections through [`Linear`] (candle's quantized matmul
//! at decode, a dequantized dense matmul for prefill chunks). It runs full-precision checkpoints and
//! every model on an accelerator; quantized GGUF models on the CPU take the CPU pass (`cpu_forward`) instead.
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

use crate::error::Result;
use crate::llama::hparams::{LlamaHparams, RopeLayout};
use crate::llama::kv_cache::SequenceBatch;
use crate::llama::layer::LayerWeights;
use crate::llama::linear::Linear;
use crate::llama::rope::RopeFrequencies;

/// Everything the candle pass reads besides the embedding table.
#[derive(Debug)]
pub(crate) struct CandleWeights {
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) final_norm: Tensor,
    pub(crate) lm_head: Linear,
    pub(crate) rope: RopeFrequencies,
    /// Element type of the KV cache: f16 for GGUF models (llama.cpp's default cache — half the memory,
    /// and the same rounding), f32 for full-precision checkpoints (matching transformers).
    pub(crate) kv_dtype: DType,
}

impl CandleWeights {
    /// Runs the model over every sequence's new tokens (`embeddings`: `[T, hidden]`, at `positions`) and
    /// appends them to the caches. Returns per sequence its logits `[n, vocab]`: `n = 1` (last position)
    /// or `L` with `all_logits`.
    pub(crate) fn forward(
        &self,
        hp: &LlamaHparams,
        device: &Device,
        embeddings: Tensor,
        positions: &[usize],
        batch: &mut [SequenceBatch<'_>],
    ) -> Result<Vec<Tensor>> {
        CandleRun { weights: self, hp, device }.forward(embeddings, positions, batch)
    }
}

/// One forward call's view: the weights with the model's numbers and device.
struct CandleRun<'a> {
    weights: &'a CandleWeights,
    hp: &'a LlamaHparams,
    device: &'a Device,
}

impl CandleRun<'_> {
    fn forward(&self, embeddings: Tensor, positions: &[usize], batch: &mut [SequenceBatch<'_>]) -> Result<Vec<Tensor>> {
        let (cos, sin) = self.weights.rope.cos_sin(positions, self.device)?;

        let mut x = embeddings.to_dtype(DType::F32)?; // [T, hidden]
        for (layer_idx, layer) in self.weights.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.hp.rms_norm_eps as f32)?;
            let attn = self.attention(layer_idx, layer, &h, &cos, &sin, batch)?;
            x = (x + layer.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.hp.rms_norm_eps as f32)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        for seq in batch.iter_mut() {
            seq.cache.advance(seq.tokens.len());
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
        let rows = x.index_select(&Tensor::from_vec(wanted, wanted_len, self.device)?, 0)?;
        let rows = candle_nn::ops::rms_norm(&rows, &self.weights.final_norm, self.hp.rms_norm_eps as f32)?;
        let logits = self.weights.lm_head.forward(&rows)?.to_dtype(DType::F32)?;

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
        let hp = self.hp;
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
            let start = seq.cache.len();
            let end = start + l;
            let (k_cache, v_cache) = seq.cache.device_layer(layer_idx)?;
            k_cache.slice_set(&k.narrow(1, offset, l)?.to_dtype(self.weights.kv_dtype)?.contiguous()?, 1, start)?;
            v_cache.slice_set(&v.narrow(1, offset, l)?.to_dtype(self.weights.kv_dtype)?.contiguous()?, 1, start)?;
            let keys = k_cache.narrow(1, 0, end)?.to_dtype(DType::F32)?; // [KV, S, D]
            let values = v_cache.narrow(1, 0, end)?.to_dtype(DType::F32)?;

            // Grouped-query attention without repeating K/V: the G query heads sharing a KV head become
            // G*L rows of one matmul against that head's keys.
            let q_seq = q.narrow(1, offset, l)?.contiguous()?.reshape((n_kv, group * l, hd))?;
            let scores = (q_seq.matmul(&keys.t()?)? * scale)?; // [KV, G*L, S]
            let scores = if l > 1 {
                let mask = causal_mask(l, start, self.device)?; // [L, S]
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
