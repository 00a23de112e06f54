//! Attention for one query and one head, with llama.cpp's arithmetic: `kq = K·q` with f16 inputs,
//! `softmax(kq · scale)` with ggml's `expf`, `kqv = V·p` with f16 inputs, each product summed in 16 lanes
//! in the order the product's ggml kernel uses. An AVX-512 path (one register per 16 lanes) and a plain
//! path compute the same bits.
//!
//! Why one file over 500 lines: the plain path and the SIMD path of each product sit side by side, so a
//! reader (and the tests at the end, which compare them bit for bit) can check one against the other.

use half::f16;
use multiversion::multiversion;

use super::ops::{self, LANES};

/// How ggml sums an f16 matrix product, which depends on the number of tokens in the call: llama.cpp
/// hands products with two or more columns to llamafile's tinyBLAS and single columns to
/// `ggml_vec_dot_f16`, and the two accumulate in different orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F16Product {
    /// tinyBLAS: one 16-lane accumulator, fed 16 elements at a time.
    Tiled,
    /// `ggml_vec_dot_f16`: four 16-lane accumulators fed in rotation, folded pairwise at the end.
    Vector,
}

/// One KV head's cached keys and values, read in place: f16 bit patterns in pages of `page` positions.
/// Each page holds `[KV, page / 16, D, 16]` for keys and for values: a KV head's positions are one
/// contiguous run per page, in chunks of 16 positions, and a chunk holds each dimension's 16 positions
/// side by side, which is the order attention reads them in. `page` is a multiple of 16.
#[derive(Debug, Clone, Copy)]
pub struct KvHead<'a> {
    /// The cache's pages, `(keys, values)` each.
    pub pages: &'a [(Vec<u16>, Vec<u16>)],
    /// Which KV head of every page this view reads.
    pub kv: usize,
    /// Dimensions per head (`D`).
    pub head_dim: usize,
    /// Positions per page.
    pub page: usize,
}

impl<'a> KvHead<'a> {
    /// Positions `16·c .. 16·c + 16`: every dimension's keys and values, as two slices of `D · 16`
    /// values (dimension `dim` at `16·dim`). Bounds are checked here, once per chunk.
    #[inline(always)]
    fn chunk(&self, c: usize) -> Chunk<'a> {
        let per_page = self.page / LANES;
        let len = self.head_dim * LANES;
        let first = (self.kv * per_page + c % per_page) * len;
        let (k, v) = &self.pages[c / per_page];
        Chunk { k: &k[first..first + len], v: &v[first..first + len] }
    }

    /// Where position `position`'s dimension `dim` lives in its page (see [`KvHead`]): the page, and the
    /// index within it. The cache writes through this, so writer and readers share one layout.
    pub fn slot(kv: usize, head_dim: usize, page: usize, position: usize, dim: usize) -> (usize, usize) {
        let (in_page, lane) = (position % page, position % LANES);
        let chunk = kv * (page / LANES) + in_page / LANES;
        (position / page, (chunk * head_dim + dim) * LANES + lane)
    }
}

/// 16 positions of one KV head, every dimension: `D · 16` keys and as many values.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    k: &'a [u16],
    v: &'a [u16],
}

impl<'a> Chunk<'a> {
    /// Dimension `dim` of the 16 positions: keys, or values.
    #[inline(always)]
    fn dim(&self, values: bool, dim: usize) -> &'a [u16] {
        let at = dim * LANES;
        &(if values { self.v } else { self.k })[at..at + LANES]
    }
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
/// `softmax(kq · scale)` and `kqv = V·p` (f16 inputs) for one head, reading the cache's f16 pages in place;
/// each step below works on 16 positions at once.
///
/// `queries` holds the queries of every head that shares this KV head (grouped-query attention), `D`
/// values each, and `out` their outputs: the cache is read once for the group. The queries see the
/// first `n` positions, which the cache must hold.
pub fn attend(queries: &[f32], cache: KvHead<'_>, n: usize, scale: f32, product: F16Product, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F, F16C and FMA (checked once); every chunk read is bounds-checked.
        unsafe { x86::attend(queries, cache, n, scale, product, out) };
        return;
    }
    let d = cache.head_dim;
    for (query, o) in queries.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        portable(query, cache, n, scale, product, o);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        std::env::var("LLAMAGATE_KERNELS").map_or(true, |v| v != "portable" && v != "avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("fma")
    })
}

/// The same computation in plain Rust (vectorized by the compiler where it can): any CPU.
// Lane and position indices address several arrays in lockstep; plain loops vectorize best here.
#[allow(clippy::needless_range_loop)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
fn portable(query: &[f32], cache: KvHead<'_>, n: usize, scale: f32, product: F16Product, out: &mut [f32]) {
    let d = query.len();
    let widen = |bits: &[u16]| -> Lanes { std::array::from_fn(|i| f16::from_bits(bits[i]).to_f32()) };
    let q: Vec<f32> = query.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
    let chunks = n.div_ceil(LANES);
    let mut scores = vec![f32::NEG_INFINITY; chunks * LANES];
    for c in 0..chunks {
        let base = c * LANES;
        let chunk = cache.chunk(c);
        // Lane `lane` of each position's dot product sums dimensions `lane + 16·j`: in one accumulator
        // (tinyBLAS) or in accumulator `j % 4` (vec_dot), folded before the lanes are reduced. One lane
        // at a time for all 16 positions, so the accumulators stay in registers.
        let mut lanes = [[0.0f32; LANES]; LANES];
        for (lane, folded) in lanes.iter_mut().enumerate() {
            let mut acc = [[0.0f32; LANES]; 4];
            let slots = if product == F16Product::Tiled { 1 } else { 4 };
            for j in 0..d / LANES {
                let dim = j * LANES + lane;
                let (k, qv) = (widen(chunk.dim(false, dim)), q[dim]);
                let slot = &mut acc[j % slots];
                for p in 0..LANES {
                    slot[p] = k[p].mul_add(qv, slot[p]);
                }
            }
            *folded = if product == F16Product::Tiled { acc[0] } else { fold(&acc) };
        }
        let dots = reduce_rows(&lanes);
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
    // 0 (tinyBLAS) or `c % 4` (vec_dot). Positions past `n` have probability 0 and add nothing. Four
    // dimensions at a time, so four accumulation chains overlap.
    const DIMS: usize = 4;
    let slots = if product == F16Product::Tiled { 1 } else { 4 };
    for (group, o) in out.chunks_mut(DIMS).enumerate() {
        let mut acc = [[[0.0f32; LANES]; 4]; DIMS];
        for (c, pc) in p.chunks_exact(LANES).enumerate() {
            let chunk = cache.chunk(c);
            for (dd, a) in acc.iter_mut().enumerate().take(o.len()) {
                let dim = group * DIMS + dd;
                let vc = widen(chunk.dim(true, dim));
                let slot = &mut a[c % slots];
                for lane in 0..LANES {
                    slot[lane] = vc[lane].mul_add(pc[lane], slot[lane]);
                }
            }
        }
        for (value, a) in o.iter_mut().zip(&acc) {
            *value = match product {
                F16Product::Tiled => ops::reduce_lanes(&a[0]),
                F16Product::Vector => ops::reduce_lanes(&fold(a)),
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Lane, head and dimension indices address several arrays in lockstep.
#[allow(clippy::needless_range_loop)]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// The 16 lanes summed in GCC's `_mm512_reduce_add_ps` order.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn reduce(v: __m512) -> f32 {
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds 16 f32.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
        ops::reduce_lanes(&lanes)
    }

    /// `(a0 + a2) + (a1 + a3)`: `ggml_vec_dot_f16`'s fold.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fold(a: &[__m512; 4]) -> __m512 {
        _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]))
    }

    /// Rounds 16 values to f16 and back (round to nearest even, as ggml converts).
    #[target_feature(enable = "avx512f,f16c")]
    #[inline]
    fn round_f16(v: __m512) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
    }

    /// ggml's AVX-512 `ggml_v_expf`, instruction for instruction.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    pub(in crate::kernels) fn expf(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4B40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3FB8_AA3B), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(0x35BF_BE8E), _mm512_fnmadd_ps(n, c(0x3F31_7200), x));
        let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3C07_2010), b, c(0x3D2B_9F17)),
                u,
                _mm512_fmadd_ps(c(0x3E2A_AF33), b, c(0x3EFF_FEDB)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3F7F_FFF6), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        if big == 0 {
            return res;
        }
        let zero = _mm512_setzero_ps();
        let alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero), _mm512_set1_ps(f32::INFINITY), zero);
        _mm512_mask_blend_ps(big, res, alt)
    }

    /// [`super::attend`] with one AVX-512 register per 16 lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512F, F16C and FMA; `D` is a multiple of 64 and `queries` and `out` hold whole
    /// heads of `D` values.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub unsafe fn attend(
        queries: &[f32],
        cache: KvHead<'_>,
        n: usize,
        scale: f32,
        product: F16Product,
        out: &mut [f32],
    ) {
        // SAFETY: same contract; the constant makes every accumulator index static, so they stay in
        // registers.
        match product {
            F16Product::Tiled => unsafe { attend_with::<true>(queries, cache, n, scale, out) },
            F16Product::Vector => unsafe { attend_with::<false>(queries, cache, n, scale, out) },
        }
    }

    /// 16 f16 values at `p`, widened.
    ///
    /// # Safety
    /// 16 values are readable at `p`.
    #[target_feature(enable = "avx512f,f16c")]
    #[inline]
    unsafe fn widen(p: *const u16) -> __m512 {
        // SAFETY: as the caller promises.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
    }

    /// [`attend`] for one summation order: `TILED` (tinyBLAS, one accumulator) or not (vec_dot, four
    /// accumulators fed in rotation). Loops over accumulators run to constant bounds, so the compiler
    /// unrolls them and keeps the accumulators in registers.
    ///
    /// # Safety
    /// As [`attend`]; `D` is a multiple of 64.
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn attend_with<const TILED: bool>(
        queries: &[f32],
        cache: KvHead<'_>,
        n: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let d = cache.head_dim;
        let heads = queries.len() / d;
        assert!(d.is_multiple_of(4 * LANES) && out.len() == heads * d, "attention shapes");
        let mut q = vec![0.0f32; heads * d];
        for c in (0..heads * d).step_by(LANES) {
            // SAFETY: `queries` and `q` hold `heads · d` values, a multiple of 16.
            unsafe { _mm512_storeu_ps(q.as_mut_ptr().add(c), round_f16(_mm512_loadu_ps(queries.as_ptr().add(c)))) };
        }
        let chunks = n.div_ceil(LANES);
        // Every chunk's slices, bounds-checked once; the loops below then read through raw pointers.
        let parts: Vec<Chunk<'_>> = (0..chunks).map(|c| cache.chunk(c)).collect();

        let width = chunks * LANES;
        // Every value of `scores` and `partial` is written before it is read, so the buffers are reused
        // as they are, only grown.
        let mut scratch = SCRATCH.take();
        scratch.scores.resize(scratch.scores.len().max(heads * width), 0.0);
        let scores = &mut scratch.scores[..heads * width];
        let mut maxes = vec![_mm512_set1_ps(f32::NEG_INFINITY); heads];
        for first_head in (0..heads).step_by(KQ_HEADS) {
            let pass = KqPass { parts: &parts, q: &q, d, n, scale, width, first_head, prefetch: first_head == 0 };
            let scores = &mut scores[first_head * width..];
            let maxes = &mut maxes[first_head..];
            // SAFETY: the CPU has AVX-512F, F16C and FMA (this function's contract); `d` is a multiple
            // of 64.
            unsafe {
                match (heads - first_head).min(KQ_HEADS) {
                    1 => pass.run::<1, TILED>(scores, maxes),
                    2 => pass.run::<2, TILED>(scores, maxes),
                    3 => pass.run::<3, TILED>(scores, maxes),
                    _ => pass.run::<KQ_HEADS, TILED>(scores, maxes),
                }
            }
        }

        for (h, max) in maxes.iter().enumerate() {
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(*max));
            let row = &mut scores[h * width..(h + 1) * width];
            let mut sum = 0.0f64;
            for chunk in row.chunks_exact_mut(LANES) {
                // SAFETY: `chunk` holds 16 values.
                let e = expf(_mm512_sub_ps(unsafe { _mm512_loadu_ps(chunk.as_ptr()) }, max));
                sum += f64::from(reduce(e));
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), e) };
            }
            let inv = _mm512_set1_ps((1.0 / sum) as f32);
            for chunk in row.chunks_exact_mut(LANES) {
                // SAFETY: as above.
                unsafe {
                    _mm512_storeu_ps(chunk.as_mut_ptr(), round_f16(_mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), inv)))
                };
            }
        }

        // kqv: per head and dimension, a dot product over positions; chunk `c` feeds accumulator `c % 4`
        // (vec_dot) or the only one (tinyBLAS). One pass per accumulator, block of dimensions and group
        // of up to three heads keeps every running sum in a register; the passes' results meet in
        // `partial`, accumulator by accumulator, and are folded in ggml's order at the end.
        let slots = if TILED { 1 } else { 4 };
        let needed = slots * heads * d;
        scratch.partial.resize(scratch.partial.len().max(needed), _mm512_setzero_ps());
        let partial = &mut scratch.partial[..needed];
        for first_head in (0..heads).step_by(KQV_HEADS) {
            let group = (heads - first_head).min(KQV_HEADS);
            for slot in 0..slots {
                for first_dim in (0..d).step_by(KQV_DIMS) {
                    let pass = KqvPass { parts: &parts, scores, width, first_head, first_dim, slot, slots };
                    let at = (slot * heads + first_head) * d + first_dim;
                    // SAFETY: the CPU has AVX-512F and F16C (this function's contract).
                    unsafe {
                        match group {
                            1 => pass.run::<1>(&mut partial[at..], d),
                            2 => pass.run::<2>(&mut partial[at..], d),
                            _ => pass.run::<KQV_HEADS>(&mut partial[at..], d),
                        }
                    }
                }
            }
        }
        for (h, o) in out.chunks_exact_mut(d).enumerate() {
            for (dim, value) in o.iter_mut().enumerate() {
                let acc = |slot: usize| partial[(slot * heads + h) * d + dim];
                *value = reduce(if TILED { acc(0) } else { fold(&[acc(0), acc(1), acc(2), acc(3)]) });
            }
        }
        SCRATCH.set(scratch);
    }

    /// Buffers attention reuses from call to call, one set per thread: a token makes hundreds of calls,
    /// and allocating their ~60 KB afresh each time cost page faults whenever the allocator had handed
    /// the memory back to the system in between.
    #[derive(Default)]
    struct Scratch {
        scores: Vec<f32>,
        partial: Vec<__m512>,
    }

    thread_local! {
        static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
    }

    /// Heads of one kq pass: 4 × 4 running sums and 4 widened keys, 20 of the 32 registers.
    const KQ_HEADS: usize = 4;
    /// Chunks ahead whose keys and values are fetched while the kq pass works on the current one.
    const AHEAD: usize = 2;

    /// One kq pass: every chunk's scores for heads `first_head .. + H`, each chunk's keys widened once
    /// for all of them.
    struct KqPass<'p, 'c> {
        parts: &'p [Chunk<'c>],
        /// Every head's query, rounded to f16.
        q: &'p [f32],
        d: usize,
        n: usize,
        scale: f32,
        width: usize,
        first_head: usize,
        /// Whether to fetch chunks ahead (the first pass does; later ones find them in cache).
        prefetch: bool,
    }

    impl KqPass<'_, '_> {
        /// Writes head `h`'s scaled scores (−∞ past `n`) to `scores[h · width ..]` and folds them into
        /// `maxes[h]`, for `h < H`.
        ///
        /// # Safety
        /// The CPU has AVX-512F, F16C and FMA; `d` is a multiple of 64.
        #[target_feature(enable = "avx512f,f16c,fma")]
        unsafe fn run<const H: usize, const TILED: bool>(&self, scores: &mut [f32], maxes: &mut [__m512]) {
            let d = self.d;
            let q = &self.q[self.first_head * d..][..H * d];
            let scores = &mut scores[..H * self.width];
            for (c, part) in self.parts.iter().enumerate() {
                if let Some(next) = self.parts.get(c + AHEAD).filter(|_| self.prefetch) {
                    crate::kernels::prefetch::<u16, true>(next.k);
                    crate::kernels::prefetch::<u16, false>(next.v);
                }
                let k = part.k.as_ptr();
                // Lane `lane` of every position's sum (dimensions `lane + 16·j`) per head, combined in
                // `_mm512_reduce_add_ps`'s tree as soon as both halves exist: lanes i and i + 8, then
                // those pairs i and i + 4, then (0 + 2) + (1 + 3). Only a few partial sums are live at
                // once, so all of them stay in registers.
                // SAFETY (all four): the CPU has this function's features; `k` is this chunk's keys.
                let pair = |i: usize| -> [__m512; H] {
                    let (low, high) = unsafe { (self.lane::<H, TILED>(k, q, i), self.lane::<H, TILED>(k, q, i + 8)) };
                    std::array::from_fn(|h| _mm512_add_ps(high[h], low[h]))
                };
                let quad = |i: usize| -> [__m512; H] {
                    let (low, high) = (pair(i), pair(i + 4));
                    std::array::from_fn(|h| _mm512_add_ps(high[h], low[h]))
                };
                let (t0, t2) = (quad(0), quad(2));
                let (t1, t3) = (quad(1), quad(3));
                let base = c * LANES;
                let valid = (self.n - base).min(LANES);
                let mask: __mmask16 = if valid == LANES { 0xFFFF } else { (1u16 << valid) - 1 };
                for h in 0..H {
                    let dots = _mm512_add_ps(_mm512_add_ps(t0[h], t2[h]), _mm512_add_ps(t1[h], t3[h]));
                    let s = _mm512_mask_blend_ps(
                        mask,
                        _mm512_set1_ps(f32::NEG_INFINITY),
                        _mm512_mul_ps(dots, _mm512_set1_ps(self.scale)),
                    );
                    maxes[h] = _mm512_max_ps(maxes[h], s);
                    let out = &mut scores[h * self.width + base..][..LANES];
                    // SAFETY: `out` holds 16 values.
                    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), s) };
                }
            }
        }

        /// Lane `lane` of head `h`'s sum for each of the 16 positions of the chunk at `k`, over
        /// dimensions `lane + 16·j`, folded in ggml's order, for `h < H`.
        ///
        /// # Safety
        /// As [`KqPass::run`]; `k` points at a chunk's `d · 16` keys and `q` holds `H · d` values.
        #[target_feature(enable = "avx512f,f16c,fma")]
        #[inline]
        unsafe fn lane<const H: usize, const TILED: bool>(&self, k: *const u16, q: &[f32], lane: usize) -> [__m512; H] {
            let d = self.d;
            let mut acc = [[_mm512_setzero_ps(); 4]; H];
            for j0 in (0..d / LANES).step_by(4) {
                for s in 0..4 {
                    let dim = (j0 + s) * LANES + lane;
                    let slot = if TILED { 0 } else { s };
                    // SAFETY: `dim < d`; the chunk holds `d · 16` keys.
                    let key = unsafe { widen(k.add(dim * LANES)) };
                    for h in 0..H {
                        // SAFETY: `q` holds `H · d` values.
                        let qv = _mm512_set1_ps(unsafe { *q.as_ptr().add(h * d + dim) });
                        acc[h][slot] = _mm512_fmadd_ps(key, qv, acc[h][slot]);
                    }
                }
            }
            std::array::from_fn(|h| if TILED { acc[h][0] } else { fold(&acc[h]) })
        }
    }

    /// Heads and dimensions of one kqv pass: 3 × 8 running sums, 24 of the 32 registers.
    const KQV_HEADS: usize = 3;
    const KQV_DIMS: usize = 8;

    /// One kqv pass: accumulator `slot` (chunks `slot, slot + slots, …`) of dimensions
    /// `first_dim .. + KQV_DIMS` for heads `first_head ..`.
    struct KqvPass<'p, 'c> {
        parts: &'p [Chunk<'c>],
        scores: &'p [f32],
        width: usize,
        first_head: usize,
        first_dim: usize,
        slot: usize,
        slots: usize,
    }

    impl KqvPass<'_, '_> {
        /// Runs the pass for `H` heads; head `h`'s sums go to `out[h · d ..]` (`d`: the head size).
        ///
        /// # Safety
        /// The CPU has AVX-512F and F16C.
        #[target_feature(enable = "avx512f,f16c,fma")]
        unsafe fn run<const H: usize>(&self, out: &mut [__m512], d: usize) {
            let mut acc = [[_mm512_setzero_ps(); KQV_DIMS]; H];
            for c in (self.slot..self.parts.len()).step_by(self.slots) {
                let p: [__m512; H] = std::array::from_fn(|h| {
                    let row = &self.scores[(self.first_head + h) * self.width + c * LANES..][..LANES];
                    // SAFETY: `row` holds 16 values.
                    unsafe { _mm512_loadu_ps(row.as_ptr()) }
                });
                let v = &self.parts[c].v[self.first_dim * LANES..][..KQV_DIMS * LANES];
                for dd in 0..KQV_DIMS {
                    // SAFETY: `v` holds `KQV_DIMS · 16` values.
                    let value = unsafe { widen(v.as_ptr().add(dd * LANES)) };
                    for h in 0..H {
                        acc[h][dd] = _mm512_fmadd_ps(value, p[h], acc[h][dd]);
                    }
                }
            }
            for h in 0..H {
                out[h * d..h * d + KQV_DIMS].copy_from_slice(&acc[h]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-head cache of `n` positions (rounded up to whole pages of 32) with varied f16 values.
    fn pages(d: usize, n: usize, seed: usize) -> Vec<(Vec<u16>, Vec<u16>)> {
        let page = 32;
        let value = |i: usize| f16::from_f32((((i + seed) * 7919 % 4001) as f32 / 4001.0 - 0.5) * 4.0).to_bits();
        (0..n.div_ceil(page))
            .map(|p| {
                let k = (0..d * page).map(|i| value(p * 7 + i)).collect();
                let v = (0..d * page).map(|i| value(p * 11 + i + 3)).collect();
                (k, v)
            })
            .collect()
    }

    fn query(d: usize) -> Vec<f32> {
        (0..d).map(|i| (i as f32 * 0.37).sin() * 2.0).collect()
    }

    #[test]
    fn both_paths_give_the_same_bits() {
        #[cfg(target_arch = "x86_64")]
        if !avx512() {
            return;
        }
        let d = 64;
        for n in [1usize, 15, 16, 17, 100, 300] {
            let cache_pages = pages(d, n, n);
            let cache = KvHead { pages: &cache_pages, kv: 0, head_dim: d, page: 32 };
            for product in [F16Product::Tiled, F16Product::Vector] {
                let mut expected = vec![0.0f32; d];
                portable(&query(d), cache, n, 0.125, product, &mut expected);
                let mut got = vec![0.0f32; d];
                attend(&query(d), cache, n, 0.125, product, &mut got);
                let same = got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n={n} {product:?}: {got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn a_group_of_heads_gives_what_each_head_gives_alone() {
        let d = 64;
        let n = 70;
        let cache_pages = pages(d, n, 9);
        let cache = KvHead { pages: &cache_pages, kv: 0, head_dim: d, page: 32 };
        let queries: Vec<f32> = (0..3 * d).map(|i| (i as f32 * 0.11).cos()).collect();
        for product in [F16Product::Tiled, F16Product::Vector] {
            let mut together = vec![0.0f32; 3 * d];
            attend(&queries, cache, n, 0.125, product, &mut together);
            for h in 0..3 {
                let mut alone = vec![0.0f32; d];
                attend(&queries[h * d..(h + 1) * d], cache, n, 0.125, product, &mut alone);
                assert_eq!(&together[h * d..(h + 1) * d], alone.as_slice(), "head {h} {product:?}");
            }
        }
    }

    #[test]
    fn one_position_returns_its_value() {
        let d = 64;
        let cache_pages = pages(d, 1, 5);
        let cache = KvHead { pages: &cache_pages, kv: 0, head_dim: d, page: 32 };
        let mut out = vec![0.0f32; d];
        attend(&query(d), cache, 1, 0.125, F16Product::Vector, &mut out);
        for (dim, o) in out.iter().enumerate() {
            assert_eq!(*o, f16::from_bits(cache_pages[0].1[dim * LANES]).to_f32(), "dim {dim}");
        }
    }
}
