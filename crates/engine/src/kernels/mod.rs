//! CPU kernels for the quantized formats GGUF Llama models ship in (Q4_1 and Q8_0 weights), with
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
//! 8-bit blocks, [`dot`] multiplies one weight row by one activation row, [`matmul`] runs a whole
//! projection over a batch of rows on the engine's threads ([`team`]), [`ops`] holds the norm, rotary,
//! softmax and SiLU steps with ggml's rounding, and [`attention`] / [`attention_q8`] read the f16 and
//! 8-bit KV caches.

pub mod attention;
pub mod attention_q8;
pub mod dot;
pub mod isa;
pub mod matmul;
pub mod ops;
pub mod quantize;
pub mod team;

pub use matmul::{Activations, Matrix, WeightFormat, project, quantized_matmul};

/// Values per quantization block in every format here (ggml's `QK4_1`, `QK8_0`, `QK8_1`).
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
