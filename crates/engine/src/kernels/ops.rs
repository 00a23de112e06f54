//! The element-wise and reduction steps of a llama.cpp forward pass on CPU, computed as ggml's x86
//! build computes them: RMS norm summed in f64, rotary tables built by repeated multiplication with
//! libm's `cosf`/`sinf`, ggml's polynomial `expf` (its AVX-512 `ggml_v_expf`) in softmax and SiLU, 16-lane
//! accumulators reduced in GCC's `_mm512_reduce_add_ps` order, and f16 rounding where ggml stores or
//! converts to f16. Plain Rust; the model is small enough per step that these are not the bottleneck.

use multiversion::multiversion;

/// Lanes of ggml's AVX-512 accumulators (f16 matrix products and softmax sums).
pub const LANES: usize = 16;

/// `y = x / sqrt(mean(x²) + eps)`, then `y *= weight` (ggml's `rms_norm` then `mul`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = (v * scale) * w;
    }
}

/// cos/sin pairs of the rotary embedding for one position (`head_dim / 2` pairs), built as ggml's
/// `ggml_rope_cache_init` builds them: `theta` starts at the position and is multiplied by
/// `theta_scale` after each pair; GGUF frequency factors divide it.
pub fn rope_table(position: usize, head_dim: usize, theta_scale: f32, freq_factors: Option<&[f32]>) -> Vec<(f32, f32)> {
    let mut theta = position as f32;
    (0..head_dim / 2)
        .map(|i| {
            let t = match freq_factors {
                Some(f) => theta / f[i],
                None => theta,
            };
            theta *= theta_scale;
            (t.cos(), t.sin())
        })
        .collect()
}

/// Rotates adjacent pairs of one head's values in place (GGUF's interleaved layout, ggml's
/// `GGML_ROPE_TYPE_NORMAL`). GCC contracts ggml's `x0*cos - x1*sin` into a fused multiply-add.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn rope_in_place(x: &mut [f32], table: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in x.chunks_exact_mut(2).zip(table) {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0.mul_add(cos, -(x1 * sin));
        pair[1] = x0.mul_add(sin, x1 * cos);
    }
}

/// ggml's `ggml_v_expf` (AVX-512 build), one lane: a degree-5 polynomial on the reduced argument,
/// scaled by a power of two; flushes to 0 below about -104 and to infinity above about 88.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4B40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3FB8_AA3B), r); // 0x1.715476p+0
    let n = z - r;
    let b = (-n).mul_add(f32::from_bits(0x35BF_BE8E), (-n).mul_add(f32::from_bits(0x3F31_7200), x)); // 0x1.7f7d1cp-20, 0x1.62e4p-1
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let c4 = f32::from_bits(0x3C07_2010); // 0x1.0e4020p-7
    let c3 = f32::from_bits(0x3D2B_9F17); // 0x1.573e2ep-5
    let c2 = f32::from_bits(0x3E2A_AF33); // 0x1.555e66p-3
    let c1 = f32::from_bits(0x3EFF_FEDB); // 0x1.fffdb6p-2
    let c0 = f32::from_bits(0x3F7F_FFF6); // 0x1.ffffecp-1
    let j = c4.mul_add(b, c3).mul_add(u, c2.mul_add(b, c1)).mul_add(u, c0.mul_add(b, 1.0));
    // `_mm512_scalef_ps(j, n)`: j · 2^n rounded once (n is an integer, |n| ≤ 192, so 2^n is an exact f64).
    let two_to_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(j) * two_to_n) as f32
}

/// `silu(gate) * up`, ggml's `swiglu`: `x / (1 + expf(0 - x))` times the up projection.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = (g / (1.0 + expf(0.0 - g))) * u;
    }
}

/// Sum of 16 lanes in the order GCC's `_mm512_reduce_add_ps` adds them.
#[inline(always)]
pub fn reduce_lanes(a: &[f32; LANES]) -> f32 {
    let mut t8 = [0.0f32; 8];
    for i in 0..8 {
        t8[i] = a[i + 8] + a[i];
    }
    let t4 = [t8[4] + t8[0], t8[5] + t8[1], t8[6] + t8[2], t8[7] + t8[3]];
    let t2 = [t4[0] + t4[2], t4[1] + t4[3]];
    t2[0] + t2[1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_the_true_exponential_and_flushes_at_the_ends() {
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let (ours, exact) = (f64::from(expf(x)), f64::from(x).exp());
            assert!(((ours - exact) / exact).abs() < 4e-7, "{x}: {ours} vs {exact}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert_eq!(expf(0.0), 1.0);
    }

    #[test]
    fn rms_norm_normalises_then_weights() {
        let x = [3.0f32, 4.0];
        let mut out = [0.0; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let scale = 1.0 / 12.5f32.sqrt();
        assert_eq!(out, [3.0 * scale, 4.0 * scale * 2.0]);
    }

    #[test]
    fn reduction_order_is_pairwise_across_halves() {
        let mut a = [0.0f32; LANES];
        a[0] = 1e8;
        a[8] = -1e8;
        a[1] = 1.0;
        // (1e8 + -1e8) is exact, so the 1.0 survives; a left-to-right sum would lose it.
        assert_eq!(reduce_lanes(&a), 1.0);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let table = rope_table(1, 4, 0.5, None);
        assert_eq!(table[0], (1.0f32.cos(), 1.0f32.sin()));
        assert_eq!(table[1], (0.5f32.cos(), 0.5f32.sin()));
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        rope_in_place(&mut x, &table);
        assert!((x[0] - 1.0f32.cos()).abs() < 1e-7 && (x[1] - 1.0f32.sin()).abs() < 1e-7);
        assert!((x[2] + 0.5f32.sin()).abs() < 1e-7 && (x[3] - 0.5f32.cos()).abs() < 1e-7);
    }
}
