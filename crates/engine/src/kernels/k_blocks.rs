//! The block layouts of the K-quant weight formats that several kernels read: sizes, and Q4_K's packed
//! 6-bit scales and minimums (which Q5_K shares). A leaf of its own so the AVX-512 kernels
//! ([`super::dot_k_zmm`]) and the ones they stand in for ([`super::dot_k`]) need not import each other.

use super::quantize_k::SuperBlock;

/// Bytes of one Q4_K block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and minimums, 128 bytes of 4-bit
/// values.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of one Q6_K block: 128 bytes of low 4 bits, 64 of high 2 bits, 16 signed 8-bit scales, f16 `d`.
pub const Q6_K_BYTES: usize = 210;

/// The eight 6-bit scales and eight 6-bit minimums packed in a Q4_K block's 12 bytes (ggml's
/// `get_scale_min_k4`).
#[inline(always)]
pub fn q4_k_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            scales[j] = s[j] & 63;
            mins[j] = s[j + 4] & 63;
        } else {
            scales[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            mins[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (scales, mins)
}

/// `Σ_s mins[s] · (bsums[2s] + bsums[2s+1])` over sub-blocks `s` in `subs`: the minimums' share of a
/// Q4_K block, exact.
#[inline(always)]
pub fn q4_k_min_sum(mins: &[u8; 8], a: &SuperBlock, subs: std::ops::Range<usize>) -> i32 {
    subs.map(|s| i32::from(mins[s]) * (i32::from(a.bsums[2 * s]) + i32::from(a.bsums[2 * s + 1]))).sum()
}
