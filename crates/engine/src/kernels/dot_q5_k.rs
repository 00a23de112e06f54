//! Dot products of Q5_K weight rows (ggml's 256-value super-blocks of 5-bit values with 6-bit sub-block
//! scales and minimums) with Q8_K activation rows, `N` activation rows at a time.
//!
//! llama.cpp does not repack Q5_K on x86, so like Q6_K ([`super::dot_k`]) it takes two orders by batch
//! size ([`Q6KOrder`]): below 8 activation rows `ggml_vec_dot_q5_K_q8_K` — eight 32-bit lanes per
//! super-block, lane `k` holding `Σ scale · q·a` over bytes `4k..4k+4` of each 32-value run, fused-multiply-
//! added times `d_a · d_w`, and the minimums' exact integer `Σ min · (a-sums)` fused-multiply-added times
//! `-d_a · dmin_w` into a separate sum added after `hsum_float_8`; from 8 rows its tiled matmul — per
//! super-block `(s1 · d_w) - dmin_w · s2` (one fused step), then fused-multiply-added times `d_a` into a
//! running sum. The portable and AVX2 paths form the same integers and give the same bits.

use super::dot::{f16_at, hsum_lanes};
use super::dot_k::Q6KOrder;
use super::isa::Isa;
use super::k_blocks::{q4_k_min_sum, q4_k_scales};
use super::quantize_k::{SUPER_BLOCK, SuperBlock};

/// Bytes of one Q5_K block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and minimums (Q4_K's packing),
/// 32 bytes of fifth bits, 128 bytes of low 4 bits.
pub const Q5_K_BYTES: usize = 176;

/// `out[r][i] = w_rows[r] · acts[i]` for Q5_K weight rows, summed in `order`.
pub fn q5_k<const R: usize, const N: usize>(
    isa: Isa,
    order: Q6KOrder,
    w_rows: [&[u8]; R],
    acts: [&[SuperBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * Q5_K_BYTES) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
    let tiled = order == Q6KOrder::Tiled;
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU (both include AVX2, FMA and
        // F16C); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::Avx2 if tiled => unsafe { x86::q5_k::<R, N, true>(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni | Isa::Avx2 => unsafe { x86::q5_k::<R, N, false>(w_rows, acts, out) },
        _ if tiled => portable::q5_k::<R, N, true>(w_rows, acts, out),
        _ => portable::q5_k::<R, N, false>(w_rows, acts, out),
    }
}

/// The 256 unsigned 5-bit values of a Q5_K block: run `2j` the low nibbles of bytes `32j..32j+32` with bit
/// `2j` of each `qh` byte, run `2j + 1` the high nibbles with bit `2j + 1`.
#[inline(always)]
fn values(block: &[u8]) -> [i32; SUPER_BLOCK] {
    let (qh, qs) = (&block[16..48], &block[48..176]);
    let mut x = [0i32; SUPER_BLOCK];
    for j in 0..4 {
        for l in 0..32 {
            let byte = qs[32 * j + l];
            x[64 * j + l] = i32::from(byte & 0x0F) + 16 * i32::from((qh[l] >> (2 * j)) & 1);
            x[64 * j + 32 + l] = i32::from(byte >> 4) + 16 * i32::from((qh[l] >> (2 * j + 1)) & 1);
        }
    }
    x
}

/// One activation block's float steps, shared by both paths: `lanes` the eight exact lane sums,
/// `min_sum` the minimums' exact sum.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<const TILED: bool>(
    lanes_int: [i32; 8],
    min_sum: i32,
    d: f32,
    dmin: f32,
    a_d: f32,
    lanes: &mut [f32; 8],
    summs: &mut f32,
    sums: &mut f32,
) {
    if TILED {
        let s1: i32 = lanes_int.iter().sum();
        let r = (-dmin).mul_add(min_sum as f32, s1 as f32 * d);
        *sums = r.mul_add(a_d, *sums);
    } else {
        let scale = a_d * d;
        for (lane, v) in lanes.iter_mut().zip(lanes_int) {
            *lane = scale.mul_add(v as f32, *lane);
        }
        *summs = (-a_d * dmin).mul_add(min_sum as f32, *summs);
    }
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn row<const N: usize, const TILED: bool>(w: &[u8], acts: [&[SuperBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        let mut summs = [0.0f32; N];
        let mut sums = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q5_K_BYTES).enumerate() {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let (scales, mins) = q4_k_scales(&block[4..16]);
            let x = values(block);
            for i in 0..N {
                let a = &acts[i][ib];
                let lanes_int: [i32; 8] = std::array::from_fn(|k| {
                    (0..8)
                        .map(|s| {
                            let run = 32 * s + 4 * k;
                            i32::from(scales[s]) * (run..run + 4).map(|b| x[b] * i32::from(a.qs[b])).sum::<i32>()
                        })
                        .sum()
                });
                let min_sum = q4_k_min_sum(&mins, a, 0..8);
                step::<TILED>(lanes_int, min_sum, d, dmin, a.d, &mut lanes[i], &mut summs[i], &mut sums[i]);
            }
        }
        for i in 0..N {
            out[i] = if TILED { sums[i] } else { hsum_lanes(lanes[i]) + summs[i] };
        }
    }

    pub fn q5_k<const R: usize, const N: usize, const TILED: bool>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        for r in 0..R {
            row::<N, TILED>(w[r], acts, &mut out[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Q5_K rows (see the module comment).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; each `w[r]` holds `acts[i].len()` Q5_K blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q5_k<const R: usize, const N: usize, const TILED: bool>(
        w: [&[u8]; R],
        acts: [&[SuperBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut lanes = [[[0.0f32; 8]; N]; R];
        let mut summs = [[0.0f32; N]; R];
        let mut sums = [[0.0f32; N]; R];
        let m4 = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            for r in 0..R {
                let block = &w[r][ib * Q5_K_BYTES..(ib + 1) * Q5_K_BYTES];
                let p = block.as_ptr();
                // SAFETY: the block starts with the f16 pair `d`, `dmin`.
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { p.cast::<i32>().read_unaligned() }));
                let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
                let (sc, mins) = q4_k_scales(&block[4..16]);
                // SAFETY: qh (32 bytes at 16) and qs (128 at 48) lie inside the 176-byte block.
                let qh = unsafe { _mm256_loadu_si256(p.add(16).cast()) };
                let mut x = [_mm256_setzero_si256(); 8];
                let mut scales = [_mm256_setzero_si256(); 8];
                for j in 0..4 {
                    // SAFETY: as above.
                    let bits = unsafe { _mm256_loadu_si256(p.add(48 + 32 * j).cast()) };
                    let (s0, s1) = (_mm_cvtsi32_si128(2 * j as i32), _mm_cvtsi32_si128(2 * j as i32 + 1));
                    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srl_epi16(qh, s0), one));
                    let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srl_epi16(qh, s1), one));
                    x[2 * j] = _mm256_or_si256(_mm256_and_si256(bits, m4), h0);
                    x[2 * j + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), h1);
                }
                for (scale, &v) in scales.iter_mut().zip(&sc) {
                    *scale = _mm256_set1_epi16(i16::from(v));
                }
                for i in 0..N {
                    let a = &acts[i][ib];
                    let mut sum = _mm256_setzero_si256();
                    for s in 0..8 {
                        // SAFETY: `qs` holds 256 bytes.
                        let y = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(32 * s).cast()) };
                        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(scales[s], _mm256_maddubs_epi16(x[s], y)));
                    }
                    let mut lanes_int = [0i32; 8];
                    // SAFETY: `lanes_int` holds eight i32.
                    unsafe { _mm256_storeu_si256(lanes_int.as_mut_ptr().cast(), sum) };
                    let min_sum = q4_k_min_sum(&mins, a, 0..8);
                    step::<TILED>(
                        lanes_int,
                        min_sum,
                        d,
                        dmin,
                        a.d,
                        &mut lanes[r][i],
                        &mut summs[r][i],
                        &mut sums[r][i],
                    );
                }
            }
        }
        for r in 0..R {
            for i in 0..N {
                out[r][i] = if TILED { sums[r][i] } else { hsum_lanes(lanes[r][i]) + summs[r][i] };
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

    #[test]
    fn every_instruction_set_gives_the_same_bits_close_to_the_exact_product() {
        let blocks = 4;
        let mut state = 5u32;
        let mut w: Vec<u8> = (0..blocks * Q5_K_BYTES)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for block in w.chunks_exact_mut(Q5_K_BYTES) {
            let d = half::f16::from_f32(0.001 + f32::from(block[1]) / 256_000.0).to_le_bytes();
            let dmin = half::f16::from_f32(0.001 + f32::from(block[3]) / 256_000.0).to_le_bytes();
            block[..2].copy_from_slice(&d);
            block[2..4].copy_from_slice(&dmin);
        }
        let acts: Vec<Vec<SuperBlock>> = (0..3)
            .map(|s| {
                let x: Vec<f32> = (0..blocks * SUPER_BLOCK)
                    .map(|i| (((i + 101 * s) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0)
                    .collect();
                let mut a = vec![SuperBlock::default(); blocks];
                quantize_row_k(&x, &mut a);
                a
            })
            .collect();
        let rows = [acts[0].as_slice(), acts[1].as_slice(), acts[2].as_slice()];
        for order in [Q6KOrder::Lanes, Q6KOrder::Tiled] {
            let run = |isa: Isa| {
                let mut out = [[0.0f32; 3]; 2];
                q5_k(isa, order, [&w, &w], rows, &mut out);
                out
            };
            let expected = run(Isa::Portable);
            for i in 0..3 {
                let exact: f64 = w
                    .chunks_exact(Q5_K_BYTES)
                    .zip(&acts[i])
                    .map(|(block, act)| {
                        let (scales, mins) = q4_k_scales(&block[4..16]);
                        let (d, dmin) = (f64::from(f16_at(block, 0)), f64::from(f16_at(block, 2)));
                        values(block)
                            .iter()
                            .enumerate()
                            .map(|(k, &q)| {
                                let s = k / 32;
                                let v = d * f64::from(scales[s]) * f64::from(q) - dmin * f64::from(mins[s]);
                                v * f64::from(act.d) * f64::from(act.qs[k])
                            })
                            .sum::<f64>()
                    })
                    .sum();
                let got = f64::from(expected[0][i]);
                assert!((got - exact).abs() < 1e-4 * exact.abs().max(1.0), "{order:?}: {got} vs {exact}");
            }
            if detect() != Isa::Portable {
                let simd = run(Isa::Avx2);
                for r in 0..2 {
                    for i in 0..3 {
                        assert_eq!(simd[r][i].to_bits(), expected[r][i].to_bits(), "{order:?} {r},{i}");
                    }
                }
            }
        }
    }
}
