//! [`Linear`]: a weight matrix applied to a batch of rows in the candle forward pass, with the CPU kernel
//! chosen by format and row count.
//!
//! Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights on CPU (the default model's formats and those of
//! Q4_K_M, Q5_K_M and Q6_K files) always go through our own kernels ([`crate::kernels`]: SIMD, llama.cpp's arithmetic); GGUF models made only of
//! those formats skip this
//! module altogether and run the CPU pass (`cpu_forward`). Other quantized formats on CPU use candle's
//! quantized matmul (`QMatMul`) for few rows — it reads the packed weights once and never widens them — and, from
//! [`DENSE_MIN_ROWS`] rows on, dequantize the weight for that one call and run candle's dense matmul (the
//! `gemm` crate), which a prefill chunk amortises over all its rows. Nothing widened is kept, so resident
//! memory stays that of the quantized model plus at most [`DEQUANT_BLOCK_ELEMS`] f32 values during a call.
//! The dense path rounds the activations to 8-bit blocks as the quantized kernel does.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file};
use candle_core::{DType, Device, Module, Tensor};

use crate::error::Result;
use crate::kernels::{WeightFormat, quantized_matmul};

/// Rows (tokens across the batch) from which a quantized weight in a format without our own kernel is
/// dequantized for a dense matmul. Widening a weight costs about a few rows of a quantized kernel, so
/// speed alone would put this near 4 (benches/RESULTS.md, "Prefill kernels"); it is 128 because the
/// dense path sums in a different order, and a 30-layer model that re-quantizes its activations every
/// layer amplifies that into logit differences of about 1 (measured on the default model before it got
/// its own kernels). Long prompts, where prefill time matters, take the dense path.
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
    /// The weight, for the CPU forward pass that multiplies it with its own kernels.
    pub(crate) fn weight(&self) -> &QMatMul {
        &self.weight
    }

    /// `x`: `[T, in]` → `[T, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.weight {
            QMatMul::QTensor(q) if x.device().is_cpu() && x.dims().len() == 2 => match kernel_format(q.dtype()) {
                Some(format) => llama_cpp_forward(q, format, x),
                None if x.dim(0)? >= DENSE_MIN_ROWS => dense_forward(q, x),
                None => Ok(self.weight.forward(x)?),
            },
            weight => Ok(weight.forward(x)?),
        }
    }
}

/// The formats our own CPU kernels multiply (the default model's, and those of a Q4_K_M file); others go
/// through candle.
pub(crate) fn kernel_format(dtype: GgmlDType) -> Option<WeightFormat> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightFormat::Q4_0),
        GgmlDType::Q4_1 => Some(WeightFormat::Q4_1),
        GgmlDType::Q8_0 => Some(WeightFormat::Q8_0),
        GgmlDType::Q5_0 => Some(WeightFormat::Q5_0),
        GgmlDType::Q5_1 => Some(WeightFormat::Q5_1),
        GgmlDType::Q5K => Some(WeightFormat::Q5K),
        GgmlDType::Q4K => Some(WeightFormat::Q4K),
        GgmlDType::Q6K => Some(WeightFormat::Q6K),
        GgmlDType::F16 => Some(WeightFormat::F16),
        GgmlDType::BF16 => Some(WeightFormat::Bf16),
        _ => None,
    }
}

/// A GGUF tensor as a projection weight. candle's `QMatMul::from_arc` widens F16 and BF16 tensors to f32
/// (twice the memory, and not llama.cpp's arithmetic); on CPU they stay 16-bit for our kernels. Other
/// devices keep candle's choice.
pub(crate) fn projection_weight(q: std::sync::Arc<QTensor>) -> Result<QMatMul> {
    if q.device().is_cpu() && matches!(q.dtype(), GgmlDType::F16 | GgmlDType::BF16) {
        return Ok(QMatMul::QTensor(q));
    }
    Ok(QMatMul::from_arc(q)?)
}

/// `x` `[T, in]` → `[T, out]` with [`crate::kernels`]: llama.cpp's arithmetic, SIMD, any row count.
fn llama_cpp_forward(w: &QTensor, format: WeightFormat, x: &Tensor) -> Result<Tensor> {
    let (out, inp) = w.shape().dims2()?;
    let (t, x_cols) = x.dims2()?;
    if x_cols != inp || !inp.is_multiple_of(format.block_values()) {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: x.shape().clone(),
            rhs: w.shape().clone(),
            op: "quantized_matmul",
        }
        .into());
    }
    let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let y = quantized_matmul(format, &w.data()?, out, inp, &values, t);
    Ok(Tensor::from_vec(y, (t, out), &Device::Cpu)?)
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
        // Outputs are about 0.5; the paths differ in summation order (Q3_K is one of the formats without
        // our own kernel, so it takes the dense path here).
        let (q, _) = weight(96, 256, GgmlDType::Q3K);
        let x = input(DENSE_MIN_ROWS + 3, 256);
        let quantized = QMatMul::from_qtensor(q).expect("qmatmul");
        let expected = quantized.forward(&x).expect("quantized kernel");
        let y = Linear::from(quantized).forward(&x).expect("forward");
        assert_eq!(y.dims(), &[DENSE_MIN_ROWS + 3, 96]);
        assert!(max_abs_diff(&y, &expected) < 1e-5);
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
    fn q4_1_and_q8_0_run_our_kernels_at_any_row_count() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let format = kernel_format(dtype).expect("a kernel format");
            for rows in [1, DENSE_MIN_ROWS + 1] {
                let (q, _) = weight(32, 64, dtype);
                let bytes = q.data().expect("bytes").into_owned();
                let x = input(rows, 64);
                let y = Linear::from(QMatMul::from_qtensor(q).expect("qmatmul")).forward(&x).expect("forward");
                let values = x.flatten_all().expect("flat").to_vec1::<f32>().expect("vec");
                let expected = quantized_matmul(format, &bytes, 32, 64, &values, rows);
                assert_eq!(y.flatten_all().expect("flat").to_vec1::<f32>().expect("vec"), expected);
            }
        }
    }

    #[test]
    fn few_rows_keep_the_quantized_kernel() {
        let (q, _) = weight(32, 256, GgmlDType::Q3K);
        let x = input(DENSE_MIN_ROWS - 1, 256);
        let quantized = QMatMul::from_qtensor(q).expect("qmatmul");
        let expected = quantized.forward(&x).expect("qmatmul forward");
        let y = Linear::from(quantized).forward(&x).expect("forward");
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(max_abs_diff(&y, &expected), 0.0);
    }
}
