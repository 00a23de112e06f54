//! Activation quantization: f32 rows to 8-bit blocks, rounded exactly as ggml's x86 `quantize_row_q8_0`
//! and `quantize_row_q8_1` round them (scale `max|x| / 127`, multiplier `127 / max|x|`, round half to
//! even). Scales are stored already widened from f16, so dot products do not convert them per use.

use half::f16;
use multiversion::multiversion;

use super::BLOCK;

/// One block of 32 activations quantized to 8 bits, with its f16 scale (widened to f32) and, for
/// Q8_1, the f16-rounded `d · Σq` that Q4_1's per-block minimum multiplies.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct ActivationBlock {
    /// The 32 quantized values.
    pub qs: [i8; BLOCK],
    /// The block's scale.
    pub d: f32,
    /// `d · Σq`, rounded through f16 (used by Q4_1 weights only).
    pub s: f32,
}

impl Default for ActivationBlock {
    fn default() -> Self {
        Self { qs: [0; BLOCK], d: 0.0, s: 0.0 }
    }
}

/// Rounds an f32 through f16 and back: the precision ggml stores block scales in.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Quantizes `x` (a multiple of 32 values) into `out` (one block per 32 values).
pub fn quantize_row(x: &[f32], out: &mut [ActivationBlock]) {
    assert_eq!(x.len(), out.len() * BLOCK, "one block per 32 values");
    #[cfg(target_arch = "x86_64")]
    if super::isa::isa() == super::isa::Isa::Avx512Vnni {
        // SAFETY: that instruction set includes AVX-512 F, BW and VL; lengths checked above.
        unsafe { x86::quantize_row(x, out) };
        return;
    }
    quantize_row_plain(x, out);
}

/// [`quantize_row`] in plain Rust, vectorized by the compiler where it can: any CPU, the same bits.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "x86_64+sse4.1"))]
fn quantize_row_plain(x: &[f32], out: &mut [ActivationBlock]) {
    for (values, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        quantize_block(values, block);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// One block per two 16-lane registers: the largest magnitude (exact in any order), the products
    /// with `127 / max` rounded half to even by the conversion itself, narrowed to bytes.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL; `x` holds 32 values per block of `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_row(x: &[f32], out: &mut [ActivationBlock]) {
        for (values, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
            // SAFETY: `values` holds 32 f32, `block.qs` 32 bytes.
            unsafe {
                let a = _mm512_loadu_ps(values.as_ptr());
                let b = _mm512_loadu_ps(values.as_ptr().add(16));
                let max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
                let d = max / 127.0;
                let id = _mm512_set1_ps(if max != 0.0 { 127.0 / max } else { 0.0 });
                const NEAREST_EVEN: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
                let qa = _mm512_cvt_roundps_epi32::<NEAREST_EVEN>(_mm512_mul_ps(a, id));
                let qb = _mm512_cvt_roundps_epi32::<NEAREST_EVEN>(_mm512_mul_ps(b, id));
                let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
                _mm_storeu_si128(block.qs.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(qa));
                _mm_storeu_si128(block.qs.as_mut_ptr().add(16).cast(), _mm512_cvtepi32_epi8(qb));
                block.d = round_f16(d);
                block.s = round_f16(d * sum as f32);
            }
        }
    }
}

#[inline(always)]
fn quantize_block(values: &[f32], block: &mut ActivationBlock) {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max / 127.0;
    let id = if max != 0.0 { 127.0 / max } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in block.qs.iter_mut().zip(values) {
        // `_mm256_round_ps(_, _MM_ROUND_NEAREST)` then `_mm256_cvtps_epi32`: ties to even. |v·id| ≤ 127.
        let r = (v * id).round_ties_even() as i32;
        sum += r;
        *q = r as i8;
    }
    block.d = round_f16(d);
    block.s = round_f16(d * sum as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_ties_to_even_and_keeps_the_f16_scales() {
        // max 127 → d = 1, id = 1: the values themselves, ties to even.
        let mut x = [0.0f32; BLOCK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 0.5;
        let mut b = [ActivationBlock::default()];
        quantize_row(&x, &mut b);
        assert_eq!(&b[0].qs[..4], &[127, 2, -4, 0]);
        assert_eq!(b[0].d, 1.0);
        assert_eq!(b[0].s, 125.0);
    }

    #[test]
    fn the_simd_path_gives_the_plain_path_s_bits() {
        // Values whose products with 127/max land on halves, and ordinary ones.
        let x: Vec<f32> = (0..BLOCK * 40)
            .map(|i| match i % 7 {
                0 => 127.0,
                1 => (i % 255) as f32 - 127.5,
                2 => -((i % 97) as f32) * 0.5,
                _ => ((i * 7919) % 2003) as f32 / 2003.0 - 0.5,
            })
            .collect();
        let mut simd = vec![ActivationBlock::default(); 40];
        let mut plain = simd.clone();
        quantize_row(&x, &mut simd);
        quantize_row_plain(&x, &mut plain);
        for (a, b) in simd.iter().zip(&plain) {
            assert_eq!(a.qs, b.qs);
            assert_eq!((a.d.to_bits(), a.s.to_bits()), (b.d.to_bits(), b.s.to_bits()));
        }
    }

    #[test]
    fn an_all_zero_block_has_zero_scale() {
        let mut b = [ActivationBlock::default()];
        quantize_row(&[0.0; BLOCK], &mut b);
        assert_eq!(b[0].qs, [0; BLOCK]);
        assert_eq!((b[0].d, b[0].s), (0.0, 0.0));
    }
}
