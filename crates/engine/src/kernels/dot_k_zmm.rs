//! The AVX-512 twins of [`super::dot_k`]'s Q4_K and Q6_K kernels: two 32-value runs per 512-bit
//! register, so each activation block takes half the multiply-adds.
//!
//! They form the same exact integers as the AVX2 and portable paths, only grouped into wider registers
//! (sums of integers do not depend on their order), and then take the same float steps: the results are
//! the same bits, which the tests check.

use std::arch::x86_64::*;

use super::dot::hsum_lanes;
use super::k_blocks::{Q4_K_BYTES, Q6_K_BYTES, q4_k_min_sum, q4_k_scales};
use super::quantize_k::SuperBlock;

/// Word indices picking, for pair `j` of 32-value runs, scale `2j` for the first 16 words and `2j + 1` for
/// the next 16 (Q4_K: one scale per run).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn q4_k_scale_index(j: i16) -> __m512i {
    let (a, b) = (2 * j, 2 * j + 1);
    _mm512_set_epi16(b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a)
}

/// Word indices picking, for pair `p` of 32-value runs, scales `4p .. 4p + 4` for eight words each (Q6_K:
/// one scale per 16 values).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn q6_k_scale_index(p: i16) -> __m512i {
    let (a, b, c, d) = (4 * p, 4 * p + 1, 4 * p + 2, 4 * p + 3);
    _mm512_set_epi16(d, d, d, d, d, d, d, d, c, c, c, c, c, c, c, c, b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
}

/// Q4_K rows, `STEP` sub-blocks per float step (8 or 2), as [`super::dot_k`]'s `x86::q4_k`.
///
/// # Safety
/// The CPU has AVX-512 F/BW, AVX2, FMA and F16C; each `w[r]` holds `acts[i].len()` Q4_K blocks.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn q4_k<const R: usize, const N: usize, const STEP: usize>(
    w: [&[u8]; R],
    acts: [&[SuperBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let mut acc = [[0.0f32; N]; R];
    let mut acc_min = [[0.0f32; N]; R];
    let low = _mm512_set1_epi8(0x0F);
    // The upper half of each register holds the high nibbles of the same 32 bytes.
    let shifts = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let index: [__m512i; 4] = [q4_k_scale_index(0), q4_k_scale_index(1), q4_k_scale_index(2), q4_k_scale_index(3)];
    let blocks = acts.first().map_or(0, |a| a.len());
    for ib in 0..blocks {
        for r in 0..R {
            let block = &w[r][ib * Q4_K_BYTES..(ib + 1) * Q4_K_BYTES];
            let p = block.as_ptr();
            // SAFETY: the block starts with the f16 pair `d`, `dmin`.
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { p.cast::<i32>().read_unaligned() }));
            let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            let (sc, mins) = q4_k_scales(&block[4..16]);
            let scales = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(i64::from_le_bytes(sc))));
            let mut x = [_mm512_setzero_si512(); 4];
            let mut s = [_mm512_setzero_si512(); 4];
            for j in 0..4 {
                // SAFETY: 32 bytes at 16 + 32j lie inside the 144-byte block.
                let bits = _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(p.add(16 + 32 * j).cast()) });
                x[j] = _mm512_and_si512(_mm512_srlv_epi64(bits, shifts), low);
                s[j] = _mm512_permutexvar_epi16(index[j], scales);
            }
            for i in 0..N {
                let a = &acts[i][ib];
                let mut pair = [_mm512_setzero_si512(); 4];
                for j in 0..4 {
                    // SAFETY: `qs` holds 256 bytes.
                    let y = unsafe { _mm512_loadu_si512(a.qs.as_ptr().add(64 * j).cast()) };
                    pair[j] = _mm512_madd_epi16(s[j], _mm512_maddubs_epi16(x[j], y));
                }
                if STEP == 8 {
                    let all = _mm512_add_epi32(_mm512_add_epi32(pair[0], pair[1]), _mm512_add_epi32(pair[2], pair[3]));
                    acc[r][i] = (_mm512_reduce_add_epi32(all) as f32).mul_add(d * a.d, acc[r][i]);
                    acc_min[r][i] = (q4_k_min_sum(&mins, a, 0..8) as f32).mul_add(dmin * a.d, acc_min[r][i]);
                } else {
                    for (j, sums) in pair.iter().enumerate() {
                        acc[r][i] = (_mm512_reduce_add_epi32(*sums) as f32).mul_add(d * a.d, acc[r][i]);
                        let min_sum = q4_k_min_sum(&mins, a, 2 * j..2 * j + 2);
                        acc_min[r][i] = (min_sum as f32).mul_add(dmin * a.d, acc_min[r][i]);
                    }
                }
            }
        }
    }
    for r in 0..R {
        for i in 0..N {
            out[r][i] = acc[r][i] - acc_min[r][i];
        }
    }
}

/// Q6_K rows in `ggml_vec_dot_q6_K_q8_K`'s order or (`TILED`) the tiled kernel's, as [`super::dot_k`]'s
/// `x86::q6_k`: each register holds two 32-value runs, whose eight-lane sums are added before the lanes
/// are converted.
///
/// # Safety
/// The CPU has AVX-512 F/BW, AVX2, FMA and F16C; each `w[r]` holds `acts[i].len()` Q6_K blocks.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn q6_k<const R: usize, const N: usize, const TILED: bool>(
    w: [&[u8]; R],
    acts: [&[SuperBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    let mut sums = [[0.0f32; N]; R];
    let m4 = _mm512_set1_epi8(0x0F);
    let m2 = _mm512_set1_epi8(3);
    // Runs 4h and 4h + 1 take qh bits 0–1 and 2–3, runs 4h + 2 and 4h + 3 bits 4–5 and 6–7.
    let low_shifts = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    let high_shifts = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    let index: [__m512i; 4] = [q6_k_scale_index(0), q6_k_scale_index(1), q6_k_scale_index(2), q6_k_scale_index(3)];
    let blocks = acts.first().map_or(0, |a| a.len());
    for ib in 0..blocks {
        for r in 0..R {
            let block = &w[r][ib * Q6_K_BYTES..(ib + 1) * Q6_K_BYTES];
            let p = block.as_ptr();
            // SAFETY: the f16 `d` ends the 210-byte block.
            let bits = unsafe { p.add(208).cast::<u16>().read_unaligned() };
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
            // Pairs of runs: (0, 1), (2, 3) from the first half of the block, (4, 5), (6, 7) from the second.
            let mut x = [_mm512_setzero_si512(); 4];
            for half in 0..2 {
                // SAFETY: ql (128 bytes) and qh (64) lie inside the 210-byte block.
                let (l, h) = unsafe {
                    (
                        _mm512_loadu_si512(p.add(64 * half).cast()),
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(128 + 32 * half).cast())),
                    )
                };
                let h01 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi64(h, low_shifts), m2));
                let h23 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi64(h, high_shifts), m2));
                x[2 * half] = _mm512_or_si512(_mm512_and_si512(l, m4), h01);
                x[2 * half + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l), m4), h23);
            }
            // SAFETY: the 16 scale bytes start at 192.
            let scales16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.add(192).cast()) });
            let scales = _mm512_castsi256_si512(scales16);
            let mut s = [_mm512_setzero_si512(); 4];
            for (k, scale) in s.iter_mut().enumerate() {
                *scale = _mm512_permutexvar_epi16(index[k], scales);
            }
            for i in 0..N {
                let a = &acts[i][ib];
                let mut sum = _mm512_setzero_si512();
                for k in 0..4 {
                    // Runs 2k, 2k + 1 of the activations: pair k's values (run order 0, 1, 2, 3 of each half
                    // are bytes 0, 32, 64, 96 of it, so pair k is 64 contiguous activation bytes).
                    // SAFETY: `qs` holds 256 bytes.
                    let y = unsafe { _mm512_loadu_si512(a.qs.as_ptr().add(64 * k).cast()) };
                    sum = _mm512_add_epi32(sum, _mm512_madd_epi16(s[k], _mm512_maddubs_epi16(x[k], y)));
                }
                let lanes8 = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64::<1>(sum));
                // SAFETY: `bsums` holds sixteen i16.
                let bsums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
                let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales16));
                let exact = _mm256_sub_epi32(lanes8, offset);
                if TILED {
                    let half = _mm_add_epi32(_mm256_castsi256_si128(exact), _mm256_extracti128_si256::<1>(exact));
                    let quarter = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
                    let total = _mm_cvtsi128_si32(_mm_add_epi32(quarter, _mm_shuffle_epi32::<0b01>(quarter)));
                    sums[r][i] = (total as f32 * d).mul_add(a.d, sums[r][i]);
                } else {
                    acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * d), _mm256_cvtepi32_ps(exact), acc[r][i]);
                }
            }
        }
    }
    for r in 0..R {
        for i in 0..N {
            out[r][i] = if TILED {
                sums[r][i]
            } else {
                let mut l = [0.0f32; 8];
                // SAFETY: `l` holds eight f32.
                unsafe { _mm256_storeu_ps(l.as_mut_ptr(), acc[r][i]) };
                hsum_lanes(l)
            };
        }
    }
}
