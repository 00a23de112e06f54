//! Quantizing full-precision weights once at load (`quantize: q8_0` in a model's config): an F16, BF16 or
//! F32 model then runs on the 8-bit kernels, at about half the memory of 16-bit weights (a quarter of f32)
//! and with the speed of a Q8_0 file.
//!
//! The rounding is llama.cpp's quantizer's (`quantize_row_q8_0_ref`: scale `max|x| / 127`, multiplier
//! `1 / scale`, round half away from zero — candle's `BlockQ8_0::from_float` computes exactly that), so an
//! F16 file quantized here holds the same bytes as llama.cpp's `llama-quantize` makes from it, and its
//! logits are those of llama.cpp on that Q8_0 file (`tests/it/kquant_llamacpp.rs`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::Result;

/// A format to quantize full-precision weights to at load (`quantize` in a model's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum QuantizeOnLoad {
    /// ggml's Q8_0: 32 values and an f16 scale per 34 bytes; logits move by a few hundredths against
    /// the 16-bit weights.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl QuantizeOnLoad {
    /// Every accepted spelling, for error messages.
    pub const NAMES: &'static str = "q8_0";

    fn dtype(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// `q` in this format if it is a full-precision matrix whose rows hold whole blocks; anything already
    /// quantized (or with rows the format cannot split, where llama.cpp's quantizer keeps them too) as it is.
    pub(crate) fn apply(self, q: Arc<QTensor>) -> Result<Arc<QTensor>> {
        if !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) || !self.fits(q.shape().dims()) {
            return Ok(q);
        }
        let dense = q.dequantize(&q.device())?;
        Ok(Arc::new(QTensor::quantize(&dense, self.dtype())?))
    }

    /// A dense matrix in this format, or `None` when its rows cannot be split into whole blocks.
    pub(crate) fn apply_dense(self, t: &Tensor) -> Result<Option<Arc<QTensor>>> {
        if !self.fits(t.dims()) {
            return Ok(None);
        }
        Ok(Some(Arc::new(QTensor::quantize(&t.to_dtype(DType::F32)?, self.dtype())?)))
    }

    fn fits(self, dims: &[usize]) -> bool {
        dims.len() == 2 && dims[1].is_multiple_of(self.dtype().block_size())
    }
}

impl FromStr for QuantizeOnLoad {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "q8_0" => Ok(Self::Q8_0),
            other => Err(format!("unknown quantization {other:?}; use one of {}", Self::NAMES)),
        }
    }
}

impl fmt::Display for QuantizeOnLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Q8_0 => "q8_0",
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        assert_eq!("q8_0".parse::<QuantizeOnLoad>(), Ok(QuantizeOnLoad::Q8_0));
        assert_eq!(QuantizeOnLoad::Q8_0.to_string(), "q8_0");
        let err = "q4_0".parse::<QuantizeOnLoad>().unwrap_err();
        assert!(err.contains("q4_0") && err.contains(QuantizeOnLoad::NAMES), "{err}");
    }

    #[test]
    fn full_precision_matrices_become_q8_0_and_the_rest_stay() {
        let values: Vec<f32> = (0..4 * 64).map(|i| (i as f32 * 0.37).sin()).collect();
        let dense = Tensor::from_vec(values, (4, 64), &Device::Cpu).unwrap();
        let f16 = Arc::new(QTensor::quantize(&dense, GgmlDType::F16).unwrap());
        let q = QuantizeOnLoad::Q8_0.apply(f16).unwrap();
        assert_eq!(q.dtype(), GgmlDType::Q8_0);
        let q4 = Arc::new(QTensor::quantize(&dense, GgmlDType::Q4_1).unwrap());
        assert_eq!(QuantizeOnLoad::Q8_0.apply(q4).unwrap().dtype(), GgmlDType::Q4_1);
        let odd = Tensor::zeros((2, 40), DType::F32, &Device::Cpu).unwrap();
        assert!(QuantizeOnLoad::Q8_0.apply_dense(&odd).unwrap().is_none());
    }
}
