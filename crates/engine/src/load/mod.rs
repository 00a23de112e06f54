//! Getting a model into memory: where it comes from ([`source`]: a GGUF file, a checkpoint directory or
//! a hub id), which device it runs on ([`device`]), and the two file formats ([`gguf`], checked first by
//! [`gguf_check`]; [`hf`] safetensors checkpoints), and [`quantize`]: full-precision weights to Q8_0 at
//! load when a model's options ask.

pub(crate) mod device;
pub(crate) mod gguf;
pub(crate) mod gguf_check;
pub(crate) mod hf;
pub(crate) mod quantize;
pub(crate) mod source;
