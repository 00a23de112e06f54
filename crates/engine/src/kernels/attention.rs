//! Attention for one query and one head, with llama.cpp's arithmetic: `kq = K·q` with f16 inputs,
//! `softmax(kq · scale)` with ggml's `expf`, `kqv = V·p` with f16 inputs, each product summed in 16 lanes
//! in the order the product's ggml kernel uses. An AVX-512 path (one register per 16 lanes) and a plain
//! path compute the same bits.

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

/// One KV head's cached keys and values, read in place: f16 bit patterns in pages of `page` positions,
/// each page `[KV, D, page]` for keys and for values (dimension-major, so 16 positions of one dimension
/// are contiguous). `page` is a multiple of 16.
#[derive(Debug, Clone, Copy)]
pub struct KvHead<'a> {
    pub pages: &'a [(Vec<u16>, Vec<u16>)],
    pub kv: usize,
    pub head_dim: usize,
    pub page: usize,
}

impl<'a> KvHead<'a> {
    /// Where positions `16·c .. 16·c + 16` live: that page's keys and values, and the offset of this
    /// head's first dimension in them. Computed once per chunk (it divides); [`Chunk::dim`] then only
    /// multiplies.
    #[inline(always)]
    fn chunk(&self, c: usize) -> Chunk<'a> {
        let per_page = self.page / LANES;
        let (k, v) = &self.pages[c / per_page];
        Chunk { k, v, first: self.kv * self.head_dim * self.page + (c % per_page) * LANES, page: self.page }
    }
}

/// 16 positions of one KV head, every dimension.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    k: &'a [u16],
    v: &'a [u16],
    first: usize,
    page: usize,
}

impl<'a> Chunk<'a> {
    /// This chunk's keys or values for every dimension, as one slice: with pages of 16 positions they
    /// are contiguous, and prefetching them hides the memory latency of the next chunk.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch(&self, values: bool, dims: usize) {
        let data = if values { self.v } else { self.k };
        let end = (self.first + (dims - 1) * self.page + LANES).min(data.len());
        let block = &data[self.first.min(end)..end];
        for line in block.chunks(32) {
            // SAFETY: a prefetch reads nothing architecturally; the address is inside `data`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
        }
    }

    /// Dimension `dim` of the 16 positions: keys, or values.
    #[inline(always)]
    fn dim(&self, values: bool, dim: usize) -> &'a [u16] {
        let at = self.first + dim * self.page;
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
mod x86 {
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
    fn expf(x: __m512) -> __m512 {
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
        let widen = |bits: &[u16]| -> __m512 {
            assert!(bits.len() >= LANES);
            // SAFETY: 16 f16 values (32 bytes) are readable at `bits`.
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(bits.as_ptr().cast()) })
        };
        let load = |s: &[f32], at: usize| -> __m512 {
            assert!(at + LANES <= s.len());
            // SAFETY: 16 values are readable at `at` (checked).
            unsafe { _mm512_loadu_ps(s.as_ptr().add(at)) }
        };
        let mut q = vec![0.0f32; heads * d];
        for c in (0..heads * d).step_by(LANES) {
            // SAFETY: `q` holds `heads · d` values, a multiple of 16.
            unsafe { _mm512_storeu_ps(q.as_mut_ptr().add(c), round_f16(load(queries, c))) };
        }

        // kq for 16 positions at a time: register `lane` collects lane `lane` of every position's sum,
        // over dimensions `lane + 16·j`, four values of `j` per pass. Each chunk's keys are read from
        // memory once; the group's other heads find them in cache.
        const AHEAD: usize = 2;
        let chunks = n.div_ceil(LANES);
        let width = chunks * LANES;
        let mut scores = vec![0.0f32; heads * width];
        let mut maxes = vec![_mm512_set1_ps(f32::NEG_INFINITY); heads];
        for c in 0..chunks {
            let base = c * LANES;
            let chunk = cache.chunk(c);
            if c + AHEAD < chunks {
                cache.chunk(c + AHEAD).prefetch(false, d);
            }
            for (h, max) in maxes.iter_mut().enumerate() {
                let qh = &q[h * d..(h + 1) * d];
                let mut rows = [_mm512_setzero_ps(); LANES];
                for (lane, row) in rows.iter_mut().enumerate() {
                    let mut acc = [_mm512_setzero_ps(); 4];
                    for j0 in (0..d / LANES).step_by(4) {
                        for s in 0..4 {
                            let dim = (j0 + s) * LANES + lane;
                            let slot = if TILED { 0 } else { s };
                            acc[slot] =
                                _mm512_fmadd_ps(widen(chunk.dim(false, dim)), _mm512_set1_ps(qh[dim]), acc[slot]);
                        }
                    }
                    *row = if TILED { acc[0] } else { fold(&acc) };
                }
                let t8: [__m512; 8] = std::array::from_fn(|i| _mm512_add_ps(rows[i + 8], rows[i]));
                let t4: [__m512; 4] = std::array::from_fn(|i| _mm512_add_ps(t8[i + 4], t8[i]));
                let dots = _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
                let valid = (n - base).min(LANES);
                let mask: __mmask16 = if valid == LANES { 0xFFFF } else { (1u16 << valid) - 1 };
                let s = _mm512_mask_blend_ps(
                    mask,
                    _mm512_set1_ps(f32::NEG_INFINITY),
                    _mm512_mul_ps(dots, _mm512_set1_ps(scale)),
                );
                *max = _mm512_max_ps(*max, s);
                // SAFETY: `scores` holds `heads · width` values.
                unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(h * width + base), s) };
            }
        }

        for (h, max) in maxes.iter().enumerate() {
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(*max));
            let row = h * width;
            let mut sum = 0.0f64;
            for c in 0..chunks {
                let e = expf(_mm512_sub_ps(load(&scores, row + c * LANES), max));
                sum += f64::from(reduce(e));
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(row + c * LANES), e) };
            }
            let inv = _mm512_set1_ps((1.0 / sum) as f32);
            for c in 0..chunks {
                let p = round_f16(_mm512_mul_ps(load(&scores, row + c * LANES), inv));
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(row + c * LANES), p) };
            }
        }

        // kqv: per head and dimension, a dot product over positions; chunk `c` feeds accumulator `c % 4`
        // (vec_dot) or the only one (tinyBLAS). Chunk by chunk, each value widened once for the group.
        let mut acc = vec![[_mm512_setzero_ps(); 4]; heads * d];
        let mut p = vec![_mm512_setzero_ps(); heads];
        for c in 0..chunks {
            let chunk = cache.chunk(c);
            if c + AHEAD < chunks {
                cache.chunk(c + AHEAD).prefetch(true, d);
            }
            for (h, ph) in p.iter_mut().enumerate() {
                *ph = load(&scores, h * width + c * LANES);
            }
            let slot = if TILED { 0 } else { c % 4 };
            for dim in 0..d {
                let v = widen(chunk.dim(true, dim));
                for (h, ph) in p.iter().enumerate() {
                    let a = &mut acc[h * d + dim][slot];
                    *a = _mm512_fmadd_ps(v, *ph, *a);
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = reduce(if TILED { a[0] } else { fold(a) });
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
            assert_eq!(*o, f16::from_bits(cache_pages[0].1[dim * 32]).to_f32(), "dim {dim}");
        }
    }
}
