//! How the CPU pass stores each sequence's keys and values: the one choice between fidelity to
//! llama.cpp's default and the memory (and time) a long context costs.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The element type of the CPU pass's KV cache (`kv_cache_type` in a model's config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum KvCacheType {
    /// Half precision, llama.cpp's default: our logits match llama.cpp's bit for bit.
    #[default]
    #[serde(rename = "f16")]
    F16,
    /// ggml's 8-bit blocks (llama.cpp's `--cache-type-k/-v q8_0`): 0.56× the memory and the reads per
    /// token, integer key products; logits move by a few hundredths.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl KvCacheType {
    /// Every accepted spelling, for error messages.
    pub const NAMES: &'static str = "f16, q8_0";
}

impl FromStr for KvCacheType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            other => Err(format!("unknown KV cache type {other:?}; use one of {}", Self::NAMES)),
        }
    }
}

impl fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for t in [KvCacheType::F16, KvCacheType::Q8_0] {
            assert_eq!(t.to_string().parse::<KvCacheType>(), Ok(t));
        }
        let err = "q4_0".parse::<KvCacheType>().unwrap_err();
        assert!(err.contains("q4_0") && err.contains(KvCacheType::NAMES), "{err}");
    }
}
