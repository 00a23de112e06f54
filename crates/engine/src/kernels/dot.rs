//! Dot products of quantized weight rows with quantized activation rows, `N` activation rows at a time
//! (the weight block is unpacked once for all of them).
//!
//! Every path computes what ggml's x86 `ggml_vec_dot_q4_1_q8_1` / `ggml_vec_dot_q8_0_q8_0` compute: per
//! block, eight exact 32-bit integer sums of four adjacent byte products; each converted to f32 and
//! fused-multiply-added, scaled by `d_w · d_a`, into eight running lanes; at the end the lanes summed as
//! `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`, and for Q4_1 the `m · s` terms of all blocks accumulated by a
//! separate fused multiply-add chain and added last. Integer sums are exact whatever instructions form
//! them, so the SIMD paths and the portable one agree bit for bit.
//!
//! Why one file over 500 lines: the portable path and its AVX2 and AVX-512 VNNI twins for both weight
//! formats are kept side by side, with the tests that check them bit for bit against each other.

use super::BLOCK;
use super::isa::Isa;
use super::quantize::ActivationBlock;

/// Bytes of one Q4_1 weight block: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values.
pub const Q4_1_BYTES: usize = 20;
/// Bytes of one Q8_0 weight block: f16 scale `d`, 32 signed bytes.
pub const Q8_0_BYTES: usize = 34;

/// `out[r][i] = w_rows[r] · acts[i]` for Q4_1 weight rows (`acts[i].len()` blocks each). A tile of `R`
/// weight rows by `N` activation rows runs `R·N` independent accumulations side by side, which hides
/// the latency of each one's fused multiply-add chain; every result is still summed in ggml's order.
pub fn q4_1<const R: usize, const N: usize>(
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: [&[ActivationBlock]; N],
    out: &mut [[f32; N]; R],
) {
    check_lengths(&w_rows, Q4_1_BYTES, &acts);
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU; lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if R.is_multiple_of(2) => unsafe { x86::q4_1_zmm(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::q4_1_vnni(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q4_1_avx2(w_rows, acts, out) },
        _ => portable::q4_1(w_rows, acts, out),
    }
}

/// `out[r][i] = w_rows[r] · acts[i]` for Q8_0 weight rows.
pub fn q8_0<const R: usize, const N: usize>(
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: [&[ActivationBlock]; N],
    out: &mut [[f32; N]; R],
) {
    check_lengths(&w_rows, Q8_0_BYTES, &acts);
    match isa {
        // SAFETY: as in `q4_1`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if R.is_multiple_of(2) => unsafe { x86::q8_0_zmm(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::q8_0_vnni(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q8_0_avx2(w_rows, acts, out) },
        _ => portable::q8_0(w_rows, acts, out),
    }
}

fn check_lengths<const R: usize, const N: usize>(
    w_rows: &[&[u8]; R],
    block_bytes: usize,
    acts: &[&[ActivationBlock]; N],
) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * block_bytes) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
}

/// `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`: ggml's `hsum_float_8`.
#[inline(always)]
pub(super) fn hsum_lanes(l: [f32; 8]) -> f32 {
    let r = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// The little-endian f16 at byte `at` of `bytes`, widened.
pub(super) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn q4_1_row<const N: usize>(w: &[u8], acts: [&[ActivationBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        let mut summs = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q4_1_BYTES).enumerate() {
            let (d, m) = (f16_at(block, 0), f16_at(block, 2));
            let mut x = [0i32; BLOCK];
            for (k, byte) in block[4..].iter().enumerate() {
                x[k] = i32::from(byte & 0x0F);
                x[k + 16] = i32::from(byte >> 4);
            }
            for i in 0..N {
                let a = &acts[i][ib];
                summs[i] = m.mul_add(a.s, summs[i]);
                let scale = d * a.d;
                for (l, lane) in lanes[i].iter_mut().enumerate() {
                    let sum: i32 = (4 * l..4 * l + 4).map(|k| x[k] * i32::from(a.qs[k])).sum();
                    *lane = scale.mul_add(sum as f32, *lane);
                }
            }
        }
        for i in 0..N {
            out[i] = hsum_lanes(lanes[i]) + summs[i];
        }
    }

    fn q8_0_row<const N: usize>(w: &[u8], acts: [&[ActivationBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        for (ib, block) in w.chunks_exact(Q8_0_BYTES).enumerate() {
            let d = f16_at(block, 0);
            for i in 0..N {
                let a = &acts[i][ib];
                let scale = d * a.d;
                for (l, lane) in lanes[i].iter_mut().enumerate() {
                    let sum: i32 = (4 * l..4 * l + 4).map(|k| i32::from(block[2 + k] as i8) * i32::from(a.qs[k])).sum();
                    *lane = scale.mul_add(sum as f32, *lane);
                }
            }
        }
        for i in 0..N {
            out[i] = hsum_lanes(lanes[i]);
        }
    }

    pub fn q4_1<const R: usize, const N: usize>(w: [&[u8]; R], acts: [&[ActivationBlock]; N], out: &mut [[f32; N]; R]) {
        for r in 0..R {
            q4_1_row(w[r], acts, &mut out[r]);
        }
    }

    pub fn q8_0<const R: usize, const N: usize>(w: [&[u8]; R], acts: [&[ActivationBlock]; N], out: &mut [[f32; N]; R]) {
        for r in 0..R {
            q8_0_row(w[r], acts, &mut out[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Block and row indices address several arrays in lockstep (weights by byte offset, activations by block).
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Eight 32-bit sums of four adjacent `u8 × i8` products (AVX2: two widening multiply-adds).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn idot_avx2(unsigned: __m256i, signed: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_set1_epi16(1), _mm256_maddubs_epi16(unsigned, signed))
    }

    /// The same sums in one `vpdpbusd`.
    #[target_feature(enable = "avx512vnni,avx512vl")]
    #[inline]
    fn idot_vnni(unsigned: __m256i, signed: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), unsigned, signed)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let mut l = [0.0f32; 8];
        // SAFETY: `l` holds eight f32.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
        hsum_lanes(l)
    }

    /// `d` and `m` of a weight block (f16 pair at `p`) widened with F16C.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn scale_pair(p: *const u8) -> (f32, f32) {
        // SAFETY: the caller passes a pointer to at least 4 readable bytes.
        let bits = unsafe { p.cast::<i32>().read_unaligned() };
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    macro_rules! q4_1_kernel {
        ($name:ident, $features:literal, $idot:ident) => {
            /// # Safety
            /// The CPU has `$features`; each `w[r]` holds `acts[i].len()` Q4_1 blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize, const N: usize>(
                w: [&[u8]; R],
                acts: [&[ActivationBlock]; N],
                out: &mut [[f32; N]; R],
            ) {
                let mut acc = [[_mm256_setzero_ps(); N]; R];
                let mut summs = [[0.0f32; N]; R];
                let low = _mm256_set1_epi8(0x0F);
                let blocks = acts.first().map_or(0, |a| a.len());
                for ib in 0..blocks {
                    let mut x = [_mm256_setzero_si256(); R];
                    let mut dm = [(0.0f32, 0.0f32); R];
                    for r in 0..R {
                        // SAFETY: block `ib` lies inside every row (checked by the caller).
                        let p = unsafe { w[r].as_ptr().add(ib * Q4_1_BYTES) };
                        dm[r] = unsafe { scale_pair(p) };
                        let packed = unsafe { _mm_loadu_si128(p.add(4).cast()) };
                        x[r] = _mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed));
                    }
                    for i in 0..N {
                        let a = &acts[i][ib];
                        let y = unsafe { _mm256_load_si256(a.qs.as_ptr().cast()) };
                        for r in 0..R {
                            let (d, m) = dm[r];
                            summs[r][i] = m.mul_add(a.s, summs[r][i]);
                            let xy = _mm256_cvtepi32_ps($idot(x[r], y));
                            acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), xy, acc[r][i]);
                        }
                    }
                }
                for r in 0..R {
                    for i in 0..N {
                        out[r][i] = hsum(acc[r][i]) + summs[r][i];
                    }
                }
            }
        };
    }

    q4_1_kernel!(q4_1_avx2, "avx2,fma,f16c", idot_avx2);
    q4_1_kernel!(q4_1_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", idot_vnni);

    macro_rules! q8_0_kernel {
        ($name:ident, $features:literal, $idot:ident) => {
            /// # Safety
            /// The CPU has `$features`; each `w[r]` holds `acts[i].len()` Q8_0 blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize, const N: usize>(
                w: [&[u8]; R],
                acts: [&[ActivationBlock]; N],
                out: &mut [[f32; N]; R],
            ) {
                let mut acc = [[_mm256_setzero_ps(); N]; R];
                let blocks = acts.first().map_or(0, |a| a.len());
                for ib in 0..blocks {
                    let mut x = [_mm256_setzero_si256(); R];
                    let mut d = [0.0f32; R];
                    for r in 0..R {
                        // SAFETY: block `ib` lies inside every row (checked by the caller).
                        let p = unsafe { w[r].as_ptr().add(ib * Q8_0_BYTES) };
                        d[r] = unsafe { scale_pair(p) }.0;
                        x[r] = unsafe { _mm256_loadu_si256(p.add(2).cast()) };
                    }
                    for i in 0..N {
                        let a = &acts[i][ib];
                        let y = unsafe { _mm256_load_si256(a.qs.as_ptr().cast()) };
                        for r in 0..R {
                            // |x| as unsigned and the activations carrying x's sign: ggml's
                            // `mul_sum_i8_pairs_float`.
                            let ax = _mm256_sign_epi8(x[r], x[r]);
                            let xy = _mm256_cvtepi32_ps($idot(ax, _mm256_sign_epi8(y, x[r])));
                            acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(d[r] * a.d), xy, acc[r][i]);
                        }
                    }
                }
                for r in 0..R {
                    for i in 0..N {
                        out[r][i] = hsum(acc[r][i]);
                    }
                }
            }
        };
    }

    q8_0_kernel!(q8_0_avx2, "avx2,fma,f16c", idot_avx2);
    q8_0_kernel!(q8_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", idot_vnni);

    /// `[d0, m0, d1, m1]` (Q4_1) or `[d0, x, d1, x]`… of two blocks' leading f16 pairs, widened.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn scale_pairs(p0: *const u8, p1: *const u8) -> __m128 {
        // SAFETY: the caller passes pointers to at least 4 readable bytes each.
        let (a, b) = unsafe { (p0.cast::<i32>().read_unaligned(), p1.cast::<i32>().read_unaligned()) };
        _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128(a), _mm_cvtsi32_si128(b)))
    }

    /// Lanes 0–7 from `v[lo]`, lanes 8–15 from `v[hi]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn spread(v: __m128, lo: i32, hi: i32) -> __m512 {
        let index = _mm512_set_epi32(hi, hi, hi, hi, hi, hi, hi, hi, lo, lo, lo, lo, lo, lo, lo, lo);
        _mm512_permutexvar_ps(index, _mm512_castps128_ps512(v))
    }

    /// The 8-lane sums of each half of `v`, in ggml's order: rows `2k` and `2k + 1`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn hsum_halves(v: __m512) -> (f32, f32) {
        let mut l = [0.0f32; 16];
        // SAFETY: `l` holds sixteen f32.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), v) };
        let (lo, hi) = l.split_at(8);
        let lane = |h: &[f32]| -> [f32; 8] { std::array::from_fn(|i| h[i]) };
        (hsum_lanes(lane(lo)), hsum_lanes(lane(hi)))
    }

    /// Q4_1 with weight rows `2k` and `2k + 1` sharing one 512-bit register (eight lanes each): each
    /// row's lanes see exactly the operations of [`q4_1_vnni`], with half the instructions.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `R` is even; each `w[r]` holds
    /// `acts[i].len()` Q4_1 blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q4_1_zmm<const R: usize, const N: usize>(
        w: [&[u8]; R],
        acts: [&[ActivationBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        // Lanes 1 and 3 carry the two rows' `m · s` chains (lanes 0 and 2 are unused by-products).
        let mut summs = [[_mm_setzero_ps(); N]; R];
        let low = _mm512_set1_epi8(0x0F);
        let four = 0x0004_0004_0004_0004_i64;
        let shifts = _mm512_set_epi64(four, four, 0, 0, four, four, 0, 0);
        let halves = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            for k in 0..R / 2 {
                // SAFETY: block `ib` lies inside every row (checked by the caller).
                let (p0, p1) =
                    unsafe { (w[2 * k].as_ptr().add(ib * Q4_1_BYTES), w[2 * k + 1].as_ptr().add(ib * Q4_1_BYTES)) };
                let dm = unsafe { scale_pairs(p0, p1) };
                let (a, b) = unsafe { (_mm_loadu_si128(p0.add(4).cast()), _mm_loadu_si128(p1.add(4).cast())) };
                // [a, a, b, b] → [a & 15, a >> 4, b & 15, b >> 4]: each row's 32 values, in order.
                let ab = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b);
                let x = _mm512_permutexvar_epi64(halves, _mm512_castsi256_si512(ab));
                let x = _mm512_and_si512(_mm512_srlv_epi16(x, shifts), low);
                for i in 0..N {
                    let act = &acts[i][ib];
                    // SAFETY: `qs` is 32 aligned bytes.
                    let y = _mm512_broadcast_i64x4(unsafe { _mm256_load_si256(act.qs.as_ptr().cast()) });
                    summs[k][i] = _mm_fmadd_ps(dm, _mm_set1_ps(act.s), summs[k][i]);
                    let scale = spread(_mm_mul_ps(dm, _mm_set1_ps(act.d)), 0, 2);
                    let xy = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y));
                    acc[k][i] = _mm512_fmadd_ps(scale, xy, acc[k][i]);
                }
            }
        }
        for k in 0..R / 2 {
            for i in 0..N {
                let (s0, s1) = hsum_halves(acc[k][i]);
                let mut m = [0.0f32; 4];
                // SAFETY: `m` holds four f32.
                unsafe { _mm_storeu_ps(m.as_mut_ptr(), summs[k][i]) };
                out[2 * k][i] = s0 + m[1];
                out[2 * k + 1][i] = s1 + m[3];
            }
        }
    }

    /// Q8_0 with two weight rows per 512-bit register, as [`q4_1_zmm`].
    ///
    /// # Safety
    /// As [`q4_1_zmm`], with Q8_0 blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q8_0_zmm<const R: usize, const N: usize>(
        w: [&[u8]; R],
        acts: [&[ActivationBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            for k in 0..R / 2 {
                // SAFETY: block `ib` lies inside every row (checked by the caller).
                let (p0, p1) =
                    unsafe { (w[2 * k].as_ptr().add(ib * Q8_0_BYTES), w[2 * k + 1].as_ptr().add(ib * Q8_0_BYTES)) };
                // Only lanes 0 and 2 (the two `d`) are used; the f16 after each `d` is a quant pair.
                let d = unsafe { scale_pairs(p0, p1) };
                let (a, b) = unsafe { (_mm256_loadu_si256(p0.add(2).cast()), _mm256_loadu_si256(p1.add(2).cast())) };
                let x = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
                // |x| as unsigned, and the activations carrying x's sign (where x is 0 the product is 0
                // either way): ggml's `mul_sum_i8_pairs_float`.
                let ax = _mm512_abs_epi8(x);
                let negative = _mm512_movepi8_mask(x);
                for i in 0..N {
                    let act = &acts[i][ib];
                    // SAFETY: `qs` is 32 aligned bytes.
                    let y = _mm512_broadcast_i64x4(unsafe { _mm256_load_si256(act.qs.as_ptr().cast()) });
                    let sy = _mm512_mask_sub_epi8(y, negative, _mm512_setzero_si512(), y);
                    let scale = spread(_mm_mul_ps(d, _mm_set1_ps(act.d)), 0, 2);
                    let xy = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy));
                    acc[k][i] = _mm512_fmadd_ps(scale, xy, acc[k][i]);
                }
            }
        }
        for k in 0..R / 2 {
            for i in 0..N {
                let (s0, s1) = hsum_halves(acc[k][i]);
                out[2 * k][i] = s0;
                out[2 * k + 1][i] = s1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::isa::{detect, isa};
    use crate::kernels::quantize::quantize_row;

    fn weight_row(blocks: usize, block_bytes: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        let mut bytes: Vec<u8> = (0..blocks * block_bytes)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for block in bytes.chunks_exact_mut(block_bytes) {
            // Sane f16 scales (and minimums): 0.01–0.02 with either sign.
            let d = half::f16::from_f32(0.01 + f32::from(block[0]) / 25_600.0);
            block[..2].copy_from_slice(&d.to_le_bytes());
            if block_bytes == Q4_1_BYTES {
                let m = half::f16::from_f32(-0.1 + f32::from(block[2]) / 1280.0);
                block[2..4].copy_from_slice(&m.to_le_bytes());
            } else {
                // Q8_0 values are in -127..=127, as ggml's quantizer writes them.
                for q in &mut block[2..] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
            }
        }
        bytes
    }

    fn activations(blocks: usize, seed: usize) -> Vec<ActivationBlock> {
        let x: Vec<f32> =
            (0..blocks * BLOCK).map(|i| (((i + seed) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0).collect();
        let mut out = vec![ActivationBlock::default(); blocks];
        quantize_row(&x, &mut out);
        out
    }

    /// The plainest possible statement of the arithmetic, block by block.
    fn reference(w: &[u8], a: &[ActivationBlock], q4_1: bool) -> f32 {
        let bytes = if q4_1 { Q4_1_BYTES } else { Q8_0_BYTES };
        let mut lanes = [0.0f32; 8];
        let mut summs = 0.0f32;
        for (block, act) in w.chunks_exact(bytes).zip(a) {
            let d = f16_at(block, 0);
            let value = |k: usize| -> i32 {
                if q4_1 {
                    let byte = block[4 + k % 16];
                    i32::from(if k < 16 { byte & 0x0F } else { byte >> 4 })
                } else {
                    i32::from(block[2 + k] as i8)
                }
            };
            if q4_1 {
                summs = f16_at(block, 2).mul_add(act.s, summs);
            }
            for (l, lane) in lanes.iter_mut().enumerate() {
                let s: i32 = (0..4).map(|j| value(4 * l + j) * i32::from(act.qs[4 * l + j])).sum();
                *lane = (d * act.d).mul_add(s as f32, *lane);
            }
        }
        hsum_lanes(lanes) + summs
    }

    #[test]
    fn every_instruction_set_gives_the_reference_bit_for_bit() {
        let blocks = 48;
        for (q4_1_format, bytes) in [(true, Q4_1_BYTES), (false, Q8_0_BYTES)] {
            let w = weight_row(blocks, bytes, 7);
            let acts: Vec<Vec<ActivationBlock>> = (0..3).map(|s| activations(blocks, s * 101)).collect();
            let expected: Vec<f32> = acts.iter().map(|a| reference(&w, a, q4_1_format)).collect();
            let mut isas = vec![Isa::Portable];
            if detect() != Isa::Portable {
                isas.push(Isa::Avx2);
            }
            if detect() == Isa::Avx512Vnni {
                isas.push(Isa::Avx512Vnni);
            }
            for isa in isas {
                // A 2×3 tile (the same weight row twice) and a 1×1 one.
                let mut out = [[0.0f32; 3]; 2];
                let rows = [acts[0].as_slice(), acts[1].as_slice(), acts[2].as_slice()];
                if q4_1_format {
                    q4_1(isa, [&w, &w], rows, &mut out);
                } else {
                    q8_0(isa, [&w, &w], rows, &mut out);
                }
                for r in 0..2 {
                    for i in 0..3 {
                        assert_eq!(out[r][i].to_bits(), expected[i].to_bits(), "{isa:?} q4_1={q4_1_format} {r},{i}");
                    }
                }
                let mut one = [[0.0f32; 1]; 1];
                if q4_1_format {
                    q4_1(isa, [&w], [rows[1]], &mut one);
                } else {
                    q8_0(isa, [&w], [rows[1]], &mut one);
                }
                assert_eq!(one[0][0].to_bits(), expected[1].to_bits(), "{isa:?} single row");
            }
        }
    }

    #[test]
    fn the_result_approximates_the_real_dot_product() {
        // Dequantize both sides and compare with a plain f64 dot product.
        let blocks = 18;
        let w = weight_row(blocks, Q4_1_BYTES, 3);
        let a = activations(blocks, 5);
        let mut exact = 0.0f64;
        for (block, act) in w.chunks_exact(Q4_1_BYTES).zip(&a) {
            let (d, m) = (f64::from(f16_at(block, 0)), f64::from(f16_at(block, 2)));
            for k in 0..BLOCK {
                let byte = block[4 + k % 16];
                let q = f64::from(if k < 16 { byte & 0x0F } else { byte >> 4 });
                exact += (d * q + m) * f64::from(act.d) * f64::from(act.qs[k]);
            }
        }
        let mut out = [[0.0f32]];
        q4_1(isa(), [&w], [&a], &mut out);
        // The kernel uses the f16-rounded block sum for the minimum term; allow for that rounding.
        assert!((f64::from(out[0][0]) - exact).abs() < 0.05 * exact.abs().max(1.0), "{} vs {exact}", out[0][0]);
    }
}
