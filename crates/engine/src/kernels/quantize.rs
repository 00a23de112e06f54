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
    pub qs: [i8; BLOCK],
    pub d: f32,
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
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "x86_64+sse4.1"))]
pub fn quantize_row(x: &[f32], out: &mut [ActivationBlock]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    for (values, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        quantize_block(values, block);
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
    fn an_all_zero_block_has_zero_scale() {
        let mut b = [ActivationBlock::default()];
        quantize_row(&[0.0; BLOCK], &mut b);
        assert_eq!(b[0].qs, [0; BLOCK]);
        assert_eq!((b[0].d, b[0].s), (0.0, 0.0));
    }
}
