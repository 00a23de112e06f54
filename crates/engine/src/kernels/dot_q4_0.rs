//! Dot products of Q4_0 weight rows with 8-bit activation rows ([`super::quantize`]'s Q8_0 blocks), `N`
//! activation rows at a time.
//!
//! Which llama.cpp kernel this follows: on AVX2 CPUs llama.cpp repacks every Q4_0 matrix whose row count
//! is a multiple of 8 (`block_q4_0x8`, every projection of a Llama model) and multiplies it with
//! `ggml_gemv_q4_0_8x8_q8_0` / `ggml_gemm_q4_0_8x8_q8_0`. Both form, per block, one exact 32-bit integer
//! `Σ (q - 8)·a` over the block's 32 values, convert it to f32 and fused-multiply-add it, times
//! `d_w · d_a`, into one running sum per output: no lanes, no final horizontal sum, and the same order
//! for decode and prefill. (Its unpacked `ggml_vec_dot_q4_0_q8_0`, with eight lanes, runs only for
//! matrices of other row counts; those are summed here the repacked way too, a last-bit difference.)
//!
//! The integers are exact however they are formed: the SIMD paths keep the nibbles unsigned (0–15) and
//! subtract `8 · Σ a`, formed once per activation block for every weight row, and sum four rows' lanes at
//! once with horizontal adds; the portable path multiplies the signed values. All agree bit for bit (the
//! tests check it).

use super::BLOCK;
use super::dot::f16_at;
use super::isa::Isa;
use super::quantize::ActivationBlock;

/// Bytes of one Q4_0 weight block: f16 scale `d`, 16 bytes of 4-bit values (value `k` in the low nibble
/// of byte `k` for `k < 16`, value `k` in the high nibble of byte `k - 16` otherwise).
pub const Q4_0_BYTES: usize = 18;

/// `out[r][i] = w_rows[r] · acts[i]` for Q4_0 weight rows (`acts[i].len()` blocks each).
pub fn q4_0<const R: usize, const N: usize>(
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: [&[ActivationBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * Q4_0_BYTES) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU; lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::q4_0_vnni(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q4_0_avx2(w_rows, acts, out) },
        _ => portable::q4_0(w_rows, acts, out),
    }
}

/// The 32 signed values (`q - 8`) of one Q4_0 block.
#[inline(always)]
fn values(block: &[u8]) -> [i32; BLOCK] {
    std::array::from_fn(|k| {
        let byte = block[2 + k % 16];
        i32::from(if k < 16 { byte & 0x0F } else { byte >> 4 }) - 8
    })
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn row<const N: usize>(w: &[u8], acts: [&[ActivationBlock]; N], out: &mut [f32; N]) {
        let mut acc = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q4_0_BYTES).enumerate() {
            let d = f16_at(block, 0);
            let x = values(block);
            for i in 0..N {
                let a = &acts[i][ib];
                let sum: i32 = x.iter().zip(&a.qs).map(|(x, q)| x * i32::from(*q)).sum();
                acc[i] = (sum as f32).mul_add(d * a.d, acc[i]);
            }
        }
        *out = acc;
    }

    pub fn q4_0<const R: usize, const N: usize>(w: [&[u8]; R], acts: [&[ActivationBlock]; N], out: &mut [[f32; N]; R]) {
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

    /// The sum of the eight lanes of each of four vectors: `[Σ v0, Σ v1, Σ v2, Σ v3]` (exact integers).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum4(v: [__m256i; 4]) -> __m128i {
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }

    /// The sum of the eight lanes of `v`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum1(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_hadd_epi32(s, s);
        _mm_cvtsi128_si32(_mm_hadd_epi32(s, s))
    }

    macro_rules! q4_0_kernel {
        ($name:ident, $features:literal, $idot:ident) => {
            /// # Safety
            /// The CPU has `$features`; each `w[r]` holds `acts[i].len()` Q4_0 blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize, const N: usize>(
                w: [&[u8]; R],
                acts: [&[ActivationBlock]; N],
                out: &mut [[f32; N]; R],
            ) {
                // Four weight rows share one 4-lane float accumulator per activation row (lane `r % 4`).
                let mut acc = [[_mm_setzero_ps(); N]; R];
                let low = _mm256_set1_epi8(0x0F);
                let eight = _mm256_set1_epi8(8);
                let blocks = acts.first().map_or(0, |a| a.len());
                for ib in 0..blocks {
                    let mut x = [_mm256_setzero_si256(); R];
                    let mut d = [0.0f32; R];
                    for r in 0..R {
                        // SAFETY: block `ib` lies inside every row (checked by the caller).
                        let p = unsafe { w[r].as_ptr().add(ib * Q4_0_BYTES) };
                        // SAFETY: the block starts with its f16 scale, then 16 bytes of nibbles.
                        let (bits, packed) =
                            unsafe { (p.cast::<u16>().read_unaligned(), _mm_loadu_si128(p.add(2).cast())) };
                        d[r] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))));
                        x[r] = _mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed));
                    }
                    for i in 0..N {
                        let a = &acts[i][ib];
                        // SAFETY: `qs` is 32 aligned bytes.
                        let y = unsafe { _mm256_load_si256(a.qs.as_ptr().cast()) };
                        // `8 · Σ a` per 4-byte group: what the unsigned nibbles add over `q - 8`.
                        let bias = $idot(eight, y);
                        let mut r = 0;
                        while r + 4 <= R {
                            let sums: [__m256i; 4] =
                                std::array::from_fn(|k| _mm256_sub_epi32($idot(x[r + k], y), bias));
                            // SAFETY: `d[r..r + 4]` holds four f32.
                            let scale = _mm_mul_ps(unsafe { _mm_loadu_ps(d[r..r + 4].as_ptr()) }, _mm_set1_ps(a.d));
                            acc[r][i] = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4(sums)), scale, acc[r][i]);
                            r += 4;
                        }
                        while r < R {
                            let sum = hsum1(_mm256_sub_epi32($idot(x[r], y), bias)) as f32;
                            let lane = _mm_cvtss_f32(acc[r][i]);
                            acc[r][i] = _mm_set_ss(sum.mul_add(d[r] * a.d, lane));
                            r += 1;
                        }
                    }
                }
                for i in 0..N {
                    let mut r = 0;
                    while r + 4 <= R {
                        let mut l = [0.0f32; 4];
                        // SAFETY: `l` holds four f32.
                        unsafe { _mm_storeu_ps(l.as_mut_ptr(), acc[r][i]) };
                        for k in 0..4 {
                            out[r + k][i] = l[k];
                        }
                        r += 4;
                    }
                    while r < R {
                        out[r][i] = _mm_cvtss_f32(acc[r][i]);
                        r += 1;
                    }
                }
            }
        };
    }

    q4_0_kernel!(q4_0_avx2, "avx2,fma,f16c", idot_avx2);
    q4_0_kernel!(q4_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", idot_vnni);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::detect;
    use crate::kernels::quantize::quantize_row;

    fn weight_row(blocks: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        let mut row: Vec<u8> = (0..blocks * Q4_0_BYTES)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for block in row.chunks_exact_mut(Q4_0_BYTES) {
            let d = half::f16::from_f32(0.01 + f32::from(block[0]) / 25_600.0);
            block[..2].copy_from_slice(&d.to_le_bytes());
        }
        row
    }

    fn activations(blocks: usize, seed: usize) -> Vec<ActivationBlock> {
        let x: Vec<f32> =
            (0..blocks * BLOCK).map(|i| (((i + 101 * seed) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0).collect();
        let mut a = vec![ActivationBlock::default(); blocks];
        quantize_row(&x, &mut a);
        a
    }

    /// llama.cpp's repacked kernel, written out: one integer per block, one fused multiply-add per block.
    fn reference(w: &[u8], a: &[ActivationBlock]) -> f32 {
        w.chunks_exact(Q4_0_BYTES).zip(a).fold(0.0f32, |acc, (block, act)| {
            let dot: i32 = values(block).iter().zip(&act.qs).map(|(x, q)| x * i32::from(*q)).sum();
            (dot as f32).mul_add(f16_at(block, 0) * act.d, acc)
        })
    }

    #[test]
    fn every_instruction_set_gives_the_reference_bit_for_bit() {
        let blocks = 24;
        let w: Vec<Vec<u8>> = (0..5).map(|s| weight_row(blocks, 5 + s)).collect();
        let acts: Vec<Vec<ActivationBlock>> = (0..3).map(|s| activations(blocks, s)).collect();
        let rows = [acts[0].as_slice(), acts[1].as_slice(), acts[2].as_slice()];
        let mut isas = vec![Isa::Portable];
        if detect() != Isa::Portable {
            isas.push(Isa::Avx2);
        }
        if detect() == Isa::Avx512Vnni {
            isas.push(Isa::Avx512Vnni);
        }
        for isa in isas {
            // A 4×3 tile (the row groups the SIMD paths sum together) and a 1×3 one.
            let mut four = [[0.0f32; 3]; 4];
            q4_0(isa, [&w[0], &w[1], &w[2], &w[3]], rows, &mut four);
            let mut one = [[0.0f32; 3]; 1];
            q4_0(isa, [&w[4]], rows, &mut one);
            for i in 0..3 {
                for r in 0..4 {
                    assert_eq!(four[r][i].to_bits(), reference(&w[r], &acts[i]).to_bits(), "{isa:?} {r},{i}");
                }
                assert_eq!(one[0][i].to_bits(), reference(&w[4], &acts[i]).to_bits(), "{isa:?} single row");
            }
        }
    }

    #[test]
    fn the_result_approximates_the_real_dot_product() {
        let blocks = 18;
        let (w, a) = (weight_row(blocks, 3), activations(blocks, 7));
        let exact: f64 = w
            .chunks_exact(Q4_0_BYTES)
            .zip(&a)
            .map(|(block, act)| {
                let d = f64::from(f16_at(block, 0)) * f64::from(act.d);
                values(block).iter().zip(&act.qs).map(|(x, q)| d * f64::from(*x) * f64::from(*q)).sum::<f64>()
            })
            .sum();
        let mut out = [[0.0f32]];
        q4_0(crate::kernels::isa::isa(), [&w], [&a], &mut out);
        let got = out[0][0];
        assert!((f64::from(got) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{got} vs {exact}");
    }
}
