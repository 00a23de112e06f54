//! The forward pass for quantized GGUF models on CPU: llama.cpp's arithmetic, step for step.
//!
//! Why a second forward pass next to [`crate::model`]'s candle one: a 30-layer model re-quantizes its
//! activations to 8 bits before every projection, so any rounding difference — summation order, an f16
//! conversion, a different `expf` — flips rounding steps and grows into logit differences of up to 0.9
//! against llama.cpp on the same file (benches/RESULTS.md). Here every step computes what ggml's x86
//! build computes (see [`crate::kernels`]), and the projections run on our SIMD kernels instead of
//! candle's scalar Q4_1 one. Attention follows llama.cpp's default (non-flash) path: keys and values
//! cached in f16, queries and probabilities rounded to f16 for the two f16 matrix products, each product
//! summed in 16 lanes. Full-precision checkpoints and accelerators keep the candle pass.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use multiversion::multiversion;

use crate::error::Result;
use crate::hparams::{LlamaHparams, RopeLayout};
use crate::kernels::ops::{self, LANES};
use crate::kernels::{BLOCK, WeightFormat, quantized_matmul};
use crate::linear::Linear;
use crate::model::{LayerWeights, SequenceBatch};

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
        let format = match weight.dtype() {
            GgmlDType::Q4_1 => WeightFormat::Q4_1,
            GgmlDType::Q8_0 => WeightFormat::Q8_0,
            _ => return None,
        };
        let (rows, cols) = weight.shape().dims2().ok()?;
        (weight.device().is_cpu() && cols.is_multiple_of(BLOCK)).then(|| Self {
            weight: weight.clone(),
            format,
            rows,
            cols,
        })
    }

    /// `x`: `t` rows of `cols` → `t` rows of `rows`.
    fn forward(&self, x: &[f32], t: usize) -> Result<Vec<f32>> {
        Ok(quantized_matmul(self.format, &self.weight.data()?, self.rows, self.cols, x, t))
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
            || !hp.head_dim.is_multiple_of(LANES)
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
        Some(Self {
            layers: cpu_layers,
            final_norm: vector(final_norm)?,
            lm_head: CpuMatrix::new(lm_head)?,
            eps: hp.rms_norm_eps as f32,
            // ggml: powf(freq_base, -2.0f / n_dims) in f32.
            theta_scale: (hp.rope_theta as f32).powf(-2.0 / hp.head_dim as f32),
            freq_factors: freq_factors.map(<[f32]>::to_vec),
        })
    }
}

/// One layer's cached keys and values for one sequence, as f16 bit patterns, each `[KV, D, capacity]`:
/// dimension-major, so attention reads each dimension's positions contiguously, 16 at a time.
#[derive(Debug)]
pub(crate) struct HostLayerCache {
    k: Vec<u16>,
    v: Vec<u16>,
}

impl HostLayerCache {
    /// Zeroed storage; the pages are only touched as positions are written.
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize) -> Self {
        let n = kv_heads * capacity * head_dim;
        Self { k: vec![0; n], v: vec![0; n] }
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
    let mut h = vec![0.0f32; t * hidden];
    for (layer_index, layer) in w.layers.iter().enumerate() {
        norm_rows(&x, &layer.attn_norm, w.eps, &mut h);
        let mut q = layer.wq.forward(&h, t)?;
        let mut k = layer.wk.forward(&h, t)?;
        let v = layer.wv.forward(&h, t)?;
        rotate_rows(&mut q, hp.num_heads, hp.head_dim, &tables);
        rotate_rows(&mut k, hp.num_kv_heads, hp.head_dim, &tables);
        let attn = attention(hp, layer_index, &q, &k, &v, batch)?;
        add_in_place(&mut x, &layer.wo.forward(&attn, t)?);

        norm_rows(&x, &layer.ffn_norm, w.eps, &mut h);
        let gate = layer.gate.forward(&h, t)?;
        let up = layer.up.forward(&h, t)?;
        let mut act = vec![0.0f32; gate.len()];
        ops::swiglu(&gate, &up, &mut act);
        add_in_place(&mut x, &layer.down.forward(&act, t)?);
    }
    for seq in batch.iter_mut() {
        seq.cache.advance(seq.tokens.len());
    }

    // Only the rows whose logits are wanted go through the norm and the vocabulary-sized head.
    let mut rows = Vec::new();
    let mut counts = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for seq in batch.iter() {
        let n = seq.tokens.len();
        let first = if seq.all_logits { offset } else { offset + n - 1 };
        rows.extend_from_slice(&x[first * hidden..(offset + n) * hidden]);
        counts.push(offset + n - first);
        offset += n;
    }
    let wanted = rows.len() / hidden;
    let mut normed = vec![0.0f32; rows.len()];
    norm_rows(&rows, &w.final_norm, w.eps, &mut normed);
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

/// Self-attention of one layer: stores the new keys and values, then attends every new query.
/// `q`: `[T, H·D]`, `k`/`v`: `[T, KV·D]` → `[T, H·D]`.
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
    let product = if q.len() / (heads * d) > 1 { F16Product::Tiled } else { F16Product::Vector };
    let mut out = vec![0.0f32; q.len()];
    let mut offset = 0;
    for seq in batch.iter_mut() {
        let l = seq.tokens.len();
        let start = seq.cache.len();
        let capacity = seq.cache.capacity();
        let cache = seq.cache.host_layer(layer_index)?;
        // Store the new keys and values rounded to f16, like llama.cpp's f16 cache.
        for i in 0..l {
            for kv in 0..kv_heads {
                let src = (offset + i) * kv_heads * d + kv * d;
                for dim in 0..d {
                    let at = (kv * d + dim) * capacity + start + i;
                    cache.k[at] = f16::from_f32(k[src + dim]).to_bits();
                    cache.v[at] = f16::from_f32(v[src + dim]).to_bits();
                }
            }
        }
        // Widen one KV head's positions to f32, dimension-major and padded to whole 16-position chunks.
        let end = start + l;
        let stride = end.div_ceil(LANES) * LANES;
        let mut keys = vec![0.0f32; d * stride];
        let mut values = vec![0.0f32; d * stride];
        for kv in 0..kv_heads {
            for dim in 0..d {
                let from = (kv * d + dim) * capacity;
                let to = dim * stride;
                cache.k[from..from + end].reinterpret_cast::<f16>().convert_to_f32_slice(&mut keys[to..to + end]);
                cache.v[from..from + end].reinterpret_cast::<f16>().convert_to_f32_slice(&mut values[to..to + end]);
            }
            for i in 0..l {
                for head in kv * group..(kv + 1) * group {
                    let at = (offset + i) * heads * d + head * d;
                    let seen = Positions { stride, n: start + i + 1 };
                    attend(&q[at..at + d], &keys, &values, seen, scale, product, &mut out[at..at + d]);
                }
            }
        }
        offset += l;
    }
    Ok(out)
}

/// How ggml sums an f16 matrix product, which depends on the number of tokens in the call: llama.cpp
/// hands products with two or more columns to llamafile's tinyBLAS and single columns to
/// `ggml_vec_dot_f16`, and the two accumulate in different orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F16Product {
    /// tinyBLAS: one 16-lane accumulator, fed 16 elements at a time.
    Tiled,
    /// `ggml_vec_dot_f16`: four 16-lane accumulators fed in rotation, folded pairwise at the end.
    Vector,
}

/// Which cached positions a query sees: the first `n`, in rows of `stride` (a multiple of 16).
#[derive(Debug, Clone, Copy)]
struct Positions {
    stride: usize,
    n: usize,
}

type Lanes = [f32; LANES];

/// `ggml_vec_dot_f16`'s end: accumulators 0+2 and 1+3, then their sum.
#[inline(always)]
fn fold(acc: &[Lanes; 4]) -> Lanes {
    std::array::from_fn(|i| (acc[0][i] + acc[2][i]) + (acc[1][i] + acc[3][i]))
}

/// [`ops::reduce_lanes`] for 16 independent sums at once: `rows[lane]` holds lane `lane` of each sum.
#[inline(always)]
fn reduce_rows(rows: &[Lanes; LANES]) -> Lanes {
    let add = |a: &Lanes, b: &Lanes| -> Lanes { std::array::from_fn(|i| a[i] + b[i]) };
    let t8: [Lanes; 8] = std::array::from_fn(|i| add(&rows[i + 8], &rows[i]));
    let t4: [Lanes; 4] = std::array::from_fn(|i| add(&t8[i + 4], &t8[i]));
    add(&add(&t4[0], &t4[2]), &add(&t4[1], &t4[3]))
}

/// One query against the cached positions it sees, as ggml computes `kq = K·q` (f16 inputs),
/// `softmax(kq · scale)` and `kqv = V·p` (f16 inputs) for one head. `keys` and `values` are
/// dimension-major (`[D][stride]`), so each step below works on 16 positions at once.
// Lane and position indices address several arrays in lockstep; plain loops vectorize best here.
#[allow(clippy::needless_range_loop)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
fn attend(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    seen: Positions,
    scale: f32,
    product: F16Product,
    out: &mut [f32],
) {
    let (d, stride, n) = (query.len(), seen.stride, seen.n);
    let q: Vec<f32> = query.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
    let chunks = n.div_ceil(LANES);
    let mut scores = vec![f32::NEG_INFINITY; chunks * LANES];
    for c in 0..chunks {
        let base = c * LANES;
        let key = |dim: usize| -> &[f32] { &keys[dim * stride + base..dim * stride + base + LANES] };
        // acc[slot][lane][position]: dimension `lane + 16·j` of each position's dot product goes to
        // lane `lane` of accumulator `slot` (0 for tinyBLAS, `j % 4` for vec_dot).
        let slots = if product == F16Product::Tiled { 1 } else { 4 };
        let mut acc = [[[0.0f32; LANES]; LANES]; 4];
        for j in 0..d / LANES {
            let slot = &mut acc[j % slots];
            for lane in 0..LANES {
                let dim = j * LANES + lane;
                let (k, qv) = (key(dim), q[dim]);
                for p in 0..LANES {
                    slot[lane][p] = k[p].mul_add(qv, slot[lane][p]);
                }
            }
        }
        let dots = match product {
            F16Product::Tiled => reduce_rows(&acc[0]),
            F16Product::Vector => {
                let folded: [Lanes; LANES] = std::array::from_fn(|lane| fold(&std::array::from_fn(|s| acc[s][lane])));
                reduce_rows(&folded)
            }
        };
        for (p, dot) in dots.iter().enumerate().take(n - base) {
            scores[base + p] = dot * scale;
        }
    }

    let max = scores[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for chunk in scores.chunks_exact_mut(LANES) {
        let vals: Lanes = std::array::from_fn(|i| ops::expf(chunk[i] - max));
        sum += f64::from(ops::reduce_lanes(&vals));
        chunk.copy_from_slice(&vals);
    }
    let inv = (1.0 / sum) as f32;
    let p: Vec<f32> = scores.iter().map(|s| f16::from_f32(s * inv).to_f32()).collect();

    // kqv: per dimension, a dot product over positions; chunk `c` of 16 positions feeds accumulator
    // 0 (tinyBLAS) or `c % 4` (vec_dot). Positions past `n` have probability 0 and add nothing.
    for (dim, o) in out.iter_mut().enumerate() {
        let row = &values[dim * stride..dim * stride + chunks * LANES];
        let mut acc = [[0.0f32; LANES]; 4];
        let slots = if product == F16Product::Tiled { 1 } else { 4 };
        for (c, (vc, pc)) in row.chunks_exact(LANES).zip(p.chunks_exact(LANES)).enumerate() {
            let slot = &mut acc[c % slots];
            for lane in 0..LANES {
                slot[lane] = vc[lane].mul_add(pc[lane], slot[lane]);
            }
        }
        *o = match product {
            F16Product::Tiled => ops::reduce_lanes(&acc[0]),
            F16Product::Vector => ops::reduce_lanes(&fold(&acc)),
        };
    }
}
