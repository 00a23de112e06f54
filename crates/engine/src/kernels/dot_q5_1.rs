//! Dot products of Q5_1 weight rows with Q8_1 activation rows ([`super::quantize`]'s blocks, whose `s`
//! carries `d · Σq`), `N` activation rows at a time.
//!
//! Why Q5_1: it is what llama.cpp's quantizer writes for Q5_K in rows whose length is not a multiple of 256
//! (a "Q5_K_M" SmolLM2 is mostly Q5_1). The arithmetic is ggml's x86 `ggml_vec_dot_q5_1_q8_1` (which
//! llama.cpp runs for every batch size: neither its tinyBLAS nor its repacking takes Q5_1), the same as
//! [`super::dot`]'s Q4_1 with a fifth bit: per block eight exact sums of four `u5 × i8` products,
//! fused-multiply-added times `d_w · d_a` into eight lanes, and `m · s` fused-multiply-added into a separate
//! sum; the lanes summed as `hsum_float_8`, the minimum sum added last.

use super::BLOCK;
use super::dot::{f16_at, hsum_lanes};
use super::isa::Isa;
use super::quantize::ActivationBlock;

/// Bytes of one Q5_1 weight block: f16 scale `d`, f16 minimum `m`, 4 bytes of fifth bits, 16 bytes of
/// low 4 bits.
pub const Q5_1_BYTES: usize = 24;

/// `out[r][i] = w_rows[r] · acts[i]` for Q5_1 weight rows (`acts[i].len()` blocks each).
pub fn q5_1<const R: usize, const N: usize>(
    isa: Isa,
    w_rows: [&[u8]; R],
    acts: [&[ActivationBlock]; N],
    out: &mut [[f32; N]; R],
) {
    let blocks = acts.first().map_or(0, |a| a.len());
    assert!(
        w_rows.iter().all(|w| w.len() == blocks * Q5_1_BYTES) && acts.iter().all(|a| a.len() == blocks),
        "row lengths differ"
    );
    match isa {
        // SAFETY: `isa` only names instruction sets `detect` found on this CPU; lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if R.is_multiple_of(2) => unsafe { x86::q5_1_zmm(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::q5_1_vnni(w_rows, acts, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::q5_1_avx2(w_rows, acts, out) },
        _ => portable::q5_1(w_rows, acts, out),
    }
}

/// The 32 unsigned 5-bit values of one Q5_1 block: low nibbles are values 0–15, high nibbles 16–31, bit
/// `k` of the little-endian `qh` word the fifth bit of value `k`.
#[inline(always)]
fn values(block: &[u8]) -> [i32; BLOCK] {
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    std::array::from_fn(|k| {
        let byte = block[8 + k % 16];
        let low = if k < 16 { byte & 0x0F } else { byte >> 4 };
        i32::from(low) + 16 * ((qh >> k) & 1) as i32
    })
}

#[allow(clippy::needless_range_loop)]
mod portable {
    use super::*;

    fn row<const N: usize>(w: &[u8], acts: [&[ActivationBlock]; N], out: &mut [f32; N]) {
        let mut lanes = [[0.0f32; 8]; N];
        let mut summs = [0.0f32; N];
        for (ib, block) in w.chunks_exact(Q5_1_BYTES).enumerate() {
            let (d, m) = (f16_at(block, 0), f16_at(block, 2));
            let x = values(block);
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

    pub fn q5_1<const R: usize, const N: usize>(w: [&[u8]; R], acts: [&[ActivationBlock]; N], out: &mut [[f32; N]; R]) {
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

    /// A block's 32 values as unsigned bytes: the nibbles, with `0x10` or-ed in where the fifth bit is set
    /// (ggml's `bytes_from_bits_32`).
    ///
    /// # Safety
    /// `p` points at a whole Q5_1 block.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block_values(p: *const u8) -> __m256i {
        // SAFETY: the caller passes a whole 24-byte block.
        let (qh, packed) = unsafe { (p.add(4).cast::<i32>().read_unaligned(), _mm_loadu_si128(p.add(8).cast())) };
        let nibbles = _mm256_and_si256(_mm256_set1_epi8(0x0F), _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed));
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh),
            _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
        );
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, bit_mask), _mm256_set1_epi64x(-1));
        _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }

    macro_rules! q5_1_kernel {
        ($name:ident, $features:literal, $idot:ident) => {
            /// # Safety
            /// The CPU has `$features`; each `w[r]` holds `acts[i].len()` Q5_1 blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const R: usize, const N: usize>(
                w: [&[u8]; R],
                acts: [&[ActivationBlock]; N],
                out: &mut [[f32; N]; R],
            ) {
                let mut acc = [[_mm256_setzero_ps(); N]; R];
                let mut summs = [[0.0f32; N]; R];
                let blocks = acts.first().map_or(0, |a| a.len());
                for ib in 0..blocks {
                    let mut x = [_mm256_setzero_si256(); R];
                    let mut dm = [(0.0f32, 0.0f32); R];
                    for r in 0..R {
                        // SAFETY: block `ib` lies inside every row (checked by the caller).
                        let block = unsafe { w[r].as_ptr().add(ib * Q5_1_BYTES) };
                        // SAFETY: the block starts with the f16 pair `d`, `m`.
                        let bits = unsafe { block.cast::<i32>().read_unaligned() };
                        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
                        dm[r] = (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)));
                        // SAFETY: `block` is a whole Q5_1 block.
                        x[r] = unsafe { block_values(block) };
                    }
                    for i in 0..N {
                        let a = &acts[i][ib];
                        // SAFETY: `qs` is 32 aligned bytes.
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

    q5_1_kernel!(q5_1_avx2, "avx2,fma,f16c", idot_avx2);
    q5_1_kernel!(q5_1_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", idot_vnni);

    /// Q5_1 with weight rows `2k` and `2k + 1` sharing one 512-bit register (eight lanes each), as
    /// [`super::super::dot_q5_0`]'s Q5_0 kernel: the fifth bits of both blocks form one 64-bit mask, and
    /// the unsigned values meet the activations in one `vpdpbusd`. Each row's lanes, and its `m · s`
    /// chain (lanes 1 and 3 of a four-lane register), see exactly the operations of [`q5_1_vnni`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `R` is even; each `w[r]` holds
    /// `acts[i].len()` Q5_1 blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q5_1_zmm<const R: usize, const N: usize>(
        w: [&[u8]; R],
        acts: [&[ActivationBlock]; N],
        out: &mut [[f32; N]; R],
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let mut summs = [[_mm_setzero_ps(); N]; R];
        let low = _mm512_set1_epi8(0x0F);
        let sixteen = _mm512_set1_epi8(16);
        let four = 0x0004_0004_0004_0004_i64;
        let shifts = _mm512_set_epi64(four, four, 0, 0, four, four, 0, 0);
        let halves = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
        // Lanes 0–7 take lane 0 (row 2k's d), lanes 8–15 lane 2 (row 2k + 1's d).
        let spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
        let blocks = acts.first().map_or(0, |a| a.len());
        for ib in 0..blocks {
            let mut y = [_mm512_setzero_si512(); N];
            for i in 0..N {
                // SAFETY: `qs` is 32 aligned bytes.
                y[i] = _mm512_broadcast_i64x4(unsafe { _mm256_load_si256(acts[i][ib].qs.as_ptr().cast()) });
            }
            for k in 0..R / 2 {
                // SAFETY: block `ib` lies inside every row (checked by the caller); a block is the f16 `d`
                // and `m` (bytes 0–3), the fifth bits (4–7) and the nibbles (8–23).
                let (dm, set, p0, p1) = unsafe {
                    let b0 = w[2 * k].as_ptr().add(ib * Q5_1_BYTES);
                    let b1 = w[2 * k + 1].as_ptr().add(ib * Q5_1_BYTES);
                    let (h0, h1) = (b0.cast::<i32>().read_unaligned(), b1.cast::<i32>().read_unaligned());
                    let dm = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128(h0), _mm_cvtsi32_si128(h1)));
                    let (q0, q1) = (b0.add(4).cast::<u32>().read_unaligned(), b1.add(4).cast::<u32>().read_unaligned());
                    let set: __mmask64 = u64::from(q0) | (u64::from(q1) << 32);
                    (dm, set, _mm_loadu_si128(b0.add(8).cast()), _mm_loadu_si128(b1.add(8).cast()))
                };
                let ab = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(p0), p1);
                let x = _mm512_permutexvar_epi64(halves, _mm512_castsi256_si512(ab));
                let x = _mm512_and_si512(_mm512_srlv_epi16(x, shifts), low);
                let x = _mm512_mask_add_epi8(x, set, x, sixteen);
                let d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(dm));
                for i in 0..N {
                    let act = &acts[i][ib];
                    summs[k][i] = _mm_fmadd_ps(dm, _mm_set1_ps(act.s), summs[k][i]);
                    let scale = _mm512_mul_ps(d, _mm512_set1_ps(act.d));
                    let xy = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y[i]));
                    acc[k][i] = _mm512_fmadd_ps(scale, xy, acc[k][i]);
                }
            }
        }
        for k in 0..R / 2 {
            for i in 0..N {
                let mut l = [0.0f32; 16];
                let mut m = [0.0f32; 4];
                // SAFETY: `l` holds sixteen f32, `m` four.
                unsafe {
                    _mm512_storeu_ps(l.as_mut_ptr(), acc[k][i]);
                    _mm_storeu_ps(m.as_mut_ptr(), summs[k][i]);
                }
                let lanes = |h: &[f32]| -> [f32; 8] { std::array::from_fn(|j| h[j]) };
                out[2 * k][i] = hsum_lanes(lanes(&l[..8])) + m[1];
                out[2 * k + 1][i] = hsum_lanes(lanes(&l[8..])) + m[3];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::isa::detect;
    use crate::kernels::quantize::quantize_row;

    #[test]
    fn every_instruction_set_gives_the_same_bits_as_the_dequantized_product() {
        let blocks = 24;
        let mut state = 9u32;
        let mut w: Vec<u8> = (0..blocks * Q5_1_BYTES)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        for block in w.chunks_exact_mut(Q5_1_BYTES) {
            let d = half::f16::from_f32(0.01 + f32::from(block[0]) / 25_600.0);
            let m = half::f16::from_f32(-0.1 + f32::from(block[2]) / 1280.0);
            block[..2].copy_from_slice(&d.to_le_bytes());
            block[2..4].copy_from_slice(&m.to_le_bytes());
        }
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
            q5_1(isa, [&w, &w], rows, &mut out);
            out
        };
        let expected = run(Isa::Portable);
        for (i, a) in acts.iter().enumerate() {
            let exact: f64 = w
                .chunks_exact(Q5_1_BYTES)
                .zip(a)
                .map(|(block, act)| {
                    let (d, m) = (f64::from(f16_at(block, 0)), f64::from(f16_at(block, 2)));
                    values(block)
                        .iter()
                        .zip(&act.qs)
                        .map(|(x, q)| (d * f64::from(*x) + m) * f64::from(act.d) * f64::from(*q))
                        .sum::<f64>()
                })
                .sum();
            // The kernel multiplies the minimums with the f16-rounded `d · Σq`: allow for that rounding.
            assert!((f64::from(expected[1][i]) - exact).abs() < 0.05 * exact.abs().max(1.0));
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
