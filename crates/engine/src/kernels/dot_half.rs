//! Dot products of 16-bit float weight rows (F16, BF16) with activation rows rounded to the same type,
//! `N` activation rows at a time.
//!
//! llama.cpp multiplies 16-bit weights by first rounding the activations to the weight's type
//! (`vec_dot_type` F16 or BF16: round to nearest even), then one of two kernels, by the number of
//! activation rows in the batch ([`HalfOrder`]) — and the summation order is what decides the last bits:
//! - one row (decode, and a prefill's last position): `ggml_vec_dot_f16` / `ggml_vec_dot_bf16`. F16: four
//!   16-lane accumulators over steps of 64 values, fused multiply-adds of the widened values, combined as
//!   `(s0 + s2) + (s1 + s3)`, the 16 lanes summed as `_mm512_reduce_add_ps` sums them ([`reduce16`]), values
//!   past the last multiple of 64 added in f64. BF16 (AVX512-BF16 build, `vdpbf16ps`): two 16-lane
//!   accumulators, one for each half of every 64 values, lane `l` adding the product of pair `l`'s odd
//!   element and then its even one (bf16 products are exact in f32), each summed by [`reduce16`] and the
//!   two sums added in f64.
//! - two rows or more: llamafile's tinyBLAS (`tinyBLAS<16, __m512, …>` for F16, `tinyBLAS<32, __m512,
//!   __m512bh, …>` for BF16): one 16-lane accumulator per output over steps of 16 values (F16: a fused
//!   multiply-add) or 32 values (BF16: a `vdpbf16ps`, odd then even), summed by [`reduce16`]. The tile
//!   shapes tinyBLAS picks do not change any output's order. It needs the row length to be a multiple of
//!   its step; otherwise llama.cpp falls back to the vector dot product, and so do we.
//!
//! These are the kernels llama.cpp's AVX-512 build runs (the build the fixtures come from); every path here
//! — AVX-512 (one register per 16 lanes), AVX2 (two), portable — computes those values bit for bit (the
//! tests check it). Not reproduced: `vdpbf16ps` treats denormal inputs as zero and flushes denormal sums,
//! which needs values below 1e-38 to matter.

use super::isa::Isa;

/// Bytes of one weight value in either 16-bit format.
pub const HALF_BYTES: usize = 2;

/// An activation rounded to f16 (the bits), as llama.cpp rounds activations for F16 weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct F16Bits(pub u16);

/// An activation rounded to bf16 (the bits), as llama.cpp rounds activations for BF16 weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16Bits(pub u16);

/// Which of llama.cpp's two kernels a product reproduces (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfOrder {
    /// `ggml_vec_dot_f16` / `ggml_vec_dot_bf16`: a batch of one activation row.
    Dot,
    /// tinyBLAS: a batch of [`TILED_MIN_ROWS`] rows or more.
    Tiled,
}

/// Activation rows from which llama.cpp multiplies 16-bit weights with tinyBLAS (`llamafile_sgemm` refuses
/// fewer).
pub const TILED_MIN_ROWS: usize = 2;

/// Values per tinyBLAS step for F16 (`__m512` of f32) and BF16 (`__m512bh`).
const F16_STEP: usize = 16;
const BF16_STEP: usize = 32;

/// Rounds `x` to f16 (round to nearest even, as F16C's `vcvtps2ph` and ggml's `ggml_cpu_fp32_to_fp16`).
pub fn round_row_f16(x: &[f32], out: &mut [F16Bits]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = F16Bits(half::f16::from_f32(*v).to_bits());
    }
}

/// Rounds `x` to bf16 (round to nearest even, as ggml's `ggml_cpu_fp32_to_bf16`).
pub fn round_row_bf16(x: &[f32], out: &mut [Bf16Bits]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = Bf16Bits(half::bf16::from_f32(*v).to_bits());
    }
}

/// `out[r][i] = w_rows[r] · acts[i]` for F16 weight rows (`2 · acts[i].len()` bytes each), summed in `order`.
pub fn f16<const R: usize, const N: usize>(
    isa: Isa,
    order: HalfOrder,
    w_rows: [&[u8]; R],
    acts: [&[F16Bits]; N],
    out: &mut [[f32; N]; R],
) {
    let n = check_lengths(&w_rows, &acts);
    let tiled = order == HalfOrder::Tiled && n.is_multiple_of(F16_STEP);
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU (both include AVX2, FMA and
        // F16C; the first AVX-512 F); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if tiled => unsafe { zmm::f16_tiled(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { zmm::f16_dot(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if tiled => unsafe { ymm::f16_tiled(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { ymm::f16_dot(w_rows, acts, out) },
        _ if tiled => portable::f16_tiled(w_rows, acts, out),
        _ => portable::f16_dot(w_rows, acts, out),
    }
}

/// `out[r][i] = w_rows[r] · acts[i]` for BF16 weight rows, summed in `order`.
pub fn bf16<const R: usize, const N: usize>(
    isa: Isa,
    order: HalfOrder,
    w_rows: [&[u8]; R],
    acts: [&[Bf16Bits]; N],
    out: &mut [[f32; N]; R],
) {
    let n = check_lengths(&w_rows, &acts);
    let tiled = order == HalfOrder::Tiled && n.is_multiple_of(BF16_STEP);
    match isa {
        // SAFETY: as in `f16`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if tiled => unsafe { zmm::bf16_tiled(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { zmm::bf16_dot(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if tiled => unsafe { ymm::bf16_tiled(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { ymm::bf16_dot(w_rows, acts, out) },
        _ if tiled => portable::bf16_tiled(w_rows, acts, out),
        _ => portable::bf16_dot(w_rows, acts, out),
    }
}

/// The row length, after checking every weight row holds that many 16-bit values.
fn check_lengths<A, const R: usize, const N: usize>(w_rows: &[&[u8]; R], acts: &[&[A]; N]) -> usize {
    let n = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == n * HALF_BYTES) && acts.iter().all(|a| a.len() == n),
        "row lengths differ"
    );
    n
}

/// The sum of 16 lanes in `_mm512_reduce_add_ps`'s order: halves, quarters, pairs, then the last two.
#[inline(always)]
pub(crate) fn reduce16(l: [f32; 16]) -> f32 {
    let a: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
    let b: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (b[0] + b[2]) + (b[1] + b[3])
}

/// Value `k` of a little-endian 16-bit row.
#[inline(always)]
fn bits_at(w: &[u8], k: usize) -> u16 {
    u16::from_le_bytes([w[2 * k], w[2 * k + 1]])
}

#[inline(always)]
fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[inline(always)]
fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The end of `ggml_vec_dot_f16`: the combined lanes summed, then the values past `np` added in f64.
fn finish_f16_dot(lanes: [f32; 16], w: &[u8], x: &[F16Bits], np: usize) -> f32 {
    let mut sum = f64::from(reduce16(lanes));
    for (k, v) in x.iter().enumerate().skip(np) {
        sum += f64::from(f16_value(bits_at(w, k)) * f16_value(v.0));
    }
    sum as f32
}

/// The end of `ggml_vec_dot_bf16`: each accumulator summed and added in f64, then the values past `np`.
fn finish_bf16_dot(c1: [f32; 16], c2: [f32; 16], w: &[u8], x: &[Bf16Bits], np: usize) -> f32 {
    let mut sum = 0.0f64;
    sum += f64::from(reduce16(c1));
    sum += f64::from(reduce16(c2));
    for (k, v) in x.iter().enumerate().skip(np) {
        sum += f64::from(bf16_value(bits_at(w, k)) * bf16_value(v.0));
    }
    sum as f32
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn f16_dot_row(w: &[u8], x: &[F16Bits]) -> f32 {
        let np = x.len() - x.len() % 64;
        let mut sum = [[0.0f32; 16]; 4];
        for c in (0..np).step_by(64) {
            for (j, s) in sum.iter_mut().enumerate() {
                for (l, lane) in s.iter_mut().enumerate() {
                    let k = c + 16 * j + l;
                    *lane = f16_value(bits_at(w, k)).mul_add(f16_value(x[k].0), *lane);
                }
            }
        }
        let lanes = std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
        finish_f16_dot(lanes, w, x, np)
    }

    fn f16_tiled_row(w: &[u8], x: &[F16Bits]) -> f32 {
        let mut acc = [0.0f32; 16];
        for c in (0..x.len()).step_by(F16_STEP) {
            for (l, lane) in acc.iter_mut().enumerate() {
                *lane = f16_value(bits_at(w, c + l)).mul_add(f16_value(x[c + l].0), *lane);
            }
        }
        reduce16(acc)
    }

    /// One `vdpbf16ps` step over the 32 values from `c`: lane `l` adds pair `l`'s odd product, then its even one.
    #[inline(always)]
    fn dpbf16(acc: &mut [f32; 16], w: &[u8], x: &[Bf16Bits], c: usize) {
        for (l, lane) in acc.iter_mut().enumerate() {
            let (even, odd) = (c + 2 * l, c + 2 * l + 1);
            *lane = bf16_value(bits_at(w, odd)).mul_add(bf16_value(x[odd].0), *lane);
            *lane = bf16_value(bits_at(w, even)).mul_add(bf16_value(x[even].0), *lane);
        }
    }

    fn bf16_dot_row(w: &[u8], x: &[Bf16Bits]) -> f32 {
        let np = x.len() - x.len() % 64;
        let (mut c1, mut c2) = ([0.0f32; 16], [0.0f32; 16]);
        for c in (0..np).step_by(64) {
            dpbf16(&mut c1, w, x, c);
            dpbf16(&mut c2, w, x, c + 32);
        }
        finish_bf16_dot(c1, c2, w, x, np)
    }

    fn bf16_tiled_row(w: &[u8], x: &[Bf16Bits]) -> f32 {
        let mut acc = [0.0f32; 16];
        for c in (0..x.len()).step_by(BF16_STEP) {
            dpbf16(&mut acc, w, x, c);
        }
        reduce16(acc)
    }

    macro_rules! tile {
        ($name:ident, $row:ident, $act:ty) => {
            pub fn $name<const R: usize, const N: usize>(w: [&[u8]; R], x: [&[$act]; N], out: &mut [[f32; N]; R]) {
                for r in 0..R {
                    for i in 0..N {
                        out[r][i] = $row(w[r], x[i]);
                    }
                }
            }
        };
    }

    tile!(f16_dot, f16_dot_row, F16Bits);
    tile!(f16_tiled, f16_tiled_row, F16Bits);
    tile!(bf16_dot, bf16_dot_row, Bf16Bits);
    tile!(bf16_tiled, bf16_tiled_row, Bf16Bits);
}

/// The four kernels over a 16-lane vector type `V` and its helpers (`zero`, `load_f16`, `load_bf16`,
/// `fma`, `add`, `lanes`), defined by the module that expands it.
#[cfg(target_arch = "x86_64")]
macro_rules! half_kernels {
    ($features:literal) => {
        /// # Safety
        /// The CPU has the module's features; each `w[r]` holds `x[i].len()` F16 values.
        #[target_feature(enable = $features)]
        pub unsafe fn f16_dot<const R: usize, const N: usize>(
            w: [&[u8]; R],
            x: [&[F16Bits]; N],
            out: &mut [[f32; N]; R],
        ) {
            let n = x.first().map_or(0, |a| a.len());
            let np = n - n % 64;
            let mut sum = [[[zero(); 4]; N]; R];
            for c in (0..np).step_by(64) {
                for j in 0..4 {
                    let at = c + 16 * j;
                    let mut xv = [zero(); N];
                    for i in 0..N {
                        // SAFETY: `at + 16 <= np <= n` values lie inside every row (checked by the caller).
                        xv[i] = unsafe { load_f16(x[i].as_ptr().add(at).cast()) };
                    }
                    for r in 0..R {
                        // SAFETY: as above, two bytes per value.
                        let wv = unsafe { load_f16(w[r].as_ptr().add(2 * at).cast()) };
                        for i in 0..N {
                            sum[r][i][j] = fma(wv, xv[i], sum[r][i][j]);
                        }
                    }
                }
            }
            for r in 0..R {
                for i in 0..N {
                    let s = &sum[r][i];
                    let combined = add(add(s[0], s[2]), add(s[1], s[3]));
                    out[r][i] = finish_f16_dot(lanes(combined), w[r], x[i], np);
                }
            }
        }

        /// # Safety
        /// As [`f16_dot`], and the row length is a multiple of 16.
        #[target_feature(enable = $features)]
        pub unsafe fn f16_tiled<const R: usize, const N: usize>(
            w: [&[u8]; R],
            x: [&[F16Bits]; N],
            out: &mut [[f32; N]; R],
        ) {
            let n = x.first().map_or(0, |a| a.len());
            let mut acc = [[zero(); N]; R];
            for c in (0..n).step_by(F16_STEP) {
                let mut xv = [zero(); N];
                for i in 0..N {
                    // SAFETY: `c + 16 <= n` (a multiple of 16) values lie inside every row.
                    xv[i] = unsafe { load_f16(x[i].as_ptr().add(c).cast()) };
                }
                for r in 0..R {
                    // SAFETY: as above, two bytes per value.
                    let wv = unsafe { load_f16(w[r].as_ptr().add(2 * c).cast()) };
                    for i in 0..N {
                        acc[r][i] = fma(wv, xv[i], acc[r][i]);
                    }
                }
            }
            for r in 0..R {
                for i in 0..N {
                    out[r][i] = reduce16(lanes(acc[r][i]));
                }
            }
        }

        /// # Safety
        /// The CPU has the module's features; each `w[r]` holds `x[i].len()` BF16 values.
        #[target_feature(enable = $features)]
        pub unsafe fn bf16_dot<const R: usize, const N: usize>(
            w: [&[u8]; R],
            x: [&[Bf16Bits]; N],
            out: &mut [[f32; N]; R],
        ) {
            let n = x.first().map_or(0, |a| a.len());
            let np = n - n % 64;
            let mut c1 = [[zero(); N]; R];
            let mut c2 = [[zero(); N]; R];
            for c in (0..np).step_by(64) {
                let mut xv = [[(zero(), zero()); 2]; N];
                for i in 0..N {
                    // SAFETY: `c + 64 <= np <= n` values lie inside every row (checked by the caller).
                    xv[i] = unsafe {
                        [load_bf16(x[i].as_ptr().add(c).cast()), load_bf16(x[i].as_ptr().add(c + 32).cast())]
                    };
                }
                for r in 0..R {
                    // SAFETY: as above, two bytes per value.
                    let (w1, w2) =
                        unsafe { (load_bf16(w[r].as_ptr().add(2 * c)), load_bf16(w[r].as_ptr().add(2 * c + 64))) };
                    for i in 0..N {
                        c1[r][i] = fma(w1.1, xv[i][0].1, fma(w1.0, xv[i][0].0, c1[r][i]));
                        c2[r][i] = fma(w2.1, xv[i][1].1, fma(w2.0, xv[i][1].0, c2[r][i]));
                    }
                }
            }
            for r in 0..R {
                for i in 0..N {
                    out[r][i] = finish_bf16_dot(lanes(c1[r][i]), lanes(c2[r][i]), w[r], x[i], np);
                }
            }
        }

        /// # Safety
        /// As [`bf16_dot`], and the row length is a multiple of 32.
        #[target_feature(enable = $features)]
        pub unsafe fn bf16_tiled<const R: usize, const N: usize>(
            w: [&[u8]; R],
            x: [&[Bf16Bits]; N],
            out: &mut [[f32; N]; R],
        ) {
            let n = x.first().map_or(0, |a| a.len());
            let mut acc = [[zero(); N]; R];
            for c in (0..n).step_by(BF16_STEP) {
                let mut xv = [(zero(), zero()); N];
                for i in 0..N {
                    // SAFETY: `c + 32 <= n` (a multiple of 32) values lie inside every row.
                    xv[i] = unsafe { load_bf16(x[i].as_ptr().add(c).cast()) };
                }
                for r in 0..R {
                    // SAFETY: as above, two bytes per value.
                    let wv = unsafe { load_bf16(w[r].as_ptr().add(2 * c)) };
                    for i in 0..N {
                        acc[r][i] = fma(wv.1, xv[i].1, fma(wv.0, xv[i].0, acc[r][i]));
                    }
                }
            }
            for r in 0..R {
                for i in 0..N {
                    out[r][i] = reduce16(lanes(acc[r][i]));
                }
            }
        }
    };
}

/// AVX-512: one register per 16 lanes.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod zmm {
    use std::arch::x86_64::*;

    use super::*;

    type V = __m512;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn zero() -> V {
        _mm512_setzero_ps()
    }

    /// 16 f16 values at `p`, widened.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_f16(p: *const u8) -> V {
        // SAFETY: the caller passes 32 readable bytes.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
    }

    /// 32 bf16 values at `p` as (odd elements, even elements) of each pair, widened.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_bf16(p: *const u8) -> (V, V) {
        // SAFETY: the caller passes 64 readable bytes.
        let raw = unsafe { _mm512_loadu_si512(p.cast()) };
        let odd = _mm512_and_si512(raw, _mm512_set1_epi32(0xFFFF_0000_u32 as i32));
        (_mm512_castsi512_ps(odd), _mm512_castsi512_ps(_mm512_slli_epi32::<16>(raw)))
    }

    /// `a · b + c`, fused.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn lanes(v: V) -> [f32; 16] {
        let mut l = [0.0f32; 16];
        // SAFETY: `l` holds sixteen f32.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), v) };
        l
    }

    half_kernels!("avx512f,avx2,fma,f16c");
}

/// AVX2: two registers per 16 lanes (lanes 0–7, 8–15).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod ymm {
    use std::arch::x86_64::*;

    use super::*;

    type V = (__m256, __m256);

    #[target_feature(enable = "avx2")]
    #[inline]
    fn zero() -> V {
        (_mm256_setzero_ps(), _mm256_setzero_ps())
    }

    /// 16 f16 values at `p`, widened.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn load_f16(p: *const u8) -> V {
        // SAFETY: the caller passes 32 readable bytes.
        unsafe { (_mm256_cvtph_ps(_mm_loadu_si128(p.cast())), _mm256_cvtph_ps(_mm_loadu_si128(p.add(16).cast()))) }
    }

    /// 32 bf16 values at `p` as (odd elements, even elements) of each pair, widened.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load_bf16(p: *const u8) -> (V, V) {
        // SAFETY: the caller passes 64 readable bytes.
        let (lo, hi) = unsafe { (_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())) };
        let mask = _mm256_set1_epi32(0xFFFF_0000_u32 as i32);
        let odd = (_mm256_and_si256(lo, mask), _mm256_and_si256(hi, mask));
        let even = (_mm256_slli_epi32::<16>(lo), _mm256_slli_epi32::<16>(hi));
        (
            (_mm256_castsi256_ps(odd.0), _mm256_castsi256_ps(odd.1)),
            (_mm256_castsi256_ps(even.0), _mm256_castsi256_ps(even.1)),
        )
    }

    /// `a · b + c`, fused.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        (_mm256_fmadd_ps(a.0, b.0, c.0), _mm256_fmadd_ps(a.1, b.1, c.1))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn add(a: V, b: V) -> V {
        (_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes(v: V) -> [f32; 16] {
        let mut l = [0.0f32; 16];
        // SAFETY: `l` holds sixteen f32.
        unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), v.0);
            _mm256_storeu_ps(l.as_mut_ptr().add(8), v.1);
        }
        l
    }

    half_kernels!("avx2,fma,f16c");
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::isa::detect;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + 31 * seed) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 0.37).collect()
    }

    fn weight_bytes(x: &[f32], bf: bool) -> Vec<u8> {
        x.iter()
            .flat_map(
                |v| {
                    if bf { half::bf16::from_f32(*v).to_le_bytes() } else { half::f16::from_f32(*v).to_le_bytes() }
                },
            )
            .collect()
    }

    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        if detect() != Isa::Portable {
            isas.push(Isa::Avx2);
        }
        if detect() == Isa::Avx512Vnni {
            isas.push(Isa::Avx512Vnni);
        }
        isas
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        // 64·9 + 40: whole steps and a tail for the vector dot product (and no tinyBLAS, whose step 16/32
        // does not divide 616: that order falls back to the dot product, as llama.cpp does); 576 for both.
        for n in [616, 576] {
            let w: Vec<Vec<f32>> = (0..5).map(|s| values(n, s)).collect();
            let x: Vec<Vec<f32>> = (0..3).map(|s| values(n, 11 + s)).collect();
            for bf in [false, true] {
                let wb: Vec<Vec<u8>> = w.iter().map(|w| weight_bytes(w, bf)).collect();
                for order in [HalfOrder::Dot, HalfOrder::Tiled] {
                    let run = |isa: Isa| {
                        let mut four = [[0.0f32; 3]; 4];
                        let mut one = [[0.0f32; 3]; 1];
                        let ws = [wb[0].as_slice(), &wb[1], &wb[2], &wb[3]];
                        if bf {
                            let xs: Vec<Vec<Bf16Bits>> = x
                                .iter()
                                .map(|x| {
                                    let mut o = vec![Bf16Bits::default(); n];
                                    round_row_bf16(x, &mut o);
                                    o
                                })
                                .collect();
                            let rows = [xs[0].as_slice(), &xs[1], &xs[2]];
                            bf16(isa, order, ws, rows, &mut four);
                            bf16(isa, order, [&wb[4]], rows, &mut one);
                        } else {
                            let xs: Vec<Vec<F16Bits>> = x
                                .iter()
                                .map(|x| {
                                    let mut o = vec![F16Bits::default(); n];
                                    round_row_f16(x, &mut o);
                                    o
                                })
                                .collect();
                            let rows = [xs[0].as_slice(), &xs[1], &xs[2]];
                            f16(isa, order, ws, rows, &mut four);
                            f16(isa, order, [&wb[4]], rows, &mut one);
                        }
                        (four, one)
                    };
                    let expected = run(Isa::Portable);
                    for i in 0..3 {
                        let exact: f64 = w[0].iter().zip(&x[i]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                        let got = f64::from(expected.0[0][i]);
                        assert!(
                            (got - exact).abs() < 2e-2 * exact.abs().max(0.1),
                            "bf={bf} {order:?}: {got} vs {exact}"
                        );
                    }
                    for isa in isas() {
                        let got = run(isa);
                        for i in 0..3 {
                            for r in 0..4 {
                                assert_eq!(
                                    got.0[r][i].to_bits(),
                                    expected.0[r][i].to_bits(),
                                    "{isa:?} bf={bf} {order:?}"
                                );
                            }
                            assert_eq!(got.1[0][i].to_bits(), expected.1[0][i].to_bits(), "{isa:?} bf={bf} {order:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reduce16_sums_in_the_hardware_order() {
        // 1e8 swallows 1.0 unless the 1.0s meet each other first.
        let mut l = [0.0f32; 16];
        l[0] = 1e8;
        l[8] = -1e8;
        l[1] = 1.0;
        l[9] = 1.0;
        assert_eq!(reduce16(l), 2.0);
    }
}
