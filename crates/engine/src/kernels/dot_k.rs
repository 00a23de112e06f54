//! Dot products of K-quant weight rows (Q4_K, Q6_K: ggml's 256-value super-blocks) with Q8_K activation
//! rows ([`super::quantize_k`]), `N` activation rows at a time.
//!
//! Each format follows the kernel llama.cpp's x86 build runs for it, because the float accumulation order
//! is what decides the last bits:
//! - Q4_K weights are repacked by llama.cpp on AVX2 CPUs (`block_q4_Kx8`): exact integers
//!   `Σ scale_s · (q·a)_s` and `Σ min_s · (a-sums)_s`, each converted to f32 and fused-multiply-added,
//!   times `d_w · d_a` and `dmin_w · d_a`, into two running sums whose difference is the result. The
//!   integers cover a whole super-block for activation rows that `ggml_gemv_q4_K_8x8_q8_K` multiplies,
//!   and each pair of 32-value sub-blocks for rows that `ggml_gemm_q4_K_8x8_q8_K` multiplies (every
//!   whole group of four rows from the batch's start) — [`Q4KOrder`].
//! - Q6_K weights are not repacked on x86, and llama.cpp multiplies them two ways, chosen by the number of
//!   activation rows in the batch ([`Q6KOrder`]): fewer than 8 rows go through `ggml_vec_dot_q6_K_q8_K`
//!   — per super-block eight 32-bit lanes, lane `k` holding `Σ scale · q·a` over bytes `4k..4k+4` of each
//!   32-value run minus `32 · (a-sum·scale)` of sub-blocks `2k, 2k+1`, converted and fused-multiply-added
//!   times `d_a · d_w`, at the end the lanes summed as ggml's `hsum_float_8`; 8 rows or more through its
//!   tiled K-quant matmul (`ggml-cpu/tiled`, AVX-512 VNNI build) — per super-block one exact integer
//!   `Σ scale · (q - 32)·a`, converted, multiplied by `d_w`, then by `d_a`, and added (not fused) to a
//!   running sum.
//!
//! Integer sums are exact however they are formed, so the AVX2 path and the portable one agree bit for bit
//! (the tests check it). AVX-512 machines run the same steps two 32-value runs per register
//! ([`super::dot_k_zmm`]); these formats' sub-block scales make the 16-bit products of `vpmaddubsw` the
//! natural step, which VNNI would not shorten.

use super::dot::{f16_at, hsum_lanes};
#[cfg(target_arch = "x86_64")]
use super::dot_k_zmm;
use super::isa::Isa;
pub use super::k_blocks::{Q4_K_BYTES, Q6_K_BYTES};
use super::k_blocks::{q4_k_min_sum, q4_k_scales};
use super::quantize_k::{SUPER_BLOCK, SuperBlock};

/// Which of llama.cpp's two repacked Q4_K kernels a product reproduces (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q4KOrder {
    /// `ggml_gemv_q4_K_8x8_q8_K`: one float step per super-block.
    Blocks,
    /// `ggml_gemm_q4_K_8x8_q8_K`: one float step per pair of sub-blocks.
    Pairs,
}

/// `out[r][i] = w_rows[r] · acts[i]` for Q4_K weight rows (`acts[i].len()` blocks each), summed in `order`.
pub fn q4_k<const R: usize, const N: usize>(
    isa: Isa,
    order: Q4KOrder,
    w_rows: [&[u8]; R],
    acts: [&[SuperBlock]; N],
    out: &mut [[f32; N]; R],
) {
    check_lengths(&w_rows, Q4_K_BYTES, &acts);
    let pairs = order == Q4KOrder::Pairs;
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU (both include AVX2, FMA and
        // F16C); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if pairs => unsafe { dot_k_zmm::q4_k::<R, N, 2>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { dot_k_zmm::q4_k::<R, N, 8>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if pairs => unsafe { x86::q4_k::<R, N, 2>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q4_k::<R, N, 8>(w_rows, acts, out) },
        _ if pairs => portable::q4_k::<R, N, 2>(w_rows, acts, out),
        _ => portable::q4_k::<R, N, 8>(w_rows, acts, out),
    }
}

/// Which of llama.cpp's two Q6_K kernels a product reproduces (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q6KOrder {
    /// `ggml_vec_dot_q6_K_q8_K`: eight float lanes per row, for batches of fewer than
    /// [`Q6K_TILED_MIN_ROWS`] activation rows.
    Lanes,
    /// ggml's tiled K-quant matmul: one integer per super-block, for larger batches.
    Tiled,
}

/// Activation rows from which llama.cpp multiplies Q6_K weights with its tiled kernel
/// (`ggml_tiled_min_batch`).
pub const Q6K_TILED_MIN_ROWS: usize = 8;

/// `out[r][i] = w_rows[r] · acts[i]` for Q6_K weight rows, summed in `order`.
pub fn q6_k<const R: usize, const N: usize>(
    isa: Isa,
    order: Q6KOrder,
    w_rows: [&[u8]; R],
    acts: [&[SuperBlock]; N],
    out: &mut [[f32; N]; R],
) {
    check_lengths(&w_rows, Q6_K_BYTES, &acts);
    let tiled = order == Q6KOrder::Tiled;
    match isa {
        // SAFETY: as in `q4_k`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if tiled => unsafe { dot_k_zmm::q6_k::<R, N, true>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { dot_k_zmm::q6_k::<R, N, false>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if tiled => unsafe { x86::q6_k::<R, N, true>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q6_k::<R, N, false>(w_rows, acts, out) },
        _ if tiled => portable::q6_k::<R, N, true>(w_rows, acts, out),
        _ => portable::q6_k::<R, N, false>(w_rows, acts, out),
    }
}

fn check_lengths<const R: usize, const N: usize>(w_rows: &[&[u8]; R], block_bytes: usize, acts: &[&[SuperBlock]; N]) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * block_bytes) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    /// `STEP`: sub-blocks per float step (8: a super-block, 2: a pair).
    fn q4_k_row<const N: usize, const STEP: usize>(w: &[u8], acts: [&[SuperBlock]; N], out: &mut [f32; N]) {
        let mut acc = [0.0f32; N];
        let mut acc_min = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q4_K_BYTES).enumerate() {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let (scales, mins) = q4_k_scales(&block[4..16]);
            let mut x = [0i32; SUPER_BLOCK];
            for (j, chunk) in block[16..].chunks_exact(32).enumerate() {
                for (l, byte) in chunk.iter().enumerate() {
                    x[64 * j + l] = i32::from(byte & 0x0F);
                    x[64 * j + 32 + l] = i32::from(byte >> 4);
                }
            }
            for i in 0..N {
                let a = &acts[i][ib];
                for first in (0..8).step_by(STEP) {
                    let mut sum = 0i32;
                    for s in first..first + STEP {
                        let dot: i32 = (32 * s..32 * s + 32).map(|k| x[k] * i32::from(a.qs[k])).sum();
                        sum += i32::from(scales[s]) * dot;
                    }
                    acc[i] = (sum as f32).mul_add(d * a.d, acc[i]);
                    let min_sum = q4_k_min_sum(&mins, a, first..first + STEP);
                    acc_min[i] = (min_sum as f32).mul_add(dmin * a.d, acc_min[i]);
                }
            }
        }
        for i in 0..N {
            out[i] = acc[i] - acc_min[i];
        }
    }

    fn q6_k_row<const N: usize, const TILED: bool>(w: &[u8], acts: [&[SuperBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        let mut sums = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q6_K_BYTES).enumerate() {
            let (ql, qh) = (&block[..128], &block[128..192]);
            let scales: [i32; 16] = std::array::from_fn(|k| i32::from(block[192 + k] as i8));
            let d = f16_at(block, 208);
            // The unsigned 6-bit values, 0..=63 (ggml subtracts 32 through the activation sums).
            let mut x = [0i32; SUPER_BLOCK];
            for half in 0..2 {
                let (ql, qh, x) = (&ql[64 * half..], &qh[32 * half..], &mut x[128 * half..]);
                for l in 0..32 {
                    x[l] = i32::from((ql[l] & 0x0F) | ((qh[l] & 3) << 4));
                    x[32 + l] = i32::from((ql[32 + l] & 0x0F) | (((qh[l] >> 2) & 3) << 4));
                    x[64 + l] = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    x[96 + l] = i32::from((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
            for i in 0..N {
                let a = &acts[i][ib];
                let scale = a.d * d;
                let mut total = 0i32;
                for (k, lane) in lanes[i].iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for c in 0..8 {
                        let dot: i32 = (32 * c + 4 * k..32 * c + 4 * k + 4).map(|b| x[b] * i32::from(a.qs[b])).sum();
                        sum += scales[2 * c + k / 4] * dot;
                    }
                    let offset =
                        i32::from(a.bsums[2 * k]) * scales[2 * k] + i32::from(a.bsums[2 * k + 1]) * scales[2 * k + 1];
                    total += sum - 32 * offset;
                    if !TILED {
                        *lane = scale.mul_add((sum - 32 * offset) as f32, *lane);
                    }
                }
                if TILED {
                    sums[i] = (total as f32 * d).mul_add(a.d, sums[i]);
                }
            }
        }
        for i in 0..N {
            out[i] = if TILED { sums[i] } else { hsum_lanes(lanes[i]) };
        }
    }

    pub fn q4_k<const R: usize, const N: usize, const STEP: usize>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        for r in 0..R {
            q4_k_row::<N, STEP>(w[r], acts, &mut out[r]);
        }
    }

    pub fn q6_k<const R: usize, const N: usize, const TILED: bool>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        for r in 0..R {
            q6_k_row::<N, TILED>(w[r], acts, &mut out[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// The sum of eight 32-bit lanes (exact: integer).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
        _mm_cvtsi128_si32(s)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum_f32(v: __m256) -> f32 {
        let mut l = [0.0f32; 8];
        // SAFETY: `l` holds eight f32.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
        hsum_lanes(l)
    }

    /// Q4_K rows in the repacked kernels' order, `STEP` sub-blocks per float step (see the module
    /// comment).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; each `w[r]` holds `acts[i].len()` Q4_K blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_k<const R: usize, const N: usize, const STEP: usize>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[0.0f32; N]; R];
        let mut acc_min = [[0.0f32; N]; R];
        let low = _mm256_set1_epi8(0x0F);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            // One weight row's block unpacked at a time (sixteen registers), against every activation row:
            // the activations are re-read from the level-1 cache instead of spilling unpacked weights.
            for r in 0..R {
                let block = &w[r][ib * Q4_K_BYTES..(ib + 1) * Q4_K_BYTES];
                // SAFETY: the block starts with the f16 pair `d`, `dmin`.
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { block.as_ptr().cast::<i32>().read_unaligned() }));
                let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
                let (sc, mins) = q4_k_scales(&block[4..16]);
                let mut x = [_mm256_setzero_si256(); 8];
                let mut scales = [_mm256_setzero_si256(); 8];
                for j in 0..4 {
                    // SAFETY: 32 bytes at 16 + 32j lie inside the 144-byte block.
                    let bits = unsafe { _mm256_loadu_si256(block.as_ptr().add(16 + 32 * j).cast()) };
                    x[2 * j] = _mm256_and_si256(bits, low);
                    x[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low);
                }
                for (scale, &v) in scales.iter_mut().zip(&sc) {
                    *scale = _mm256_set1_epi16(i16::from(v));
                }
                for i in 0..N {
                    let a = &acts[i][ib];
                    for first in (0..8).step_by(STEP) {
                        let mut sum = _mm256_setzero_si256();
                        for s in first..first + STEP {
                            // SAFETY: `qs` holds 256 bytes.
                            let y = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(32 * s).cast()) };
                            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(scales[s], _mm256_maddubs_epi16(x[s], y)));
                        }
                        acc[r][i] = (hsum_i32(sum) as f32).mul_add(d * a.d, acc[r][i]);
                        let min_sum = q4_k_min_sum(&mins, a, first..first + STEP);
                        acc_min[r][i] = (min_sum as f32).mul_add(dmin * a.d, acc_min[r][i]);
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

    /// Q6_K rows, in `ggml_vec_dot_q6_K_q8_K`'s order or (`TILED`) the tiled kernel's (see the module
    /// comment): both form the same integers, the tiled order sums them across lanes first.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; each `w[r]` holds `acts[i].len()` Q6_K blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q6_k<const R: usize, const N: usize, const TILED: bool>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        let mut sums = [[0.0f32; N]; R];
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(3);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            // One weight row's block unpacked at a time, against every activation row (as in `q4_k`).
            for r in 0..R {
                let block = &w[r][ib * Q6_K_BYTES..(ib + 1) * Q6_K_BYTES];
                let p = block.as_ptr();
                // SAFETY: the f16 `d` ends the 210-byte block.
                let bits = unsafe { p.add(208).cast::<u16>().read_unaligned() };
                let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
                let mut x = [_mm256_setzero_si256(); 8];
                for half in 0..2 {
                    // SAFETY: ql (128 bytes) and qh (64) lie inside the 210-byte block.
                    let (l0, l1, h) = unsafe {
                        (
                            _mm256_loadu_si256(p.add(64 * half).cast()),
                            _mm256_loadu_si256(p.add(64 * half + 32).cast()),
                            _mm256_loadu_si256(p.add(128 + 32 * half).cast()),
                        )
                    };
                    // The high two bits of each run, moved to bits 4 and 5.
                    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2));
                    let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(h), m2));
                    let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(h), m2));
                    let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(h), m2));
                    x[4 * half] = _mm256_or_si256(_mm256_and_si256(l0, m4), h0);
                    x[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), h1);
                    x[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4), h2);
                    x[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4), h3);
                }
                // SAFETY: the 16 scale bytes start at 192.
                let scales16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.add(192).cast()) });
                let mut scales = [_mm256_setzero_si256(); 8];
                for (c, scale) in scales.iter_mut().enumerate() {
                    // Scale 2c for the run's first 16 values, 2c + 1 for the next 16.
                    let (lo, hi) = (i16::from(block[192 + 2 * c] as i8), i16::from(block[193 + 2 * c] as i8));
                    *scale = _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi);
                }
                for i in 0..N {
                    let a = &acts[i][ib];
                    let mut sum = _mm256_setzero_si256();
                    for c in 0..8 {
                        // SAFETY: `qs` holds 256 bytes.
                        let y = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(32 * c).cast()) };
                        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(scales[c], _mm256_maddubs_epi16(x[c], y)));
                    }
                    // SAFETY: `bsums` holds sixteen i16.
                    let bsums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
                    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales16));
                    let exact = _mm256_sub_epi32(sum, offset);
                    if TILED {
                        sums[r][i] = (hsum_i32(exact) as f32 * d).mul_add(a.d, sums[r][i]);
                    } else {
                        acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * d), _mm256_cvtepi32_ps(exact), acc[r][i]);
                    }
                }
            }
        }
        for r in 0..R {
            for i in 0..N {
                out[r][i] = if TILED { sums[r][i] } else { hsum_f32(acc[r][i]) };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::isa::detect;
    use crate::kernels::quantize_k::quantize_row_k;

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect()
    }

    /// Random blocks with sane f16 scales: `d` (and Q4_K's `dmin`) 0.001–0.002.
    fn weight_row(blocks: usize, q4: bool, seed: u32) -> Vec<u8> {
        let size = if q4 { Q4_K_BYTES } else { Q6_K_BYTES };
        let mut row = bytes(blocks * size, seed);
        for block in row.chunks_exact_mut(size) {
            let d = half::f16::from_f32(0.001 + f32::from(block[1]) / 256_000.0).to_le_bytes();
            if q4 {
                let dmin = half::f16::from_f32(0.001 + f32::from(block[3]) / 256_000.0).to_le_bytes();
                block[..2].copy_from_slice(&d);
                block[2..4].copy_from_slice(&dmin);
            } else {
                block[208..].copy_from_slice(&d);
            }
        }
        row
    }

    fn activations(blocks: usize, seed: usize) -> Vec<SuperBlock> {
        let x: Vec<f32> =
            (0..blocks * SUPER_BLOCK).map(|i| (((i + seed) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0).collect();
        let mut out = vec![SuperBlock::default(); blocks];
        quantize_row_k(&x, &mut out);
        out
    }

    /// The dequantized weights and activations multiplied in f64: what every kernel approximates.
    fn exact(w: &[u8], a: &[SuperBlock], q4: bool) -> f64 {
        let mut total = 0.0f64;
        let size = if q4 { Q4_K_BYTES } else { Q6_K_BYTES };
        for (block, act) in w.chunks_exact(size).zip(a) {
            for k in 0..SUPER_BLOCK {
                let value = if q4 {
                    let (scales, mins) = q4_k_scales(&block[4..16]);
                    let (j, l) = (k / 64, k % 64);
                    let byte = block[16 + 32 * j + l % 32];
                    let q = f64::from(if l < 32 { byte & 0x0F } else { byte >> 4 });
                    let s = k / 32;
                    f64::from(f16_at(block, 0)) * f64::from(scales[s]) * q
                        - f64::from(f16_at(block, 2)) * f64::from(mins[s])
                } else {
                    let (half, l) = (k / 128, k % 128);
                    let (ql, qh) = (&block[64 * half..], &block[128 + 32 * half..]);
                    let (low, high) = match l / 32 {
                        0 => (ql[l] & 0x0F, qh[l] & 3),
                        1 => (ql[l] & 0x0F, (qh[l - 32] >> 2) & 3),
                        2 => (ql[l - 64] >> 4, (qh[l - 64] >> 4) & 3),
                        _ => (ql[l - 64] >> 4, qh[l - 96] >> 6),
                    };
                    let q = f64::from(i32::from(low | (high << 4)) - 32);
                    f64::from(f16_at(block, 208)) * f64::from(block[192 + k / 16] as i8) * q
                };
                total += value * f64::from(act.d) * f64::from(act.qs[k]);
            }
        }
        total
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits_close_to_the_exact_product() {
        let blocks = 6;
        let cases = [
            (true, Q4KOrder::Blocks, Q6KOrder::Lanes),
            (true, Q4KOrder::Pairs, Q6KOrder::Lanes),
            (false, Q4KOrder::Blocks, Q6KOrder::Lanes),
            (false, Q4KOrder::Blocks, Q6KOrder::Tiled),
        ];
        for (q4, q4_order, order) in cases {
            let w = weight_row(blocks, q4, 11);
            let acts: Vec<Vec<SuperBlock>> = (0..3).map(|s| activations(blocks, s * 101)).collect();
            let rows = [acts[0].as_slice(), acts[1].as_slice(), acts[2].as_slice()];
            let run = |isa: Isa| {
                let mut out = [[0.0f32; 3]; 2];
                if q4 {
                    q4_k(isa, q4_order, [&w, &w], rows, &mut out);
                } else {
                    q6_k(isa, order, [&w, &w], rows, &mut out);
                }
                let mut one = [[0.0f32; 1]; 1];
                if q4 {
                    q4_k(isa, q4_order, [&w], [rows[1]], &mut one);
                } else {
                    q6_k(isa, order, [&w], [rows[1]], &mut one);
                }
                assert_eq!(one[0][0].to_bits(), out[1][1].to_bits(), "{isa:?}: a 1×1 tile gives the 2×3 tile's bits");
                out
            };
            let expected = run(Isa::Portable);
            for i in 0..3 {
                let exact = exact(&w, &acts[i], q4);
                let got = f64::from(expected[0][i]);
                assert!((got - exact).abs() < 1e-4 * exact.abs().max(1.0), "q4={q4}: {got} vs {exact}");
            }
            let mut isas = Vec::new();
            if detect() != Isa::Portable {
                isas.push(Isa::Avx2);
            }
            if detect() == Isa::Avx512Vnni {
                isas.push(Isa::Avx512Vnni);
            }
            for isa in isas {
                let simd = run(isa);
                for r in 0..2 {
                    for i in 0..3 {
                        assert_eq!(simd[r][i].to_bits(), expected[r][i].to_bits(), "{isa:?} q4={q4} {r},{i}");
                    }
                }
            }
        }
    }
}
