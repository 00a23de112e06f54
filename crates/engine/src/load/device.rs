//! Choosing the compute device. CPU always works; CUDA and Metal exist when the crate is built with the
//! `cuda` / `metal` features. `auto` takes the best one this build and machine offer.

use std::str::FromStr;

use candle_core::Device;

use crate::error::{EngineError, Result};

/// A device as written in config (`auto`, `cpu`, `cuda`, `cuda:1`, `metal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first accelerator this build supports and this machine has, else the CPU.
    #[default]
    Auto,
    /// The CPU (where the quantized GGUF models run llama.cpp's arithmetic).
    Cpu,
    /// The CUDA device with this ordinal (builds with the `cuda` feature).
    Cuda(usize),
    /// The Metal device (builds with the `metal` feature).
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Self::Cuda).ok_or_else(|| {
                    EngineError::Device(format!("'{other}' is not one of auto, cpu, cuda, cuda:N, metal"))
                })
            }
        }
    }
}

impl DeviceChoice {
    /// The candle device, or an error saying why it cannot be had.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(EngineError::Device(
                        "CUDA requested but this build has no `cuda` feature or no GPU".into(),
                    ));
                }
                Device::new_cuda(n).map_err(|e| EngineError::Device(e.to_string()))
            }
            Self::Metal => {
                if !candle_core::utils::metal_is_available() {
                    return Err(EngineError::Device("Metal requested but this build has no `metal` feature".into()));
                }
                Device::new_metal(0).map_err(|e| EngineError::Device(e.to_string()))
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available()
                    && let Ok(d) = Device::new_cuda(0)
                {
                    return Ok(d);
                }
                if candle_core::utils::metal_is_available()
                    && let Ok(d) = Device::new_metal(0)
                {
                    return Ok(d);
                }
                Ok(Device::Cpu)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_spellings() {
        assert_eq!("cuda:2".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(2));
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu_without_accelerators() {
        if !candle_core::utils::cuda_is_available() && !candle_core::utils::metal_is_available() {
            assert!(DeviceChoice::Auto.open().unwrap().is_cpu());
        }
    }
}
