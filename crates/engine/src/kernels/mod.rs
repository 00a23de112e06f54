//! CPU kernels for the weight formats GGUF Llama models ship in (F16, BF16, Q4_0, Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K
//! and Q6_K weights: the default model's formats and those of Q4_K_M, Q5_K_M and Q6_K files), with
//! llama.cpp's arithmetic.
//!
//! Why our own: candle's Q4_1 dot product is scalar (every matrix of the default model is Q4_1), and its
//! activation rounding differs from llama.cpp's, which the model amplifies into logit differences of up to
//! 0.9 (benches/RESULTS.md). These kernels reproduce ggml's x86 kernels operation for operation — the same
//! 8-bit activation rounding, the same per-block integer dot products, the same float accumulation order —
//! so one forward pass gives llama.cpp's numbers whichever instruction set runs it: the AVX-512 VNNI and
//! AVX2 paths are chosen at run time and the portable path computes the same values in plain Rust.
//!
//! Layout: [`isa`] picks the instruction set every kernel uses, [`quantize`] turns f32 activations into
//! 8-bit blocks of 32 values and [`quantize_k`] into ggml's 256-value Q8_K blocks (which K-quant weights
//! multiply), [`dot`] multiplies Q4_1 and Q8_0 weight rows by activation rows, [`dot_q4_0`] Q4_0 ones, [`dot_q5_0`], [`dot_q5_1`] and [`dot_q5_k`] Q5_0, Q5_1 and Q5_K ones,
//! [`dot_k`] Q4_K and Q6_K ones (`dot_k_zmm`: their AVX-512 twins), [`dot_half`] F16 and BF16 ones, [`matmul`] runs a whole
//! projection over a batch of rows on the engine's threads ([`team`]), [`ops`] holds the norm, rotary,
//! softmax and SiLU steps with ggml's rounding, and [`attention`] / [`attention_q8`] read the f16 and
//! 8-bit KV caches.

pub mod attention;
pub mod attention_q8;
pub mod dot;
pub mod dot_half;
pub mod dot_k;
#[cfg(target_arch = "x86_64")]
mod dot_k_zmm;
pub mod dot_q4_0;
pub mod dot_q5_0;
pub mod dot_q5_1;
pub mod dot_q5_k;
pub mod isa;
mod k_blocks;
pub mod matmul;
pub mod ops;
pub mod quantize;
pub mod quantize_k;
pub mod team;

pub use matmul::{Activations, Matrix, WeightFormat, project, quantized_matmul};

/// Values per quantization block in the 32-value formats (ggml's `QK4_1`, `QK5_0`, `QK8_0`, `QK8_1`); the
/// K-quants' super-blocks hold [`quantize_k::SUPER_BLOCK`].
pub const BLOCK: usize = 32;

/// Asks for `data` to be brought into the cache ahead of use, one instruction per 64-byte line: into
/// level 1 (`L1`) or only level 2. A no-op off x86-64.
#[inline(always)]
pub(crate) fn prefetch<T, const L1: bool>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        let p = data.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: a prefetch reads nothing architecturally; the address is inside `data`.
            unsafe {
                if L1 {
                    _mm_prefetch::<_MM_HINT_T0>(p.add(offset));
                } else {
                    _mm_prefetch::<_MM_HINT_T1>(p.add(offset));
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
