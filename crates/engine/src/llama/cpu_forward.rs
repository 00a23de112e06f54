//! The forward pass for GGUF models on CPU (quantized, F16 or BF16 weights): llama.cpp's arithmetic, step for step.
//!
//! Why a second forward pass next to the candle one (`candle_forward`): a 30-layer model re-quantizes its
//! activations to 8 bits before every projection, so any rounding difference — summation order, an f16
//! conversion, a different `expf` — flips rounding steps and grows into logit differences of up to 0.9
//! against llama.cpp on the same file (benches/RESULTS.md). Here every step computes what ggml's x86
//! build computes (see [`crate::kernels`]), and the projections run on our SIMD kernels instead of
//! candle's generic quantized ones (scalar for Q4_1; for Q4_K_M files 9 tok/s against 43). Attention follows llama.cpp's default (non-flash) path: keys and values
//! cached in f16, queries and probabilities rounded to f16 for the two f16 matrix products, each product
//! summed in 16 lanes. The last layer's feed-forward block runs only on the rows whose logits are wanted,
//! as llama.cpp's graph does (which matters beyond speed: llama.cpp picks its Q6_K kernel, and so the
//! summation order, by the row count). Hugging Face checkpoints and accelerators keep the candle pass (a
//! checkpoint's 16-bit or quantized-on-load projections still run on these kernels there).

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::kernels::attention::{F16Product, attend};
use crate::kernels::attention_q8::{QuantizedQueries, SPAN, attend_span, combine, partial_len};
use crate::kernels::ops::{self, LANES};
use crate::kernels::team::{self, Team};
use crate::kernels::{Activations, BLOCK, Matrix, WeightFormat, project};
use crate::llama::host_cache::{HeadView, HostLayerCache};
use crate::llama::hparams::{LlamaHparams, RopeLayout};
use crate::llama::huge_pages;
use crate::llama::kv_cache::SequenceBatch;
use crate::llama::layer::{LayerWeights, WeightTally};
use crate::llama::linear::{Linear, kernel_format};

/// A quantized weight matrix our kernels multiply.
#[derive(Debug, Clone)]
pub(crate) struct CpuMatrix {
    weight: Arc<QTensor>,
    format: WeightFormat,
    rows: usize,
    cols: usize,
}

impl CpuMatrix {
    /// The matrix behind `linear` if it is a CPU tensor in a format the kernels handle.
    fn new(linear: &Linear) -> Option<Self> {
        let QMatMul::QTensor(weight) = linear.weight() else { return None };
        let format = kernel_format(weight.dtype())?;
        let (rows, cols) = weight.shape().dims2().ok()?;
        let in_place = weight.device().is_cpu() && matches!(weight.data(), Ok(Cow::Borrowed(_)));
        (in_place && cols.is_multiple_of(format.block_values())).then(|| Self {
            weight: weight.clone(),
            format,
            rows,
            cols,
        })
    }

    /// The weights as the kernels read them: candle's host buffer, borrowed (checked in [`Self::new`]).
    fn matrix(&self) -> Result<Matrix<'_>> {
        match self.weight.data()? {
            Cow::Borrowed(bytes) => Ok(Matrix { format: self.format, bytes, rows: self.rows }),
            Cow::Owned(_) => Err(EngineError::Inference("a CPU-pass weight is not in host memory".into())),
        }
    }

    /// `x`: `t` rows of `cols` → `t` rows of `rows`.
    fn forward(&self, x: &[f32], t: usize) -> Result<Vec<f32>> {
        let [y] = project(&Activations::quantize(x, t, self.cols, &[self.format]), [self.matrix()?]);
        Ok(y)
    }
}

#[derive(Debug, Clone)]
struct CpuLayer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    wq: CpuMatrix,
    wk: CpuMatrix,
    wv: CpuMatrix,
    wo: CpuMatrix,
    gate: CpuMatrix,
    up: CpuMatrix,
    down: CpuMatrix,
}

/// Everything the CPU pass reads, extracted once at load (the weights themselves are shared, not copied).
#[derive(Debug, Clone)]
pub(crate) struct CpuWeights {
    layers: Vec<CpuLayer>,
    final_norm: Vec<f32>,
    lm_head: CpuMatrix,
    eps: f32,
    theta_scale: f32,
    freq_factors: Option<Vec<f32>>,
}

impl CpuWeights {
    /// The CPU pass's view of a GGUF model, or `None` when it cannot run it (a weight on an accelerator
    /// or in another format, or a head size that is not a multiple of 64, where ggml's f16 dot product
    /// ends in a scalar tail we do not reproduce); the candle pass runs those.
    pub fn new(
        hp: &LlamaHparams,
        layers: &[LayerWeights],
        final_norm: &Tensor,
        lm_head: &Linear,
        freq_factors: Option<&[f32]>,
    ) -> Option<Self> {
        if hp.rope_layout != RopeLayout::Interleaved
            || !hp.head_dim.is_multiple_of(4 * LANES)
            || !hp.hidden_size.is_multiple_of(BLOCK)
        {
            return None;
        }
        let vector = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.to_vec1::<f32>()).ok();
        let cpu_layers = layers
            .iter()
            .map(|l| {
                Some(CpuLayer {
                    attn_norm: vector(&l.attn_norm)?,
                    ffn_norm: vector(&l.ffn_norm)?,
                    wq: CpuMatrix::new(&l.wq)?,
                    wk: CpuMatrix::new(&l.wk)?,
                    wv: CpuMatrix::new(&l.wv)?,
                    wo: CpuMatrix::new(&l.wo)?,
                    gate: CpuMatrix::new(&l.w_gate)?,
                    up: CpuMatrix::new(&l.w_up)?,
                    down: CpuMatrix::new(&l.w_down)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let weights = Self {
            layers: cpu_layers,
            final_norm: vector(final_norm)?,
            lm_head: CpuMatrix::new(lm_head)?,
            eps: hp.rms_norm_eps as f32,
            // ggml: powf(freq_base, -2.0f / n_dims) in f32.
            theta_scale: (hp.rope_theta as f32).powf(-2.0 / hp.head_dim as f32),
            freq_factors: freq_factors.map(<[f32]>::to_vec),
        };
        huge_pages::collapse(weights.matrices().filter_map(|m| m.matrix().ok()).map(|m| m.bytes));
        Some(weights)
    }

    /// Adds the pass's weights to `tally`.
    pub(crate) fn tally(&self, tally: &mut WeightTally) {
        for m in self.matrices() {
            tally.quantized(&m.weight);
        }
        let norms = self.layers.iter().map(|l| l.attn_norm.len() + l.ffn_norm.len()).sum::<usize>();
        tally.bytes += (norms + self.final_norm.len()) * std::mem::size_of::<f32>();
    }

    /// Every weight matrix the pass reads.
    fn matrices(&self) -> impl Iterator<Item = &CpuMatrix> {
        self.layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.lm_head))
    }
}

/// Runs the model over every sequence's new tokens with llama.cpp's arithmetic and appends them to the
/// caches. Returns, per sequence, logits `[n, vocab]` (`n = 1`, or every new position with `all_logits`).
pub(crate) fn forward(
    w: &CpuWeights,
    hp: &LlamaHparams,
    embeddings: Tensor,
    positions: &[usize],
    batch: &mut [SequenceBatch<'_>],
) -> Result<Vec<Tensor>> {
    let hidden = hp.hidden_size;
    let t = positions.len();
    let mut x = embeddings.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?; // [T, hidden]
    let tables: Vec<Vec<(f32, f32)>> =
        positions.iter().map(|&p| ops::rope_table(p, hp.head_dim, w.theta_scale, w.freq_factors.as_deref())).collect();
    // The rows whose logits are wanted: per sequence its last new position, or all of them with
    // `all_logits`. Only these go through the last layer's feed-forward block, the final norm and the
    // vocabulary-sized head, as in llama.cpp (which also makes its Q6_K product pick the kernel, and so
    // the summation order, by this row count there).
    let mut kept = Vec::with_capacity(t);
    let mut counts = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for seq in batch.iter() {
        let n = seq.tokens.len();
        let first = if seq.all_logits { offset } else { offset + n - 1 };
        kept.extend(first..offset + n);
        counts.push(offset + n - first);
        offset += n;
    }
    let last_layer = w.layers.len().saturating_sub(1);
    let mut h = vec![0.0f32; t * hidden];
    for (layer_index, layer) in w.layers.iter().enumerate() {
        norm_rows(&x, &layer.attn_norm, w.eps, &mut h);
        let formats = [layer.wq.format, layer.wk.format, layer.wv.format];
        let normed = Activations::quantize(&h, t, hidden, &formats);
        let [mut q, mut k, v] = project(&normed, [layer.wq.matrix()?, layer.wk.matrix()?, layer.wv.matrix()?]);
        rotate_rows(&mut q, hp.num_heads, hp.head_dim, &tables);
        rotate_rows(&mut k, hp.num_kv_heads, hp.head_dim, &tables);
        let attn = attention(hp, layer_index, &q, &k, &v, batch)?;
        add_in_place(&mut x, &layer.wo.forward(&attn, t)?);
        if layer_index == last_layer && kept.len() < t {
            x = kept.iter().flat_map(|&row| x[row * hidden..(row + 1) * hidden].iter().copied()).collect();
        }

        let rows = x.len() / hidden;
        let h = &mut h[..rows * hidden];
        norm_rows(&x, &layer.ffn_norm, w.eps, h);
        let normed = Activations::quantize(h, rows, hidden, &[layer.gate.format, layer.up.format]);
        let [gate, up] = project(&normed, [layer.gate.matrix()?, layer.up.matrix()?]);
        let mut act = vec![0.0f32; gate.len()];
        ops::swiglu(&gate, &up, &mut act);
        add_in_place(&mut x, &layer.down.forward(&act, rows)?);
    }
    for seq in batch.iter_mut() {
        seq.cache.advance(seq.tokens.len());
    }

    let wanted = kept.len();
    if x.len() != wanted * hidden {
        // No layers: nothing narrowed the rows.
        x = kept.iter().flat_map(|&row| x[row * hidden..(row + 1) * hidden].iter().copied()).collect();
    }
    let mut normed = vec![0.0f32; x.len()];
    norm_rows(&x, &w.final_norm, w.eps, &mut normed);
    let logits = w.lm_head.forward(&normed, wanted)?;
    let vocab = w.lm_head.rows;
    let mut out = Vec::with_capacity(counts.len());
    let mut row = 0;
    for n in counts {
        out.push(Tensor::from_slice(&logits[row * vocab..(row + n) * vocab], (n, vocab), &Device::Cpu)?);
        row += n;
    }
    Ok(out)
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (row, o) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        ops::rms_norm(row, weight, eps, o);
    }
}

fn rotate_rows(x: &mut [f32], heads: usize, head_dim: usize, tables: &[Vec<(f32, f32)>]) {
    for (row, table) in x.chunks_exact_mut(heads * head_dim).zip(tables) {
        for head in row.chunks_exact_mut(head_dim) {
            ops::rope_in_place(head, table);
        }
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Self-attention of one layer: stores every sequence's new keys and values, then attends every new
/// query in one parallel call over the engine's threads. `q`: `[T, H·D]`, `k`/`v`: `[T, KV·D]` →
/// `[T, H·D]`.
///
/// A work item is one token's group of query heads sharing a KV head, which reads that head's cache
/// once for the group. When there are too few of those to keep every thread busy (one decoding
/// sequence with 3 KV heads on 2 threads leaves one thread idle a third of the time), each query head
/// is an item of its own: the group's cache is then read by up to three items, mostly from the level-2
/// cache of the thread that runs them in a row.
fn attention(
    hp: &LlamaHparams,
    layer_index: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    batch: &mut [SequenceBatch<'_>],
) -> Result<Vec<f32>> {
    let (heads, kv_heads, d) = (hp.num_heads, hp.num_kv_heads, hp.head_dim);
    let group = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let tokens = q.len() / (heads * d);
    let product = if tokens > 1 { F16Product::Tiled } else { F16Product::Vector };

    // Each new token: its sequence's cache, and how many positions it sees.
    let mut seen_by: Vec<(&HostLayerCache, usize)> = Vec::with_capacity(tokens);
    let mut offset = 0;
    for seq in batch.iter_mut() {
        let l = seq.tokens.len();
        let start = seq.cache.len();
        let cache = seq.cache.host_layer(layer_index)?;
        for i in 0..l {
            for kv in 0..kv_heads {
                let src = (offset + i) * kv_heads * d + kv * d;
                cache.store(start + i, kv, &k[src..src + d], &v[src..src + d]);
            }
        }
        let cache: &HostLayerCache = cache;
        seen_by.extend((0..l).map(|i| (cache, start + i + 1)));
        offset += l;
    }

    let q8 = seen_by.first().is_some_and(|(cache, _)| cache.is_q8());
    if seen_by.iter().any(|(cache, _)| cache.is_q8() != q8) {
        return Err(EngineError::Inference("one batch holds caches of two KV cache types".into()));
    }
    if q8 {
        return Ok(attention_q8(&seen_by, q, heads, kv_heads, d, scale));
    }
    let threads = Team::current().threads();
    let heads_per_item = if threads > 1 && tokens * kv_heads < 2 * threads { 1 } else { group };
    let items_per_token = heads / heads_per_item;
    let mut out = vec![0.0f32; q.len()];
    team::for_each_item(out.chunks_mut(heads_per_item * d).collect(), |index, o| {
        let (token, part) = (index / items_per_token, index % items_per_token);
        let (cache, n) = seen_by[token];
        let first_head = part * heads_per_item;
        let at = token * heads * d + first_head * d;
        let queries = &q[at..at + heads_per_item * d];
        // Every cache is an f16 one (checked above).
        if let HeadView::F16(head) = cache.head(first_head / group) {
            attend(queries, head, n, scale, product, o);
        }
    });
    Ok(out)
}

/// [`attention`] over 8-bit caches: a work item is one token's group of query heads sharing a KV head
/// over one [`SPAN`] of positions, so a single decoding sequence deep into its context still gives
/// every thread work; the spans are then merged per token and group.
fn attention_q8(
    seen_by: &[(&HostLayerCache, usize)],
    q: &[f32],
    heads: usize,
    kv_heads: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let group = heads / kv_heads;
    // (token, KV head, span) in that order, so each group's spans are neighbours.
    let items: Vec<(usize, usize, usize)> = seen_by
        .iter()
        .enumerate()
        .flat_map(|(token, (_, n))| {
            (0..kv_heads).flat_map(move |kv| (0..n.div_ceil(SPAN)).map(move |span| (token, kv, span)))
        })
        .collect();
    // Each group's queries rounded once, for all its spans: `[token, KV head]`.
    let queries: Vec<QuantizedQueries> = q.chunks_exact(group * d).map(|g| QuantizedQueries::new(g, d)).collect();
    let per_item = group * partial_len(d);
    let mut partials = vec![0.0f32; items.len() * per_item];
    team::for_each_item(partials.chunks_mut(per_item).collect(), |index, partial| {
        let (token, kv, span) = items[index];
        let (cache, n) = seen_by[token];
        // Every cache is an 8-bit one (checked by the caller).
        if let HeadView::Q8(head) = cache.head(kv) {
            let positions = span * SPAN..n.min((span + 1) * SPAN);
            attend_span(&queries[token * kv_heads + kv], head, positions, scale, partial);
        }
    });
    let mut out = vec![0.0f32; q.len()];
    let mut first = 0;
    while first < items.len() {
        let (token, kv, _) = items[first];
        let spans = items[first..].iter().take_while(|(t, k, _)| (*t, *k) == (token, kv)).count();
        let at = token * heads * d + kv * group * d;
        combine(&partials[first * per_item..(first + spans) * per_item], d, &mut out[at..at + group * d]);
        first += spans;
    }
    out
}
