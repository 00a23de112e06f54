//! Attention over an 8-bit KV cache (`kv_cache_type: q8_0`), the opt-in that halves what a long context
//! costs: each position's keys and values are stored as ggml's Q8_0 blocks (32 values, one scale, the
//! rounding of `quantize_row_q8_0`), so a token reads 0.56× the bytes of the f16 cache, and the key
//! products become 8-bit integer dot products (AVX-512 VNNI: 64 multiply-adds per instruction), as
//! llama.cpp computes `K·q` over a Q8_0 key cache (the query is rounded to Q8_0 too).
//!
//! What it gives up: llama.cpp's default f16 cache, and with it our bit-for-bit agreement with
//! llama.cpp's logits; that is why f16 stays the default. An AVX-512 VNNI path and a plain path compute
//! the same bits.
//!
//! Why one file over 500 lines: the cache layout, its plain kernels and their AVX-512 VNNI twins belong
//! together — each SIMD function must compute exactly what the plain one beside it does, and the tests
//! at the end compare them bit for bit.

use half::f16;
use multiversion::multiversion;

use super::BLOCK;
use super::ops::{self, LANES};

/// One page of a layer's 8-bit cache: `page` positions of every KV head.
///
/// Keys are laid out for the integer dot product: per KV head, chunks of 16 positions, and in a chunk
/// `[D/4, 16, 4]` bytes (4 consecutive dimensions of each position side by side, 16 positions per
/// 64-byte row), each byte the Q8_0 value plus 128. Values, per chunk, `[8, D, 2]` signed bytes: pairs of
/// positions, each dimension's two values side by side, which is the operand order of the 16-bit integer
/// dot product the value pass uses (dimensions in lanes, two positions per instruction). Scales, of keys
/// and of values: per chunk `[D/32, 16]`, so 16 positions' scales load as one register.
#[derive(Debug, Clone)]
pub struct Q8Page {
    keys: Vec<u8>,
    key_scales: Vec<f32>,
    values: Vec<i8>,
    value_scales: Vec<f32>,
}

impl Q8Page {
    /// A zeroed page for `kv_heads` heads of `head_dim` (a multiple of 32) and `page` positions (a
    /// multiple of 16).
    pub fn new(kv_heads: usize, head_dim: usize, page: usize) -> Self {
        let (values, scales) = (kv_heads * page * head_dim, kv_heads * page * head_dim / BLOCK);
        Self {
            keys: vec![0; values],
            key_scales: vec![0.0; scales],
            values: vec![0; values],
            value_scales: vec![0.0; scales],
        }
    }

    /// Whether this page was made for `kv_heads` heads of `head_dim` and `positions` positions, so a
    /// freed page can be handed to a cache of that shape.
    pub(crate) fn holds(&self, kv_heads: usize, head_dim: usize, positions: usize) -> bool {
        self.keys.len() == kv_heads * positions * head_dim && self.key_scales.len() == self.keys.len() / BLOCK
    }

    /// Bytes this page holds: what keeping it costs.
    pub(crate) fn bytes(&self) -> usize {
        self.keys.len()
            + self.values.len()
            + (self.key_scales.len() + self.value_scales.len()) * std::mem::size_of::<f32>()
    }

    /// Makes this page a copy of `other`, of the same shape, in this page's memory.
    pub(crate) fn copy_from(&mut self, other: &Q8Page) {
        self.keys.copy_from_slice(&other.keys);
        self.key_scales.copy_from_slice(&other.key_scales);
        self.values.copy_from_slice(&other.values);
        self.value_scales.copy_from_slice(&other.value_scales);
    }

    /// Zeroes the page, as [`Self::new`] makes it: a reused page starts like a fresh one.
    pub(crate) fn clear(&mut self) {
        self.keys.fill(0);
        self.key_scales.fill(0.0);
        self.values.fill(0);
        self.value_scales.fill(0.0);
    }

    /// Whether every byte is zero (tests of reuse).
    #[cfg(test)]
    pub(crate) fn is_zero(&self) -> bool {
        self.keys.iter().all(|&x| x == 0)
            && self.values.iter().all(|&x| x == 0)
            && self.key_scales.iter().chain(&self.value_scales).all(|&x| x == 0.0)
    }

    /// Bytes one position of one KV head takes: a byte per key and per value, and a 4-byte scale per
    /// block of 32 of each.
    pub fn bytes_per_position(head_dim: usize) -> usize {
        2 * head_dim + 2 * (head_dim / BLOCK) * std::mem::size_of::<f32>()
    }

    /// Rounds one position's keys and values for KV head `kv` to Q8_0 and stores them; `position` is
    /// the position within this page.
    pub fn store(&mut self, kv: usize, page: usize, position: usize, keys: &[f32], values: &[f32]) {
        let d = keys.len();
        let blocks = d / BLOCK;
        let chunk = kv * (page / LANES) + position / LANES;
        let lane = position % LANES;
        let mut q = [0i8; BLOCK];
        for (b, block) in keys.chunks_exact(BLOCK).enumerate() {
            self.key_scales[(chunk * blocks + b) * LANES + lane] = quantize_block(block, &mut q);
            for (i, value) in q.iter().enumerate() {
                let dim = b * BLOCK + i;
                let at = chunk * d * LANES + (dim / 4) * 4 * LANES + lane * 4 + dim % 4;
                self.keys[at] = (*value as u8) ^ 0x80;
            }
        }
        for (b, block) in values.chunks_exact(BLOCK).enumerate() {
            self.value_scales[(chunk * blocks + b) * LANES + lane] = quantize_block(block, &mut q);
            for (i, value) in q.iter().enumerate() {
                self.values[chunk * d * LANES + value_index(d, lane, b * BLOCK + i)] = *value;
            }
        }
    }
}

/// Where position `lane` of a chunk keeps its value of dimension `dim`, within the chunk's `16 · D` bytes.
#[inline(always)]
fn value_index(d: usize, lane: usize, dim: usize) -> usize {
    ((lane / 2) * d + dim) * 2 + lane % 2
}

/// ggml's `quantize_row_q8_0` for one block: the scale `max|x| / 127` (returned rounded to f16, as the
/// block stores it) and `round(x / scale)`. Compiled for SSE4.1 too, where rounding is an instruction
/// sequence rather than a call to `roundf`.
#[multiversion(targets("x86_64+avx2+fma+sse4.1", "x86_64+sse4.1"))]
fn quantize_block(x: &[f32], out: &mut [i8; BLOCK]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v * inverse).round() as i8;
    }
    f16::from_f32(d).to_f32()
}

/// One KV head's positions in an 8-bit cache, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Q8Head<'a> {
    /// The cache's pages.
    pub pages: &'a [Q8Page],
    /// Which KV head of every page this view reads.
    pub kv: usize,
    /// Dimensions per head (`D`).
    pub head_dim: usize,
    /// Positions per page.
    pub page: usize,
}

/// Positions `16·c .. 16·c + 16` of one KV head.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    /// `[D/4, 16, 4]` key bytes (value + 128).
    keys: &'a [u8],
    /// `[D/32, 16]`.
    key_scales: &'a [f32],
    /// `[8, D, 2]`.
    values: &'a [i8],
    /// `[D/32, 16]`.
    value_scales: &'a [f32],
}

impl<'a> Q8Head<'a> {
    /// Chunk `c`'s slices, bounds-checked here once.
    fn chunk(&self, c: usize) -> Chunk<'a> {
        let (d, per_page) = (self.head_dim, self.page / LANES);
        let blocks = d / BLOCK;
        let page = &self.pages[c / per_page];
        let key_chunk = self.kv * per_page + c % per_page;
        let first_row = self.kv * self.page + (c % per_page) * LANES;
        Chunk {
            keys: &page.keys[key_chunk * d * LANES..][..d * LANES],
            key_scales: &page.key_scales[key_chunk * blocks * LANES..][..blocks * LANES],
            values: &page.values[first_row * d..][..LANES * d],
            value_scales: &page.value_scales[key_chunk * blocks * LANES..][..blocks * LANES],
        }
    }
}

/// The queries of one group of heads rounded to Q8_0: per head and block, the scale, the 8-bit values
/// packed four to a word (the integer dot product's operand), and `128 · Σ values`, which undoes the
/// keys' +128 offset.
pub struct QuantizedQueries {
    words: Vec<i32>,
    scales: Vec<f32>,
    corrections: Vec<i32>,
    head_dim: usize,
}

impl QuantizedQueries {
    /// Rounds `queries` (whole heads of `d` values, `d` a multiple of 32) to Q8_0, once for all the
    /// spans they attend to.
    pub fn new(queries: &[f32], d: usize) -> Self {
        let blocks = queries.len() / BLOCK;
        let mut words = Vec::with_capacity(queries.len() / 4);
        let (mut scales, mut corrections) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
        let mut q = [0i8; BLOCK];
        debug_assert!(d.is_multiple_of(BLOCK));
        for block in queries.chunks_exact(BLOCK) {
            scales.push(quantize_block(block, &mut q));
            corrections.push(128 * q.iter().map(|v| i32::from(*v)).sum::<i32>());
            words.extend(
                q.chunks_exact(4).map(|w| i32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8])),
            );
        }
        Self { words, scales, corrections, head_dim: d }
    }
}

/// Positions one span covers: attention over a long context is computed span by span, each span a
/// separate work item (so two threads share even a single sequence's attention), and the spans'
/// results merged by [`combine`]. Fixed, not derived from the thread count, so the result is the same
/// on any number of threads.
pub const SPAN: usize = 512;

/// Chunks ahead whose keys (into level 1) and values (into level 2) are fetched while the score pass
/// works on the current one: the cache pages are separate allocations, which the hardware prefetcher
/// does not follow from one to the next.
const AHEAD: usize = 4;

/// Floats [`attend_span`] writes per head: the `D` weighted values and the span's max and sum.
pub const fn partial_len(head_dim: usize) -> usize {
    head_dim + 2
}

/// One query per head of the group that shares this KV head (`queries`: `D` values each) against the
/// first `n` cached positions: `softmax(scale · K·q) · V` into `out`, with the keys, values and query
/// in Q8_0 — span after span, as the engine's threads compute it.
pub fn attend_q8(queries: &[f32], cache: Q8Head<'_>, n: usize, scale: f32, out: &mut [f32]) {
    let d = cache.head_dim;
    let heads = queries.len() / d;
    let q = QuantizedQueries::new(queries, d);
    let mut partials = vec![0.0f32; n.div_ceil(SPAN) * heads * partial_len(d)];
    for (span, partial) in partials.chunks_exact_mut(heads * partial_len(d)).enumerate() {
        attend_span(&q, cache, span * SPAN..n.min((span + 1) * SPAN), scale, partial);
    }
    combine(&partials, d, out);
}

/// [`attend_q8`] over the cached positions `span` only (it starts at a multiple of 16), for queries
/// rounded by [`QuantizedQueries::new`]: writes to
/// `partial` each head's weighted values, `Σ exp(score − max) · value`, not yet divided by the sum,
/// `[H, D]`, followed by each head's max and sum, `[H, 2]`.
pub fn attend_span(
    q: &QuantizedQueries,
    cache: Q8Head<'_>,
    span: std::ops::Range<usize>,
    scale: f32,
    partial: &mut [f32],
) {
    let d = cache.head_dim;
    let heads = q.scales.len() * BLOCK / d;
    let n = span.len();
    assert!(
        d.is_multiple_of(4 * LANES)
            && q.head_dim == d
            && partial.len() == heads * partial_len(d)
            && n > 0
            && span.start.is_multiple_of(LANES),
        "attention shapes"
    );
    let first = span.start / LANES;
    // The span's chunks, then up to `AHEAD` allocated ones after it, which are only prefetched: on one
    // thread the next span of this head runs next and finds its first chunks in cache.
    let available = cache.pages.len() * (cache.page / LANES);
    let count = n.div_ceil(LANES);
    let chunks: Vec<Chunk<'_>> = (first..available.min(first + count + AHEAD)).map(|c| cache.chunk(c)).collect();
    let width = count * LANES;
    let (values, stats) = partial.split_at_mut(heads * d);
    // Buffers reused from call to call on this thread (a token makes hundreds of calls); every value
    // in them is written before it is read, so they are only grown.
    let mut scratch = SCRATCH.take();
    if scratch.exps.len() < heads * width {
        scratch.exps.resize(heads * width, 0.0);
    }
    let exps = &mut scratch.exps[..heads * width];
    let weights = &mut scratch.weights;
    weights.prepare(heads, d / BLOCK, width);
    #[cfg(target_arch = "x86_64")]
    let simd = vnni();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the CPU has AVX-512F, AVX-512BW, AVX-512 VNNI and FMA (checked once); slices are
        // bounds-checked.
        unsafe {
            x86::scores(q, &chunks, d, n, scale, exps);
            x86::exp_rows(exps, width, n, stats);
            x86::integer_weights(exps, &chunks, d, weights);
            x86::weighted_values(weights, &chunks, d, n, values);
        }
    }
    if !simd {
        scores(q, &chunks, d, n, scale, exps);
        exp_rows(exps, width, n, stats);
        integer_weights(exps, &chunks, d, weights);
        weighted_values(weights, &chunks, d, n, values);
    }
    SCRATCH.set(scratch);
}

/// Buffers [`attend_span`] reuses, one set per thread.
#[derive(Default)]
struct Scratch {
    exps: Vec<f32>,
    weights: IntegerWeights,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Merges consecutive spans' partial results (as [`attend_span`] wrote them, one after another) into
/// each head's attention output: every span's exponentials rescaled to the overall max, then divided
/// by the overall sum, spans in order.
pub fn combine(partials: &[f32], head_dim: usize, out: &mut [f32]) {
    let heads = out.len() / head_dim;
    let per_span = heads * partial_len(head_dim);
    out.fill(0.0);
    for h in 0..heads {
        let stat = |span: usize, i: usize| partials[span * per_span + heads * head_dim + 2 * h + i];
        let spans = partials.len() / per_span;
        let max = (0..spans).fold(f32::NEG_INFINITY, |m, span| m.max(stat(span, 0)));
        let total: f32 = (0..spans).map(|span| stat(span, 1) * (stat(span, 0) - max).exp()).sum();
        let o = &mut out[h * head_dim..(h + 1) * head_dim];
        for span in 0..spans {
            let factor = (stat(span, 0) - max).exp() / total;
            let values = &partials[span * per_span + h * head_dim..][..head_dim];
            for (acc, value) in o.iter_mut().zip(values) {
                *acc += value * factor;
            }
        }
    }
}

/// Whether the AVX-512 VNNI paths run: the instruction set the matrix kernels chose (`isa::isa`, which
/// also honours `LLAMAGATE_KERNELS`) covers every feature they use.
#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    super::isa::isa() == super::isa::Isa::Avx512Vnni
}

/// `scale · K·q` for every head and the first `n` positions of `chunks` (head `h`'s row at
/// `out[h · width ..]`, −∞ past `n`; chunks after those are only prefetched), each position's
/// product summed block by block: `Σ_b float(integer dot_b) · (key scale_b · query scale_b)`.
fn scores(q: &QuantizedQueries, chunks: &[Chunk<'_>], d: usize, n: usize, scale: f32, out: &mut [f32]) {
    let count = n.div_ceil(LANES);
    let (blocks, width) = (d / BLOCK, count * LANES);
    for (h, row) in out.chunks_exact_mut(width).enumerate() {
        for (c, chunk) in chunks[..count].iter().enumerate() {
            for lane in 0..LANES {
                let mut sum = 0.0f32;
                for b in 0..blocks {
                    let mut dot = 0i32;
                    for dim in b * BLOCK..(b + 1) * BLOCK {
                        let key = i32::from(chunk.keys[(dim / 4) * 4 * LANES + lane * 4 + dim % 4]);
                        let query = i32::from(q.words[h * d / 4 + dim / 4].to_le_bytes()[dim % 4] as i8);
                        dot += key * query;
                    }
                    let dot = dot - q.corrections[h * blocks + b];
                    sum = (dot as f32).mul_add(chunk.key_scales[b * LANES + lane] * q.scales[h * blocks + b], sum);
                }
                let position = c * LANES + lane;
                row[position] = if position < n { sum * scale } else { f32::NEG_INFINITY };
            }
        }
    }
}

/// Each row of `width` scores (the first `n` real, the rest −∞) becomes `exp(score − max)` with ggml's
/// `expf`, not yet normalized; `stats[2h]` and `stats[2h + 1]` get row `h`'s max and its sum of
/// exponentials (kept in 16 lanes, reduced once), which [`combine`] needs to merge spans.
fn exp_rows(rows: &mut [f32], width: usize, n: usize, stats: &mut [f32]) {
    for (row, stats) in rows.chunks_exact_mut(width).zip(stats.chunks_exact_mut(2)) {
        let max = row[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sums = [0.0f32; LANES];
        for chunk in row.chunks_exact_mut(LANES) {
            for (sum, value) in sums.iter_mut().zip(chunk.iter_mut()) {
                *value = ops::expf(*value - max);
                *sum += *value;
            }
        }
        stats[0] = max;
        stats[1] = ops::reduce_lanes(&sums);
    }
}

/// Each head's weight for each position's value block, `exp · value scale`, as 16-bit integers with one
/// scale per head and block: the value pass then sums `weight · value` exactly in 32-bit integers
/// (|sum| ≤ 512 · 32767 · 127 < 2³¹ over a [`SPAN`]). 15 bits keep each weight to 1.5·10⁻⁵ of the
/// largest, far below the values' own 8-bit rounding.
#[derive(Default)]
struct IntegerWeights {
    /// `[H, D/32, width]`; positions past the span's end weigh 0.
    weights: Vec<i16>,
    /// `[H, D/32]`: what one unit of weight stands for.
    scales: Vec<f32>,
    width: usize,
}

impl IntegerWeights {
    /// Room for `heads` heads of `blocks` blocks over `width` positions (grown, never shrunk: every
    /// entry used is written before it is read).
    fn prepare(&mut self, heads: usize, blocks: usize, width: usize) {
        if self.weights.len() < heads * blocks * width {
            self.weights.resize(heads * blocks * width, 0);
        }
        if self.scales.len() < heads * blocks {
            self.scales.resize(heads * blocks, 0.0);
        }
        self.width = width;
    }
}

/// Largest 16-bit weight.
const WEIGHT_MAX: f32 = 32767.0;
const _: () = assert!(SPAN * 32767 * 127 < i32::MAX as usize, "a span's integer sums must fit in i32");

/// Scale and its inverse for weights whose largest is `max`.
#[inline(always)]
fn weight_scale(max: f32) -> (f32, f32) {
    let scale = max / WEIGHT_MAX;
    (scale, if scale > 0.0 { 1.0 / scale } else { 0.0 })
}

/// [`IntegerWeights`] from `exps` (`[H, width]`, 0 past the span's end).
fn integer_weights(exps: &[f32], chunks: &[Chunk<'_>], d: usize, into: &mut IntegerWeights) {
    let width = into.width;
    let (heads, blocks) = (exps.len() / width, d / BLOCK);
    let IntegerWeights { weights, scales, .. } = into;
    for h in 0..heads {
        for b in 0..blocks {
            let weight = |position: usize| {
                exps[h * width + position] * chunks[position / LANES].value_scales[b * LANES + position % LANES]
            };
            let max = (0..width).fold(0.0f32, |m, position| m.max(weight(position)));
            let (scale, inverse) = weight_scale(max);
            scales[h * blocks + b] = scale;
            for (position, w) in weights[(h * blocks + b) * width..][..width].iter_mut().enumerate() {
                *w = (weight(position) * inverse).round_ties_even().min(WEIGHT_MAX) as i16;
            }
        }
    }
}

/// `out[h] = Σ_position weight[h][position] · value[position]` over the first `n` positions: exact
/// integer sums per dimension, then one multiplication by the head's block scale.
fn weighted_values(w: &IntegerWeights, chunks: &[Chunk<'_>], d: usize, n: usize, out: &mut [f32]) {
    let blocks = d / BLOCK;
    for (h, o) in out.chunks_exact_mut(d).enumerate() {
        for (dim, value) in o.iter_mut().enumerate() {
            let b = dim / BLOCK;
            let weights = &w.weights[(h * blocks + b) * w.width..][..w.width];
            let sum: i32 = (0..n)
                .map(|position| {
                    let v = chunks[position / LANES].values[value_index(d, position % LANES, dim)];
                    i32::from(weights[position]) * i32::from(v)
                })
                .sum();
            *value = sum as f32 * w.scales[h * blocks + b];
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Head, block and lane indices address several arrays in lockstep.
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Heads whose key products one pass over the chunks computes (their integer sums and scores stay
    /// in registers; every key row is loaded once for all of them).
    const HEADS: usize = 4;

    /// [`super::scores`] with the integer dot products in VNNI instructions, 16 positions per register.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512vnni,fma")]
    pub unsafe fn scores(q: &QuantizedQueries, chunks: &[Chunk<'_>], d: usize, n: usize, scale: f32, out: &mut [f32]) {
        let heads = q.scales.len() * BLOCK / d;
        for first in (0..heads).step_by(HEADS) {
            // SAFETY: same contract.
            unsafe {
                match (heads - first).min(HEADS) {
                    1 => scores_for::<1>(q, chunks, d, n, scale, first, out),
                    2 => scores_for::<2>(q, chunks, d, n, scale, first, out),
                    3 => scores_for::<3>(q, chunks, d, n, scale, first, out),
                    _ => scores_for::<HEADS>(q, chunks, d, n, scale, first, out),
                }
            }
        }
    }

    /// Heads `first .. first + H`.
    ///
    /// # Safety
    /// As [`scores`].
    #[target_feature(enable = "avx512f,avx512vnni,fma")]
    unsafe fn scores_for<const H: usize>(
        q: &QuantizedQueries,
        chunks: &[Chunk<'_>],
        d: usize,
        n: usize,
        scale: f32,
        first: usize,
        out: &mut [f32],
    ) {
        let count = n.div_ceil(LANES);
        let (blocks, width) = (d / BLOCK, count * LANES);
        let words = &q.words[first * d / 4..][..H * d / 4];
        for (c, chunk) in chunks[..count].iter().enumerate() {
            if let Some(next) = chunks.get(c + AHEAD) {
                crate::kernels::prefetch::<u8, true>(next.keys);
                crate::kernels::prefetch::<f32, true>(next.key_scales);
                crate::kernels::prefetch::<i8, false>(next.values);
                crate::kernels::prefetch::<f32, false>(next.value_scales);
            }
            let mut sums = [_mm512_setzero_ps(); H];
            // Two blocks at a time: 2·H independent integer sums keep the VNNI unit busy (one chain
            // waits out each instruction's latency).
            for pair in (0..blocks).step_by(2) {
                let mut dots = [[_mm512_setzero_si512(); 2]; H];
                for g in 0..BLOCK / 4 {
                    for half in 0..2 {
                        let group = (pair + half) * BLOCK / 4 + g;
                        // SAFETY: the chunk holds `d / 4` rows of 64 key bytes and `group < d / 4`.
                        let keys = unsafe { _mm512_loadu_si512(chunk.keys.as_ptr().add(group * 4 * LANES).cast()) };
                        for h in 0..H {
                            dots[h][half] =
                                _mm512_dpbusd_epi32(dots[h][half], keys, _mm512_set1_epi32(words[h * d / 4 + group]));
                        }
                    }
                }
                for half in 0..2 {
                    let b = pair + half;
                    // SAFETY: the chunk holds `blocks · 16` key scales.
                    let key_scales = unsafe { _mm512_loadu_ps(chunk.key_scales.as_ptr().add(b * LANES)) };
                    for h in 0..H {
                        let at = (first + h) * blocks + b;
                        let dot = _mm512_sub_epi32(dots[h][half], _mm512_set1_epi32(q.corrections[at]));
                        let weight = _mm512_mul_ps(key_scales, _mm512_set1_ps(q.scales[at]));
                        sums[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), weight, sums[h]);
                    }
                }
            }
            let base = c * LANES;
            let valid = (n - base).min(LANES);
            let mask: __mmask16 = if valid == LANES { 0xFFFF } else { (1u16 << valid) - 1 };
            for h in 0..H {
                let s = _mm512_mask_blend_ps(
                    mask,
                    _mm512_set1_ps(f32::NEG_INFINITY),
                    _mm512_mul_ps(sums[h], _mm512_set1_ps(scale)),
                );
                let row = &mut out[(first + h) * width + base..][..LANES];
                // SAFETY: `row` holds 16 values.
                unsafe { _mm512_storeu_ps(row.as_mut_ptr(), s) };
            }
        }
    }

    /// [`super::exp_rows`], 16 lanes per register.
    ///
    /// # Safety
    /// The CPU has AVX-512F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn exp_rows(rows: &mut [f32], width: usize, n: usize, stats: &mut [f32]) {
        for (row, stats) in rows.chunks_exact_mut(width).zip(stats.chunks_exact_mut(2)) {
            let max = row[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let max_lanes = _mm512_set1_ps(max);
            let mut sums = _mm512_setzero_ps();
            for chunk in row.chunks_exact_mut(LANES) {
                // SAFETY: `chunk` holds 16 values.
                unsafe {
                    let e =
                        crate::kernels::attention::x86::expf(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), max_lanes));
                    sums = _mm512_add_ps(sums, e);
                    _mm512_storeu_ps(chunk.as_mut_ptr(), e);
                }
            }
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds 16 values.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sums) };
            stats[0] = max;
            stats[1] = ops::reduce_lanes(&lanes);
        }
    }

    /// [`super::integer_weights`], 16 positions per register.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn integer_weights(exps: &[f32], chunks: &[Chunk<'_>], d: usize, into: &mut IntegerWeights) {
        let width = into.width;
        let (heads, blocks) = (exps.len() / width, d / BLOCK);
        let IntegerWeights { weights, scales, .. } = into;
        for h in 0..heads {
            for b in 0..blocks {
                // SAFETY: `exps` holds `width` values per head and every chunk `blocks · 16` scales.
                let weight = |c: usize| unsafe {
                    let e = _mm512_loadu_ps(exps.as_ptr().add(h * width + c * LANES));
                    _mm512_mul_ps(e, _mm512_loadu_ps(chunks[c].value_scales.as_ptr().add(b * LANES)))
                };
                let mut max = _mm512_setzero_ps();
                for c in 0..width / LANES {
                    max = _mm512_max_ps(max, weight(c));
                }
                let (scale, inverse) = weight_scale(_mm512_reduce_max_ps(max));
                scales[h * blocks + b] = scale;
                let row = &mut weights[(h * blocks + b) * width..][..width];
                for c in 0..width / LANES {
                    let scaled = _mm512_mul_ps(weight(c), _mm512_set1_ps(inverse));
                    let rounded = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(scaled);
                    let clamped = _mm512_min_epi32(rounded, _mm512_set1_epi32(WEIGHT_MAX as i32));
                    // SAFETY: `row` holds `width` values, a multiple of 16.
                    unsafe {
                        _mm256_storeu_si256(row.as_mut_ptr().add(c * LANES).cast(), _mm512_cvtepi32_epi16(clamped))
                    };
                }
            }
        }
    }

    /// Value dimensions one pass keeps in registers, per head: 4 registers of 16.
    const DIMS: usize = 4 * LANES;

    /// [`super::weighted_values`] with 16 dimensions per register and two positions per 16-bit VNNI
    /// instruction, in passes of 64 dimensions and up to [`HEADS`] heads.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW and AVX-512 VNNI; `d` is a multiple of 64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn weighted_values(w: &IntegerWeights, chunks: &[Chunk<'_>], d: usize, n: usize, out: &mut [f32]) {
        let heads = out.len() / d;
        for first in (0..heads).step_by(HEADS) {
            for first_dim in (0..d).step_by(DIMS) {
                // SAFETY: same contract.
                unsafe {
                    match (heads - first).min(HEADS) {
                        1 => values_for::<1>(w, chunks, d, n, first, first_dim, out),
                        2 => values_for::<2>(w, chunks, d, n, first, first_dim, out),
                        3 => values_for::<3>(w, chunks, d, n, first, first_dim, out),
                        _ => values_for::<HEADS>(w, chunks, d, n, first, first_dim, out),
                    }
                }
            }
        }
    }

    /// Heads `first .. first + H`, dimensions `first_dim .. first_dim + 64`.
    ///
    /// # Safety
    /// As [`weighted_values`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn values_for<const H: usize>(
        w: &IntegerWeights,
        chunks: &[Chunk<'_>],
        d: usize,
        n: usize,
        first: usize,
        first_dim: usize,
        out: &mut [f32],
    ) {
        let blocks = d / BLOCK;
        let first_block = first_dim / BLOCK;
        let row =
            |h: usize, half: usize| &w.weights[((first + h) * blocks + first_block + half) * w.width..][..w.width];
        let rows: [[&[i16]; 2]; H] = std::array::from_fn(|h| [row(h, 0), row(h, 1)]);
        let mut acc = [[_mm512_setzero_si512(); DIMS / LANES]; H];
        // Pairs of positions; a pair past `n` has weight 0 for its second position.
        for pair in 0..n.div_ceil(2) {
            let (c, in_chunk) = (pair * 2 / LANES, pair % (LANES / 2));
            if in_chunk == 0
                && let Some(next) = chunks.get(c + 2)
            {
                crate::kernels::prefetch::<i8, true>(next.values);
            }
            let values = &chunks[c].values[(in_chunk * d + first_dim) * 2..][..DIMS * 2];
            for j in 0..DIMS / LANES {
                // SAFETY: `values` holds 128 bytes: 64 dimensions of two positions.
                let v = _mm512_cvtepi8_epi16(unsafe { _mm256_loadu_si256(values.as_ptr().add(j * 2 * LANES).cast()) });
                let half = j * LANES / BLOCK;
                for h in 0..H {
                    // SAFETY: `width` is even and covers every pair, so two weights are readable here.
                    let pair_weights = unsafe { rows[h][half].as_ptr().add(pair * 2).cast::<i32>().read_unaligned() };
                    acc[h][j] = _mm512_dpwssd_epi32(acc[h][j], v, _mm512_set1_epi32(pair_weights));
                }
            }
        }
        for h in 0..H {
            for j in 0..DIMS / LANES {
                let scale = w.scales[(first + h) * blocks + first_block + j * LANES / BLOCK];
                let o = &mut out[(first + h) * d + first_dim + j * LANES..][..LANES];
                let sums = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[h][j]), _mm512_set1_ps(scale));
                // SAFETY: `o` holds 16 values.
                unsafe { _mm512_storeu_ps(o.as_mut_ptr(), sums) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 32;

    /// A cache of `n` positions of one KV head with varied keys and values; also returns them in f32.
    fn cache(d: usize, n: usize, seed: usize) -> (Vec<Q8Page>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let value = |i: usize| (((i + seed) * 7919 % 4001) as f32 / 4001.0 - 0.5) * 4.0;
        let keys: Vec<Vec<f32>> = (0..n).map(|p| (0..d).map(|i| value(p * 131 + i)).collect()).collect();
        let values: Vec<Vec<f32>> = (0..n).map(|p| (0..d).map(|i| value(p * 71 + i * 3 + 5)).collect()).collect();
        let mut pages = vec![Q8Page::new(1, d, PAGE); n.div_ceil(PAGE)];
        for p in 0..n {
            pages[p / PAGE].store(0, PAGE, p % PAGE, &keys[p], &values[p]);
        }
        (pages, keys, values)
    }

    /// Attention in f64 on the unrounded keys and values.
    fn exact(query: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>], scale: f32) -> Vec<f32> {
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| k.iter().zip(query).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>() * f64::from(scale))
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..query.len())
            .map(|dim| (weights.iter().zip(values).map(|(w, v)| w * f64::from(v[dim])).sum::<f64>() / total) as f32)
            .collect()
    }

    fn queries(d: usize, heads: usize) -> Vec<f32> {
        (0..heads * d).map(|i| (i as f32 * 0.37).sin() * 2.0).collect()
    }

    fn run(pages: &[Q8Page], d: usize, n: usize, q: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; q.len()];
        attend_q8(q, Q8Head { pages, kv: 0, head_dim: d, page: PAGE }, n, 0.125, &mut out);
        out
    }

    #[test]
    fn stays_close_to_exact_attention() {
        let d = 64;
        for n in [1usize, 15, 16, 17, 100, 300, 700] {
            let (pages, keys, values) = cache(d, n, n);
            let q = queries(d, 1);
            let got = run(&pages, d, n, &q);
            let want = exact(&q, &keys, &values, 0.125);
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            // Values lie in [-2, 2]; 8-bit rounding of keys, values and query moves outputs by ~1%.
            assert!(worst < 0.03, "n={n}: worst deviation {worst}");
        }
    }

    #[test]
    fn one_position_returns_its_value_to_within_rounding() {
        let d = 64;
        let (pages, _, values) = cache(d, 1, 3);
        let got = run(&pages, d, 1, &queries(d, 1));
        for (dim, (a, b)) in got.iter().zip(&values[0]).enumerate() {
            assert!((a - b).abs() <= 2.0 / 127.0, "dim {dim}: {a} vs {b}");
        }
    }

    #[test]
    fn every_path_and_grouping_gives_the_same_bits() {
        let d = 128;
        // Over two spans, so the merge is covered too.
        let n = SPAN + 77;
        let heads = 5;
        let (pages, _, _) = cache(d, n, 11);
        let q = queries(d, heads);
        let together = run(&pages, d, n, &q);
        for h in 0..heads {
            let alone = run(&pages, d, n, &q[h * d..(h + 1) * d]);
            assert_eq!(&together[h * d..(h + 1) * d], alone.as_slice(), "head {h}");
        }
        // The plain path, span by span, against whichever path `attend_q8` took.
        let head = Q8Head { pages: &pages, kv: 0, head_dim: d, page: PAGE };
        let qq = QuantizedQueries::new(&q, d);
        let mut partials = vec![0.0f32; 2 * heads * partial_len(d)];
        for (span, partial) in partials.chunks_exact_mut(heads * partial_len(d)).enumerate() {
            let positions = span * SPAN..n.min((span + 1) * SPAN);
            let chunks: Vec<Chunk<'_>> =
                (positions.start / LANES..positions.end.div_ceil(LANES)).map(|c| head.chunk(c)).collect();
            let width = chunks.len() * LANES;
            let mut e = vec![0.0f32; heads * width];
            let (values, stats) = partial.split_at_mut(heads * d);
            scores(&qq, &chunks, d, positions.len(), 0.125, &mut e);
            exp_rows(&mut e, width, positions.len(), stats);
            let mut weights = IntegerWeights::default();
            weights.prepare(heads, d / BLOCK, width);
            integer_weights(&e, &chunks, d, &mut weights);
            weighted_values(&weights, &chunks, d, positions.len(), values);
        }
        let mut plain = vec![0.0f32; q.len()];
        combine(&partials, d, &mut plain);
        let same = plain.iter().zip(&together).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "plain and dispatched paths differ");
    }
}
