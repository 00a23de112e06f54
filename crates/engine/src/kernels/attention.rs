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

/// Which cached positions a query sees: the first `n`, in rows of `stride` (a multiple of 16).
#[derive(Debug, Clone, Copy)]
pub struct Positions {
    pub stride: usize,
    pub n: usize,
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
pub fn attend(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    seen: Positions,
    scale: f32,
    product: F16Product,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked once); the slices are as `portable` documents them.
        unsafe { x86::attend(query, keys, values, seen, scale, product, out) };
        return;
    }
    portable(query, keys, values, seen, scale, product, out);
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
/// `keys` and `values` are `[D][stride]`; `out` gets the head's `D` outputs.
// Lane and position indices address several arrays in lockstep; plain loops vectorize best here.
#[allow(clippy::needless_range_loop)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c"))]
fn portable(
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
        // Lane `lane` of each position's dot product sums dimensions `lane + 16·j`: in one accumulator
        // (tinyBLAS) or in accumulator `j % 4` (vec_dot), folded before the lanes are reduced. One lane
        // at a time for all 16 positions, so the accumulators stay in registers.
        let mut lanes = [[0.0f32; LANES]; LANES];
        for (lane, folded) in lanes.iter_mut().enumerate() {
            let mut acc = [[0.0f32; LANES]; 4];
            let slots = if product == F16Product::Tiled { 1 } else { 4 };
            for j in 0..d / LANES {
                let dim = j * LANES + lane;
                let (k, qv) = (&keys[dim * stride + base..dim * stride + base + LANES], q[dim]);
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
            let base = c * LANES;
            for (dd, a) in acc.iter_mut().enumerate().take(o.len()) {
                let dim = group * DIMS + dd;
                let vc = &values[dim * stride + base..dim * stride + base + LANES];
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
    /// The CPU has AVX-512F, F16C and FMA; `keys` and `values` hold `D × stride` values with `stride`
    /// at least `n` rounded up to 16; `D = query.len() = out.len()` is a multiple of 16.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub unsafe fn attend(
        query: &[f32],
        keys: &[f32],
        values: &[f32],
        seen: Positions,
        scale: f32,
        product: F16Product,
        out: &mut [f32],
    ) {
        let (d, stride, n) = (query.len(), seen.stride, seen.n);
        let tiled = product == F16Product::Tiled;
        let load = |s: &[f32], at: usize| -> __m512 {
            debug_assert!(at + LANES <= s.len());
            // SAFETY: callers index whole 16-value chunks inside `s` (see the function's contract).
            unsafe { _mm512_loadu_ps(s.as_ptr().add(at)) }
        };
        let mut q = vec![0.0f32; d];
        for c in (0..d).step_by(LANES) {
            // SAFETY: `q` holds `d` values, a multiple of 16.
            unsafe { _mm512_storeu_ps(q.as_mut_ptr().add(c), round_f16(load(query, c))) };
        }

        // kq for 16 positions at a time: register `lane` collects lane `lane` of every position's sum.
        let chunks = n.div_ceil(LANES);
        let mut scores = vec![0.0f32; chunks * LANES];
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in 0..chunks {
            let base = c * LANES;
            let mut rows = [_mm512_setzero_ps(); LANES];
            for (lane, row) in rows.iter_mut().enumerate() {
                let mut acc = [_mm512_setzero_ps(); 4];
                for j in 0..d / LANES {
                    let dim = j * LANES + lane;
                    let slot = if tiled { 0 } else { j % 4 };
                    acc[slot] = _mm512_fmadd_ps(load(keys, dim * stride + base), _mm512_set1_ps(q[dim]), acc[slot]);
                }
                *row = if tiled { acc[0] } else { fold(&acc) };
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
            max = _mm512_max_ps(max, s);
            // SAFETY: `scores` holds `chunks · 16` values.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(base), s) };
        }

        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = 0.0f64;
        for c in 0..chunks {
            let e = expf(_mm512_sub_ps(load(&scores, c * LANES), max));
            sum += f64::from(reduce(e));
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(c * LANES), e) };
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        for c in 0..chunks {
            let p = round_f16(_mm512_mul_ps(load(&scores, c * LANES), inv));
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(c * LANES), p) };
        }

        // kqv, four dimensions at a time so their accumulation chains overlap.
        const DIMS: usize = 4;
        for first in (0..d).step_by(DIMS) {
            let dims = DIMS.min(d - first);
            let mut acc = [[_mm512_setzero_ps(); 4]; DIMS];
            for c in 0..chunks {
                let p = load(&scores, c * LANES);
                let slot = if tiled { 0 } else { c % 4 };
                for (dd, a) in acc.iter_mut().enumerate().take(dims) {
                    a[slot] = _mm512_fmadd_ps(load(values, (first + dd) * stride + c * LANES), p, a[slot]);
                }
            }
            for (dd, a) in acc.iter().enumerate().take(dims) {
                out[first + dd] = reduce(if tiled { a[0] } else { fold(a) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        // f16-exact values, as the cache holds.
        (0..len).map(|i| f16::from_f32((((i + seed) * 7919 % 4001) as f32 / 4001.0 - 0.5) * 4.0).to_f32()).collect()
    }

    #[test]
    fn both_paths_give_the_same_bits() {
        #[cfg(target_arch = "x86_64")]
        if !avx512() {
            return;
        }
        let d = 64;
        for n in [1usize, 15, 16, 17, 100, 300] {
            let stride = n.div_ceil(LANES) * LANES;
            let (keys, values, query) = (data(d * stride, 1), data(d * stride, 2), data(d, 3));
            for product in [F16Product::Tiled, F16Product::Vector] {
                let seen = Positions { stride, n };
                let mut expected = vec![0.0f32; d];
                portable(&query, &keys, &values, seen, 0.125, product, &mut expected);
                let mut got = vec![0.0f32; d];
                attend(&query, &keys, &values, seen, 0.125, product, &mut got);
                let same = got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n={n} {product:?}: {got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn one_position_returns_its_value() {
        let d = 64;
        let (keys, values, query) = (data(d * LANES, 5), data(d * LANES, 6), data(d, 7));
        let mut out = vec![0.0f32; d];
        attend(&query, &keys, &values, Positions { stride: LANES, n: 1 }, 0.125, F16Product::Vector, &mut out);
        for (dim, o) in out.iter().enumerate() {
            assert_eq!(*o, values[dim * LANES], "dim {dim}");
        }
    }
}
