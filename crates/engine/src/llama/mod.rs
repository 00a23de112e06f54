//! The Llama model itself: its numbers ([`hparams`]), rotary embeddings ([`rope`]), projections
//! ([`linear`]), the weights the loaders fill in ([`layer`]), the per-sequence KV cache ([`kv_cache`],
//! [`host_cache`], [`kv_cache_type`], [`kv_pages`]) and the two forward passes — [`cpu_forward`] (llama.cpp's
//! arithmetic on our kernels) and [`candle_forward`] — that [`model`]'s [`LlamaModel`](model::LlamaModel)
//! picks between once, at load.

pub(crate) mod candle_forward;
pub(crate) mod cpu_forward;
pub(crate) mod host_cache;
pub(crate) mod hparams;
pub(crate) mod huge_pages;
pub(crate) mod kv_cache;
pub(crate) mod kv_cache_type;
pub(crate) mod kv_pages;
pub(crate) mod layer;
pub(crate) mod linear;
pub mod model;
pub(crate) mod rope;
