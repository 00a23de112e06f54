//! [`Linear`]: a weight matrix applied to a batch of rows, with the CPU kernel chosen by the row count.
//!
//! candle's quantized matmul (`QMatMul`) quantizes the activations to the weight's dot-product type and
//! runs one dot product per (row, output) pair; for Q4_1, the default model's format, that dot product has
//! no SIMD kernel. It is the right tool for decode (one row per sequence: it reads the 4.5-bit weights once
//! and never widens them), but at prefill it makes a chunk of `T` tokens cost `T` matrix–vector products.
//! With many rows we instead dequantize the weight to f32 for this one call and run candle's dense matmul
//! (the `gemm` crate: blocked, SIMD, cache-aware). Widening costs about one pass over the weight, which a
//! prefill chunk amortises over all its rows; nothing is kept, so resident memory stays that of the
//! quantized model plus at most one block of [`DEQUANT_BLOCK_ELEMS`] f32 values during a call.
//!
//! The dense path rounds the activations as the quantized kernel does (8-bit blocks, like llama.cpp), so
//! both paths compute the same products up to float summation order; see [`DENSE_MIN_ROWS`] for why that
//! is still not close enough for short prompts.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file};
use candle_core::{DType, Device, Module, Tensor};

use crate::error::Result;

/// Rows (tokens across the batch) from which a quantized weight is dequantized for a dense matmul.
///
/// Speed alone would put this at 4: on the default model's Q4_1 projections, widening a weight costs
/// about two rows of candle's scalar Q4_1 kernel, so the dense path is already twice as fast at 4 rows and
/// 16–27× faster at 512 (benches/RESULTS.md, "Prefill kernels"). It is 128 for fidelity: the model
/// amplifies rounding differences chaotically (activations are re-quantized to 8 bits at every layer, so a
/// 1e-7 change can flip a rounding step), and with the dense path the llama.cpp reference test's
/// teacher-forced sequences (all under 128 tokens) moved from 0.86 to 0.99–1.67 logits off llama.cpp, over
/// its 0.9 bound, whichever activation rounding we tried, including one that reproduced candle's kernel to
/// 1e-7. Chunks of up to 127 tokens, decode
/// steps and small decode batches keep the quantized kernel; long prompts, where prefill time matters
/// (Llama Guard's ≈ 300–400 tokens, the 512-token benchmark), take the dense path.
pub const DENSE_MIN_ROWS: usize = 128;

/// Most f32 values dequantized at once: 2 Mi values (8 MiB). Every projection of SmolLM2 (at most
/// 1536 × 576) fits in one block; the vocabulary-sized LM head (49152 × 576, 113 MB in f32) is widened
/// a few thousand output rows at a time so scoring with `all_logits` does not double the model's memory.
const DEQUANT_BLOCK_ELEMS: usize = 1 << 21;

/// A projection `y = x · Wᵀ` with `W` of shape `[out, in]`, quantized (GGUF) or dense (safetensors).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
}

impl From<QMatMul> for Linear {
    fn from(weight: QMatMul) -> Self {
        Self { weight }
    }
}

impl Linear {
    /// `x`: `[T, in]` → `[T, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.weight {
            QMatMul::QTensor(q) if x.device().is_cpu() && x.dims().len() == 2 && x.dim(0)? >= DENSE_MIN_ROWS => {
                dense_forward(q, x)
            }
            weight => Ok(weight.forward(x)?),
        }
    }
}

/// `x` (`[T, in]`) rounded the way candle's quantized kernel for a `weight`-typed matrix rounds its
/// activations (8-bit blocks with an f16 scale for Q4_0/Q4_1/Q5_x/Q8_0, as in llama.cpp; Q8_K for
/// K-quants), widened back to f32. The dense product then equals that kernel's up to summation order and
/// the f16 rounding of Q8_1 block sums (measured: 1.6e-4 on outputs of about 0.5, 2e-7 for Q8_0), and
/// prefill sees the same activation rounding as decode. Plain f32 activations moved the default model's
/// reference logits further (1.14–1.17 from llama.cpp's, with a clear top-1 flip).
fn round_activations(x: &Tensor, weight: GgmlDType) -> Result<Tensor> {
    let format = match weight {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => GgmlDType::Q8_0,
        GgmlDType::Q4_1 | GgmlDType::Q5_1 => GgmlDType::Q8_1,
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K | GgmlDType::Q8K => {
            GgmlDType::Q8K
        }
        // Float "quantized" tensors multiply f32 activations as they are.
        _ => return Ok(x.clone()),
    };
    Ok(QTensor::quantize(x, format)?.dequantize(x.device())?)
}

/// Dequantizes `w` (`[out, in]`) block by block and multiplies densely: `x` `[T, in]` → `[T, out]`.
fn dense_forward(w: &QTensor, x: &Tensor) -> Result<Tensor> {
    let (out, inp) = w.shape().dims2()?;
    let x = round_activations(x, w.dtype())?;
    let rows_per_block = (DEQUANT_BLOCK_ELEMS / inp.max(1)).max(1);
    if out <= rows_per_block {
        // One block: the common case, no copy of the quantized bytes.
        let dense = w.dequantize(&Device::Cpu)?; // [out, in]
        return Ok(x.matmul(&dense.t()?)?);
    }
    // A row of `inp` values is `inp / block_size` quantization blocks of `type_size` bytes each.
    let dtype = w.dtype();
    let row_bytes = inp / dtype.block_size() * dtype.type_size();
    let data = w.data()?;
    let y = Tensor::zeros((x.dim(0)?, out), DType::F32, &Device::Cpu)?; // [T, out]
    for start in (0..out).step_by(rows_per_block) {
        let rows = rows_per_block.min(out - start);
        let bytes = &data[start * row_bytes..(start + rows) * row_bytes];
        let block = ggml_file::qtensor_from_ggml(dtype, bytes, vec![rows, inp], &Device::Cpu)?;
        let dense = block.dequantize(&Device::Cpu)?; // [rows, in]
        y.slice_set(&x.matmul(&dense.t()?)?, 1, start)?; // [T, rows] into columns start..start + rows
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quantized `[out, in]` weight with varied values, and its exact dequantized copy.
    fn weight(out: usize, inp: usize, dtype: GgmlDType) -> (QTensor, Tensor) {
        let values: Vec<f32> = (0..out * inp).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2).collect();
        let dense = Tensor::from_vec(values, (out, inp), &Device::Cpu).expect("weight");
        let q = QTensor::quantize(&dense, dtype).expect("quantize");
        let exact = q.dequantize(&Device::Cpu).expect("dequantize");
        (q, exact)
    }

    fn input(rows: usize, inp: usize) -> Tensor {
        let values: Vec<f32> = (0..rows * inp).map(|i| ((i * 104_729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
        Tensor::from_vec(values, (rows, inp), &Device::Cpu).expect("input")
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flat")
            .max(0)
            .expect("max")
            .to_scalar()
            .expect("f32")
    }

    #[test]
    fn dense_path_matches_the_quantized_kernel() {
        // Outputs are about 0.5; the paths differ in summation order and, for Q4_1, in the f16 rounding
        // of the activation block sums the quantized kernel multiplies the block minimums with.
        for (dtype, tolerance) in [(GgmlDType::Q4_1, 1e-3), (GgmlDType::Q8_0, 1e-5)] {
            let (q, _) = weight(96, 64, dtype);
            let x = input(DENSE_MIN_ROWS + 3, 64);
            let quantized = QMatMul::from_qtensor(q).expect("qmatmul");
            let expected = quantized.forward(&x).expect("quantized kernel");
            let y = Linear::from(quantized).forward(&x).expect("forward");
            assert_eq!(y.dims(), &[DENSE_MIN_ROWS + 3, 96]);
            assert!(max_abs_diff(&y, &expected) < tolerance, "{dtype:?}");
        }
    }

    #[test]
    fn blocked_dequantization_covers_every_output_row() {
        // More rows than one block holds, and a last block that is only partly full.
        let inp = 64;
        let out = DEQUANT_BLOCK_ELEMS / inp * 2 + 5;
        let (q, exact) = weight(out, inp, GgmlDType::Q8_0);
        let x = input(3, inp);
        let y = dense_forward(&q, &x).expect("forward");
        let rounded = round_activations(&x, GgmlDType::Q8_0).expect("round");
        let expected = rounded.matmul(&exact.t().expect("t")).expect("matmul");
        assert_eq!(y.dims(), &[3, out]);
        assert!(max_abs_diff(&y, &expected) < 1e-4);
    }

    #[test]
    fn few_rows_keep_the_quantized_kernel() {
        let (q, _) = weight(32, 64, GgmlDType::Q4_1);
        let x = input(DENSE_MIN_ROWS - 1, 64);
        let quantized = QMatMul::from_qtensor(q).expect("qmatmul");
        let expected = quantized.forward(&x).expect("qmatmul forward");
        let y = Linear::from(quantized).forward(&x).expect("forward");
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(max_abs_diff(&y, &expected), 0.0);
    }
}
