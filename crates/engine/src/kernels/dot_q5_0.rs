//! Dot products of Q5_0 weight rows with 8-bit activation rows ([`super::quantize`]'s Q8_0 blocks), `N`
//! activation rows at a time.
//!
//! Why Q5_0 has a kernel of its own: K-quant files of models whose hidden size is not a multiple of 256
//! (the default SmolLM2's 576) store every such matrix in Q5_0 instead of Q4_K — llama.cpp's quantizer
//! falls back to it — so a "Q4_K_M" SmolLM2 is mostly Q5_0. Every path computes what ggml's x86
//! `ggml_vec_dot_q5_0_q8_0` computes: the 5-bit values as signed bytes (`q - 16`), per block eight exact
//! 32-bit sums of four adjacent byte products, each converted to f32 and fused-multiply-added, scaled by
//! `d_w · d_a`, into eight running lanes, summed at the end as ggml's `hsum_float_8`.

use super::BLOCK;
use super::dot::{f16_at, hsum_lanes};
use super::isa::Isa;
use super::quantize::ActivationBlock;

/// Bytes of one Q5_0 weight block: f16 scale `d`, 4 bytes of fifth bits, 16 bytes of low 4 bits.
pub const Q5_0_BYTES: usize = 22;

/// `out[r][i] = w_rows[r] · acts[i]` for Q5_0 weight rows (`acts[i].len()` blocks each).
pub fn q5_0<const R: usize, const N: usize>(
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: [&[ActivationBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * Q5_0_BYTES) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU; lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if R.is_multiple_of(2) => unsafe { x86::q5_0_zmm(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::q5_0_vnni(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q5_0_avx2(w_rows, acts, out) },
        _ => portable::q5_0(w_rows, acts, out),
    }
}

/// The 32 signed values of one Q5_0 block: low nibbles are values 0–15, high nibbles 16–31, bit `k` of
/// the little-endian `qh` word the fifth bit of value `k`.
#[inline(always)]
fn values(block: &[u8]) -> [i32; BLOCK] {
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    std::array::from_fn(|k| {
        let byte = block[6 + k % 16];
        let low = if k < 16 { byte & 0x0F } else { byte >> 4 };
        i32::from(low) + 16 * ((qh >> k) & 1) as i32 - 16
    })
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn row<const N: usize>(w: &[u8], acts: [&[ActivationBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        for (ib, block) in w.chunks_exact(Q5_0_BYTES).enumerate() {
            let d = f16_at(block, 0);
            let x = values(block);
            for i in 0..N {
                let a = &acts[i][ib];
                let scale = d * a.d;
                for (l, lane) in lanes[i].iter_mut().enumerate() {
                    let sum: i32 = (4 * l..4 * l + 4).map(|k| x[k] * i32::from(a.qs[k])).sum();
                    *lane = scale.mul_add(sum as f32, *lane);
                }
            }
        }
        for i in 0..N {
            out[i] = hsum_lanes(lanes[i]);
        }
    }

    pub fn q5_0<const R: usize, const N: usize>(w: [&[u8]; R], acts: [&[ActivationBlock]; N], out: &mut [[f32; N]; R]) {
        for r in 0..R {
            row(w[r], acts, &mut out[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
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

    /// A block's 32 values as signed bytes, `q - 16`: the nibbles, with `0xF0` or-ed in where the fifth
    /// bit is clear (ggml's `bytes_from_bits_32` and `_mm256_andnot_si256`).
    ///
    /// # Safety
    /// `p` points at a whole Q5_0 block.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block_values(p: *const u8) -> __m256i {
        // SAFETY: the caller passes a whole 22-byte block.
        let (qh, packed) = unsafe { (p.add(2).cast::<i32>().read_unaligned(), _mm_loadu_si128(p.add(6).cast())) };
        let nibbles = _mm256_and_si256(_mm256_set1_epi8(0x0F), _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed));
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh),
            _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
        );
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, bit_mask), _mm256_set1_epi64x(-1));
        _mm256_or_si256(nibbles, _mm256_andnot_si256(set, _mm256_set1_epi8(0xF0u8 as i8)))
    }

    macro_rules! q5_0_kernel {
        ($name:ident, $features:literal, $idot:ident) => {
            /// # Safety
            /// The CPU has `$features`; each `w[r]` holds `acts[i].len()` Q5_0 blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize, const N: usize>(
                w: [&[u8]; R],
                acts: [&[ActivationBlock]; N],
                out: &mut [[f32; N]; R],
            ) {
                let mut acc = [[_mm256_setzero_ps(); N]; R];
                let blocks = acts.first().map_or(0, |a| a.len());
                for ib in 0..blocks {
                    let mut ax = [_mm256_setzero_si256(); R];
                    let mut x = [_mm256_setzero_si256(); R];
                    let mut d = [0.0f32; R];
                    for r in 0..R {
                        // SAFETY: block `ib` lies inside every row (checked by the caller).
                        let block = unsafe { w[r].as_ptr().add(ib * Q5_0_BYTES) };
                        // SAFETY: the block starts with its f16 scale.
                        let bits = unsafe { block.cast::<u16>().read_unaligned() };
                        d[r] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
                        // SAFETY: `block` is a whole Q5_0 block.
                        x[r] = unsafe { block_values(block) };
                        ax[r] = _mm256_sign_epi8(x[r], x[r]);
                    }
                    for i in 0..N {
                        let a = &acts[i][ib];
                        // SAFETY: `qs` is 32 aligned bytes.
                        let y = unsafe { _mm256_load_si256(a.qs.as_ptr().cast()) };
                        for r in 0..R {
                            // |x| as unsigned and the activations carrying x's sign: ggml's
                            // `mul_sum_i8_pairs_float`.
                            let xy = _mm256_cvtepi32_ps($idot(ax[r], _mm256_sign_epi8(y, x[r])));
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

    q5_0_kernel!(q5_0_avx2, "avx2,fma,f16c", idot_avx2);
    q5_0_kernel!(q5_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", idot_vnni);

    /// Lanes 0–7 from `v[0]`, lanes 8–15 from `v[1]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn spread(v: __m128) -> __m512 {
        let index = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm512_permutexvar_ps(index, _mm512_castps128_ps512(v))
    }

    /// The 8-lane sums of each half of `v`, in ggml's order: rows `2k` and `2k + 1`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn hsum_halves(v: __m512) -> (f32, f32) {
        let mut l = [0.0f32; 16];
        // SAFETY: `l` holds sixteen f32.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), v) };
        let lane = |h: &[f32]| -> [f32; 8] { std::array::from_fn(|i| h[i]) };
        (hsum_lanes(lane(&l[..8])), hsum_lanes(lane(&l[8..])))
    }

    /// Q5_0 with weight rows `2k` and `2k + 1` sharing one 512-bit register (eight lanes each). The
    /// 5-bit values stay unsigned (`q`, 0–31) and each 4-byte sum `Σ q·a` is corrected by `16 · Σ a`,
    /// formed once per activation block for every weight row: the same exact integers as ggml's signed
    /// `Σ (q - 16)·a`, with fewer instructions per product. Each row's lanes then see exactly the float
    /// operations of [`q5_0_vnni`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `R` is even; each `w[r]` holds
    /// `acts[i].len()` Q5_0 blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q5_0_zmm<const R: usize, const N: usize>(
        w: [&[u8]; R],
        acts: [&[ActivationBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let low = _mm512_set1_epi8(0x0F);
        let sixteen = _mm512_set1_epi8(16);
        let four = 0x0004_0004_0004_0004_i64;
        let shifts = _mm512_set_epi64(four, four, 0, 0, four, four, 0, 0);
        let halves = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            // Each activation block for both halves, and `-16 · Σ a` per 4-byte group: the starting value of
            // every product's sums.
            let mut y = [_mm512_setzero_si512(); N];
            let mut bias = [_mm512_setzero_si512(); N];
            for i in 0..N {
                // SAFETY: `qs` is 32 aligned bytes.
                y[i] = _mm512_broadcast_i64x4(unsafe { _mm256_load_si256(acts[i][ib].qs.as_ptr().cast()) });
                let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), sixteen, y[i]);
                bias[i] = _mm512_sub_epi32(_mm512_setzero_si512(), sums);
            }
            for k in 0..R / 2 {
                // SAFETY: block `ib` lies inside every row (checked by the caller); a block is the f16 `d`
                // (bytes 0–1), the fifth bits (2–5) and the nibbles (6–21).
                let (d, set, p0, p1) = unsafe {
                    let b0 = w[2 * k].as_ptr().add(ib * Q5_0_BYTES);
                    let b1 = w[2 * k + 1].as_ptr().add(ib * Q5_0_BYTES);
                    let (d0, d1) = (b0.cast::<u16>().read_unaligned(), b1.cast::<u16>().read_unaligned());
                    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(d0) | (i32::from(d1) << 16)));
                    let (q0, q1) = (b0.add(2).cast::<u32>().read_unaligned(), b1.add(2).cast::<u32>().read_unaligned());
                    let set: __mmask64 = u64::from(q0) | (u64::from(q1) << 32);
                    (d, set, _mm_loadu_si128(b0.add(6).cast()), _mm_loadu_si128(b1.add(6).cast()))
                };
                // [a, a, b, b] → [a & 15, a >> 4, b & 15, b >> 4]: each row's 32 nibbles, in order, plus 16
                // where the fifth bit is set.
                let ab = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(p0), p1);
                let x = _mm512_permutexvar_epi64(halves, _mm512_castsi256_si512(ab));
                let x = _mm512_and_si512(_mm512_srlv_epi16(x, shifts), low);
                let x = _mm512_mask_add_epi8(x, set, x, sixteen);
                let d = spread(d);
                for i in 0..N {
                    let sums = _mm512_dpbusd_epi32(bias[i], x, y[i]);
                    let scale = _mm512_mul_ps(d, _mm512_set1_ps(acts[i][ib].d));
                    acc[k][i] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sums), acc[k][i]);
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
mod tests {
    use super::*;
    use crate::kernels::isa::detect;
    use crate::kernels::quantize::quantize_row;

    fn weight_row(blocks: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        let mut row: Vec<u8> = (0..blocks * Q5_0_BYTES)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for block in row.chunks_exact_mut(Q5_0_BYTES) {
            let d = half::f16::from_f32(0.01 + f32::from(block[0]) / 25_600.0);
            block[..2].copy_from_slice(&d.to_le_bytes());
        }
        row
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits_as_the_dequantized_product() {
        let blocks = 24;
        let w = weight_row(blocks, 5);
        let acts: Vec<Vec<ActivationBlock>> = (0..3)
            .map(|s| {
                let x: Vec<f32> =
                    (0..blocks * BLOCK).map(|i| (((i + 101 * s) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0).collect();
                let mut a = vec![ActivationBlock::default(); blocks];
                quantize_row(&x, &mut a);
                a
            })
            .collect();
        let rows = [acts[0].as_slice(), acts[1].as_slice(), acts[2].as_slice()];
        let run = |isa: Isa| {
            let mut out = [[0.0f32; 3]; 2];
            q5_0(isa, [&w, &w], rows, &mut out);
            out
        };
        let expected = run(Isa::Portable);
        for (i, a) in acts.iter().enumerate() {
            let exact: f64 = w
                .chunks_exact(Q5_0_BYTES)
                .zip(a)
                .map(|(block, act)| {
                    let x = values(block);
                    let dot: i32 = x.iter().zip(&act.qs).map(|(x, q)| x * i32::from(*q)).sum();
                    f64::from(f16_at(block, 0)) * f64::from(act.d) * f64::from(dot)
                })
                .sum();
            assert!((f64::from(expected[1][i]) - exact).abs() < 1e-4 * exact.abs().max(1.0));
        }
        let mut isas = Vec::new();
        if detect() != Isa::Portable {
            isas.push(Isa::Avx2);
        }
        if detect() == Isa::Avx512Vnni {
            isas.push(Isa::Avx512Vnni);
        }
        for isa in isas {
            let got = run(isa);
            for r in 0..2 {
                for i in 0..3 {
                    assert_eq!(got[r][i].to_bits(), expected[r][i].to_bits(), "{isa:?} {r},{i}");
                }
            }
        }
    }
}
