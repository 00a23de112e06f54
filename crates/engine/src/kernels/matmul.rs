//! A whole projection `y = x · Wᵀ` over a batch of rows, with the dot products of [`super::dot`].
//!
//! The activations are quantized once per call; output rows are split into contiguous ranges across the
//! engine's threads ([`super::team`], sized by `RAYON_NUM_THREADS`); inside a range each weight row is read
//! once and multiplied with up to four activation rows per pass, so prefill reads the weights `T / 4`
//! times instead of `T` and decode batches share each read.

use super::BLOCK;
use super::dot::{self, Q4_1_BYTES, Q8_0_BYTES};
use super::dot_half::{self, Bf16Bits, F16Bits, HALF_BYTES, HalfOrder, TILED_MIN_ROWS, round_row_bf16, round_row_f16};
use super::dot_k::{self, Q4_K_BYTES, Q4KOrder, Q6_K_BYTES, Q6K_TILED_MIN_ROWS, Q6KOrder};
use super::dot_q4_0::{self, Q4_0_BYTES};
use super::dot_q5_0::{self, Q5_0_BYTES};
use super::dot_q5_1::{self, Q5_1_BYTES};
use super::dot_q5_k::{self, Q5_K_BYTES};
use super::isa::{Isa, isa};
use super::quantize::{ActivationBlock, quantize_row};
use super::quantize_k::{SUPER_BLOCK, SuperBlock, quantize_row_k};
use super::team;

/// The weight formats these kernels multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// ggml's Q4_0: 4-bit values with a per-block scale (the most downloaded legacy format).
    Q4_0,
    /// ggml's Q4_1: 4-bit values with a per-block scale and minimum (the default model's format).
    Q4_1,
    /// ggml's Q8_0: 8-bit values with a per-block scale.
    Q8_0,
    /// ggml's Q5_0: 5-bit values with a per-block scale (K-quant files' fallback for rows of a length
    /// that is not a multiple of 256).
    Q5_0,
    /// ggml's Q5_1: 5-bit values with a per-block scale and minimum (K-quant files' fallback for Q5_K in
    /// rows of a length that is not a multiple of 256).
    Q5_1,
    /// ggml's Q5_K: 256-value super-blocks of 5-bit values with 6-bit sub-block scales and minimums (most
    /// matrices of a Q5_K_M file).
    Q5K,
    /// ggml's Q4_K: 256-value super-blocks of 4-bit values with 6-bit sub-block scales and minimums
    /// (most matrices of a Q4_K_M file).
    Q4K,
    /// ggml's Q6_K: 256-value super-blocks of 6-bit values with 8-bit sub-block scales (the rest of a
    /// Q4_K_M file, and all of a Q6_K one).
    Q6K,
    /// IEEE half precision, one value per 2 bytes (F16 GGUF files): activations rounded to f16.
    F16,
    /// bfloat16, one value per 2 bytes (BF16 GGUF files, most safetensors checkpoints): activations
    /// rounded to bf16.
    Bf16,
}

/// What a weight format's kernel multiplies: the activations rounded the way llama.cpp rounds them for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActivationType {
    /// ggml's Q8_0/Q8_1 blocks of 32 values.
    Q8,
    /// ggml's Q8_K super-blocks of 256 values.
    Q8K,
    /// f16 values.
    F16,
    /// bf16 values.
    Bf16,
}

impl WeightFormat {
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => Q4_0_BYTES,
            Self::Q4_1 => Q4_1_BYTES,
            Self::Q8_0 => Q8_0_BYTES,
            Self::Q5_0 => Q5_0_BYTES,
            Self::Q5_1 => Q5_1_BYTES,
            Self::Q5K => Q5_K_BYTES,
            Self::Q4K => Q4_K_BYTES,
            Self::Q6K => Q6_K_BYTES,
            Self::F16 | Self::Bf16 => HALF_BYTES,
        }
    }

    /// Values per block: a row's length must be a multiple of it.
    pub fn block_values(self) -> usize {
        match self.activation() {
            ActivationType::Q8 => BLOCK,
            ActivationType::Q8K => SUPER_BLOCK,
            ActivationType::F16 | ActivationType::Bf16 => 1,
        }
    }

    /// The activations the format's kernel multiplies.
    fn activation(self) -> ActivationType {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => ActivationType::Q8K,
            Self::F16 => ActivationType::F16,
            Self::Bf16 => ActivationType::Bf16,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 | Self::Q5_0 | Self::Q5_1 => ActivationType::Q8,
        }
    }
}

/// Output rows per parallel task: enough work per task to hide rayon's scheduling cost.
const ROWS_PER_TASK: usize = 64;

/// One quantized weight matrix, `rows` rows in `format`'s GGUF block layout, borrowed in place.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    /// How each row's blocks are encoded.
    pub format: WeightFormat,
    /// `rows` rows of blocks, as stored in the GGUF file (the kernels read them in place).
    pub bytes: &'a [u8],
    /// Output values this matrix produces per activation row.
    pub rows: usize,
}

/// `t` rows of activations quantized once (ggml's rounding) for every projection that reads them: Q, K
/// and V read the same normed input, as do the gate and up projections. Each of ggml's activation
/// formats is made only if one of the matrices needs it: 32-value 8-bit blocks for Q4_0, Q4_1, Q5_0, Q5_1
/// and Q8_0 weights, 256-value Q8_K blocks for K-quant weights, values rounded to f16 or bf16 for F16 and
/// BF16 weights.
#[derive(Debug)]
pub struct Activations {
    blocks: Vec<ActivationBlock>,
    super_blocks: Vec<SuperBlock>,
    f16: Vec<F16Bits>,
    bf16: Vec<Bf16Bits>,
    t: usize,
    cols: usize,
}

impl Activations {
    /// Quantizes `x`, `t` rows of `cols` values, for matrices in `formats` (`cols` a multiple of each
    /// format's [`WeightFormat::block_values`]; the caller checks).
    pub fn quantize(x: &[f32], t: usize, cols: usize, formats: &[WeightFormat]) -> Self {
        assert_eq!(x.len(), t * cols, "activation shape");
        let needs = |kind: ActivationType| formats.iter().any(|f| f.activation() == kind);
        let (mut blocks, mut super_blocks, mut f16, mut bf16) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if needs(ActivationType::Q8) {
            assert!(cols.is_multiple_of(BLOCK), "activation shape");
            let per_row = cols / BLOCK;
            blocks = vec![ActivationBlock::default(); t * per_row];
            for (row, out) in x.chunks_exact(cols).zip(blocks.chunks_exact_mut(per_row)) {
                quantize_row(row, out);
            }
        }
        if needs(ActivationType::Q8K) {
            assert!(cols.is_multiple_of(SUPER_BLOCK), "activation shape");
            let per_row = cols / SUPER_BLOCK;
            super_blocks = vec![SuperBlock::default(); t * per_row];
            for (row, out) in x.chunks_exact(cols).zip(super_blocks.chunks_exact_mut(per_row)) {
                quantize_row_k(row, out);
            }
        }
        if needs(ActivationType::F16) {
            f16 = vec![F16Bits::default(); t * cols];
            round_row_f16(x, &mut f16);
        }
        if needs(ActivationType::Bf16) {
            bf16 = vec![Bf16Bits::default(); t * cols];
            round_row_bf16(x, &mut bf16);
        }
        Self { blocks, super_blocks, f16, bf16, t, cols }
    }
}

/// `x` (`t` rows of `cols` values) times the transpose of `weight` (`rows` rows of `cols` values in
/// `format`'s GGUF block layout): `t` rows of `rows` values. `cols` must be a multiple of 32 and
/// `weight` exactly `rows` rows long (the caller checks shapes; a mismatch panics here).
pub fn quantized_matmul(
    format: WeightFormat,
    weight: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    t: usize,
) -> Vec<f32> {
    let acts = Activations::quantize(x, t, cols, &[format]);
    let [y] = project(&acts, [Matrix { format, bytes: weight, rows }]);
    y
}

/// Every matrix in `matrices` times the same activations, in one parallel pass: `t` rows of each
/// matrix's `rows` values. One pass instead of one per matrix halves the number of times the engine's
/// threads meet per layer, which is most of the cost of a second thread on a model this small.
pub fn project<const M: usize>(acts: &Activations, matrices: [Matrix<'_>; M]) -> [Vec<f32>; M] {
    let t = acts.t;
    for m in &matrices {
        let blocks = acts.cols / m.format.block_values();
        assert_eq!(m.bytes.len(), m.rows * blocks * m.format.block_bytes(), "weight shape");
        let quantized = match m.format.activation() {
            ActivationType::Q8 => acts.blocks.len(),
            ActivationType::Q8K => acts.super_blocks.len(),
            ActivationType::F16 => acts.f16.len(),
            ActivationType::Bf16 => acts.bf16.len(),
        };
        assert_eq!(quantized, t * blocks, "activations quantized for another format");
    }
    if t == 0 {
        return std::array::from_fn(|_| Vec::new());
    }
    let isa = isa();
    // Computed as `[rows, t]` so each task owns a contiguous range of whole weight rows, then transposed.
    let mut transposed: [Vec<f32>; M] = std::array::from_fn(|j| vec![0.0f32; matrices[j].rows * t]);
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (j, out) in transposed.iter_mut().enumerate() {
        for (chunk_index, chunk) in out.chunks_mut(ROWS_PER_TASK * t).enumerate() {
            tasks.push((j, chunk_index * ROWS_PER_TASK, chunk));
        }
    }
    team::for_each_item(tasks, |_, (j, first, out)| {
        let m = &matrices[j];
        match m.format.activation() {
            ActivationType::Q8 => rows_times_activations(m, isa, first, &acts.blocks, t, out),
            ActivationType::Q8K => rows_times_activations(m, isa, first, &acts.super_blocks, t, out),
            ActivationType::F16 => rows_times_activations(m, isa, first, &acts.f16, t, out),
            ActivationType::Bf16 => rows_times_activations(m, isa, first, &acts.bf16, t, out),
        }
    });
    if t == 1 {
        return transposed;
    }
    std::array::from_fn(|j| {
        let rows = matrices[j].rows;
        let mut y = vec![0.0f32; t * rows];
        for (r, column) in transposed[j].chunks_exact(t).enumerate() {
            for (i, v) in column.iter().enumerate() {
                y[i * rows + r] = *v;
            }
        }
        y
    })
}

/// Weight tiles fetched ahead of the one being multiplied. Without it each tile's rows arrive on
/// demand and decode ran 20–25% slower (benches/RESULTS.md); much further ahead and the prefetched
/// lines start to leave the cache before they are used.
const TILES_AHEAD: usize = 2;

/// Rows `first ..` of `m` (as many as `out` holds, `out` being `[rows, t]`) times every activation row
/// (`acts`: `t` rows of blocks).
fn rows_times_activations<A: ActivationKind>(
    m: &Matrix<'_>,
    isa: Isa,
    first: usize,
    acts: &[A],
    t: usize,
    out: &mut [f32],
) {
    let blocks = acts.len() / t;
    let row_bytes = blocks * m.format.block_bytes();
    let w_row = |r: usize| &m.bytes[(first + r) * row_bytes..(first + r + 1) * row_bytes];
    let n_rows = out.len() / t;
    let tile_bytes = TILE_ROWS * row_bytes;
    prefetch(m.bytes, first * row_bytes, TILES_AHEAD * tile_bytes);
    let mut r = 0;
    while r + TILE_ROWS <= n_rows {
        prefetch(m.bytes, (first + r) * row_bytes + TILES_AHEAD * tile_bytes, tile_bytes);
        let ws = std::array::from_fn(|k| w_row(r + k));
        tile::<TILE_ROWS, A>(m.format, isa, ws, acts, blocks, &mut out[r * t..(r + TILE_ROWS) * t]);
        r += TILE_ROWS;
    }
    while r < n_rows {
        tile::<1, A>(m.format, isa, [w_row(r)], acts, blocks, &mut out[r * t..(r + 1) * t]);
        r += 1;
    }
}

/// Prefetches `len` bytes of `bytes` from `start` (clipped to the slice) into level 1.
#[inline(always)]
fn prefetch(bytes: &[u8], start: usize, len: usize) {
    super::prefetch::<u8, true>(bytes.get(start..(start + len).min(bytes.len())).unwrap_or_default());
}

/// Weight rows per kernel call (independent accumulations hide each other's latency).
const TILE_ROWS: usize = 4;
/// Activation rows per kernel call: each unpacked weight block is reused this many times. Also the size
/// of the row groups llama.cpp's repacked Q4_K kernel multiplies as a matrix product ([`BatchPlace`]), so
/// the groups here are the rows it sums in that order.
const TILE_ACTS: usize = 4;

/// Where a kernel call's activation rows sit in their batch: what llama.cpp chooses some kernels by.
#[derive(Debug, Clone, Copy)]
struct BatchPlace {
    /// Activation rows in the whole batch.
    rows: usize,
    /// Whether the rows are one of the whole groups of four counted from the batch's start (llama.cpp's
    /// repacked kernels run those as a matrix product and the rest row by row).
    in_group_of_four: bool,
}

/// An activation block type and the dot products that read it: one weight format's kernel chosen per
/// tile call, so the tiling above is written once for both activation formats.
trait ActivationKind: Sized {
    /// `out[r][i] = w_rows[r] · acts[i]` with `format`'s kernel, for activation rows at `place` in their
    /// batch (llama.cpp picks some kernels by batch size and row, and with them the summation order).
    fn dot<const R: usize, const N: usize>(
        format: WeightFormat,
        isa: Isa,
        place: BatchPlace,
        w_rows: [&[u8]; R],
        acts: [&[Self]; N],
        out: &mut [[f32; N]; R],
    );
}

impl ActivationKind for ActivationBlock {
    #[inline(always)]
    fn dot<const R: usize, const N: usize>(
        format: WeightFormat,
        isa: Isa,
        _place: BatchPlace,
        w_rows: [&[u8]; R],
        acts: [&[Self]; N],
        out: &mut [[f32; N]; R],
    ) {
        match format {
            WeightFormat::Q4_0 => dot_q4_0::q4_0(isa, w_rows, acts, out),
            WeightFormat::Q4_1 => dot::q4_1(isa, w_rows, acts, out),
            WeightFormat::Q8_0 => dot::q8_0(isa, w_rows, acts, out),
            WeightFormat::Q5_0 => dot_q5_0::q5_0(isa, w_rows, acts, out),
            WeightFormat::Q5_1 => dot_q5_1::q5_1(isa, w_rows, acts, out),
            _ => unreachable!("only 32-value block formats read Q8_0 activations"),
        }
    }
}

impl ActivationKind for SuperBlock {
    #[inline(always)]
    fn dot<const R: usize, const N: usize>(
        format: WeightFormat,
        isa: Isa,
        place: BatchPlace,
        w_rows: [&[u8]; R],
        acts: [&[Self]; N],
        out: &mut [[f32; N]; R],
    ) {
        match format {
            WeightFormat::Q4K => {
                let order = if place.in_group_of_four { Q4KOrder::Pairs } else { Q4KOrder::Blocks };
                dot_k::q4_k(isa, order, w_rows, acts, out);
            }
            WeightFormat::Q5K | WeightFormat::Q6K => {
                let order = if place.rows >= Q6K_TILED_MIN_ROWS { Q6KOrder::Tiled } else { Q6KOrder::Lanes };
                if format == WeightFormat::Q5K {
                    dot_q5_k::q5_k(isa, order, w_rows, acts, out);
                } else {
                    dot_k::q6_k(isa, order, w_rows, acts, out);
                }
            }
            _ => unreachable!("only K-quant weights read Q8_K activations"),
        }
    }
}

/// llama.cpp's kernel for a batch of 16-bit float weights: its vector dot product for one row, tinyBLAS
/// for more.
fn half_order(place: BatchPlace) -> HalfOrder {
    if place.rows >= TILED_MIN_ROWS { HalfOrder::Tiled } else { HalfOrder::Dot }
}

impl ActivationKind for F16Bits {
    #[inline(always)]
    fn dot<const R: usize, const N: usize>(
        format: WeightFormat,
        isa: Isa,
        place: BatchPlace,
        w_rows: [&[u8]; R],
        acts: [&[Self]; N],
        out: &mut [[f32; N]; R],
    ) {
        debug_assert_eq!(format, WeightFormat::F16);
        dot_half::f16(isa, half_order(place), w_rows, acts, out);
    }
}

impl ActivationKind for Bf16Bits {
    #[inline(always)]
    fn dot<const R: usize, const N: usize>(
        format: WeightFormat,
        isa: Isa,
        place: BatchPlace,
        w_rows: [&[u8]; R],
        acts: [&[Self]; N],
        out: &mut [[f32; N]; R],
    ) {
        debug_assert_eq!(format, WeightFormat::Bf16);
        dot_half::bf16(isa, half_order(place), w_rows, acts, out);
    }
}

/// `R` weight rows against every activation row, [`TILE_ACTS`] at a time; `out` is `[R, t]`.
fn tile<const R: usize, A: ActivationKind>(
    format: WeightFormat,
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: &[A],
    blocks: usize,
    out: &mut [f32],
) {
    let t = out.len() / R;
    let row = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    let mut i = 0;
    while i + TILE_ACTS <= t {
        let mut o = [[0.0f32; TILE_ACTS]; R];
        let rows: [&[A]; TILE_ACTS] = std::array::from_fn(|k| row(i + k));
        A::dot(format, isa, BatchPlace { rows: t, in_group_of_four: true }, w_rows, rows, &mut o);
        for (r, values) in o.iter().enumerate() {
            out[r * t + i..r * t + i + TILE_ACTS].copy_from_slice(values);
        }
        i += TILE_ACTS;
    }
    while i < t {
        let mut o = [[0.0f32; 1]; R];
        A::dot(format, isa, BatchPlace { rows: t, in_group_of_four: false }, w_rows, [row(i)], &mut o);
        for (r, value) in o.iter().enumerate() {
            out[r * t + i] = value[0];
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 104_729 % 997) as f32 / 997.0 - 0.5) * 0.4).collect()
    }

    #[test]
    fn matches_row_by_row_products_and_approximates_candle() {
        let (rows, t) = (ROWS_PER_TASK * 2 + 7, 6);
        for (format, dtype) in [
            (WeightFormat::Q4_0, GgmlDType::Q4_0),
            (WeightFormat::Q4_1, GgmlDType::Q4_1),
            (WeightFormat::Q8_0, GgmlDType::Q8_0),
            (WeightFormat::Q5_0, GgmlDType::Q5_0),
            (WeightFormat::Q5_1, GgmlDType::Q5_1),
            (WeightFormat::Q5K, GgmlDType::Q5K),
            (WeightFormat::Q4K, GgmlDType::Q4K),
            (WeightFormat::Q6K, GgmlDType::Q6K),
            (WeightFormat::F16, GgmlDType::F16),
            (WeightFormat::Bf16, GgmlDType::BF16),
        ] {
            let cols = 3 * format.block_values().max(BLOCK);
            let w = Tensor::from_vec(values(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap().into_owned();
            let x = values(t * cols, 9);
            let y = quantized_matmul(format, &bytes, rows, cols, &x, t);
            assert_eq!(y.len(), t * rows);
            // Each row alone (one activation row per call) gives the same bits as the batched call, except
            // Q4_K rows in whole groups of four, which llama.cpp sums in another order (6 rows stay below
            // the batch size from which it sums Q6_K differently), and 16-bit floats, which it sums one way
            // for one row and another for more.
            for i in 0..t {
                if (format == WeightFormat::Q4K && i < t - t % TILE_ACTS)
                    || matches!(format, WeightFormat::F16 | WeightFormat::Bf16)
                {
                    continue;
                }
                let single = quantized_matmul(format, &bytes, rows, cols, &x[i * cols..(i + 1) * cols], 1);
                assert!(single.iter().zip(&y[i * rows..(i + 1) * rows]).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            // And it is the same product candle's kernel computes, up to rounding.
            let xt = Tensor::from_vec(x.clone(), (t, cols), &Device::Cpu).unwrap();
            let expected = QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&xt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let worst = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 2e-3, "{format:?}: {worst}");
        }
    }
}
