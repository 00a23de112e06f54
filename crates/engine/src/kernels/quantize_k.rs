//! Activation quantization for the K-quant weight formats (Q4_K, Q6_K): f32 rows to ggml's Q8_K blocks
//! of 256 values, rounded exactly as ggml's `quantize_row_q8_K_ref` rounds them.
//!
//! Why a second activation format: llama.cpp multiplies K-quant weights with Q8_K activations, not the
//! Q8_0 blocks of [`super::quantize`]: one f32 scale per 256 values (`max / -127`, with `max` the first
//! value of largest magnitude) and the sums of every 16 quantized values, which the K-quant formats'
//! per-sub-block minimums and offsets multiply. Rounding the same way is what lets the dot products in
//! [`super::dot_k`] reproduce llama.cpp's logits. Quantization is a small share of a projection's time
//! (one pass over `cols` values per row), so only the portable path exists, vectorized by the compiler.

use multiversion::multiversion;

/// Values per K-quant block (ggml's `QK_K`).
pub const SUPER_BLOCK: usize = 256;

/// One block of 256 activations quantized to 8 bits: ggml's `block_q8_K`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct SuperBlock {
    /// The 256 quantized values, in -127..=127.
    pub qs: [i8; SUPER_BLOCK],
    /// The block's scale (f32, unlike the f16 scales of the 32-value blocks).
    pub d: f32,
    /// The sum of each run of 16 quantized values.
    pub bsums: [i16; SUPER_BLOCK / 16],
}

impl Default for SuperBlock {
    fn default() -> Self {
        Self { qs: [0; SUPER_BLOCK], d: 0.0, bsums: [0; SUPER_BLOCK / 16] }
    }
}

/// Quantizes `x` (a multiple of 256 values) into `out` (one block per 256 values).
pub fn quantize_row_k(x: &[f32], out: &mut [SuperBlock]) {
    assert_eq!(x.len(), out.len() * SUPER_BLOCK, "one block per 256 values");
    quantize_row_k_plain(x, out);
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "x86_64+sse4.1"))]
fn quantize_row_k_plain(x: &[f32], out: &mut [SuperBlock]) {
    for (values, block) in x.chunks_exact(SUPER_BLOCK).zip(out.iter_mut()) {
        quantize_block(values, block);
    }
}

#[inline(always)]
fn quantize_block(values: &[f32], block: &mut SuperBlock) {
    // The first value of largest magnitude, with its sign: it becomes -127.
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in values {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax == 0.0 {
        *block = SuperBlock::default();
        return;
    }
    let iscale = -127.0 / max;
    for (q, v) in block.qs.iter_mut().zip(values) {
        // ggml's `nearest_int` (adding 1.5·2²³) rounds half to even; |iscale·v| ≤ 127.
        *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
    }
    for (sum, run) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
        *sum = run.iter().map(|&q| i16::from(q)).sum();
    }
    block.d = 1.0 / iscale;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_magnitude_becomes_minus_127_and_sums_cover_16_values() {
        let mut x = [0.0f32; SUPER_BLOCK];
        x[3] = -2.0;
        x[7] = 1.0;
        x[20] = 0.5;
        x[200] = 2.0; // same magnitude as x[3], later: x[3] sets the sign
        let mut b = [SuperBlock::default()];
        quantize_row_k(&x, &mut b);
        assert_eq!(b[0].qs[3], -127);
        assert_eq!(b[0].qs[200], 127);
        assert_eq!(b[0].qs[7], 64); // 63.5 rounds to even
        assert_eq!(b[0].qs[20], 32); // 31.75
        assert_eq!(b[0].d, 1.0 / (127.0 / 2.0));
        assert_eq!(b[0].bsums[0], -127 + 64);
        assert_eq!(b[0].bsums[1], 32);
        assert_eq!(b[0].bsums[12], 127);
    }

    #[test]
    fn an_all_zero_block_has_zero_scale() {
        let mut b = [SuperBlock::default()];
        quantize_row_k(&[0.0; SUPER_BLOCK], &mut b);
        assert_eq!(b[0].d, 0.0);
        assert_eq!(b[0].qs, [0; SUPER_BLOCK]);
    }
}
