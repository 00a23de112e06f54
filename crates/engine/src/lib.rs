//! llamagate's inference engine: Llama-family models in, tokens out.
//!
//! It knows nothing about HTTP, access tokens or tenants: the server decides who may call it, and the
//! engine reports the real numbers the server bills with. What it owns, one folder each:
//!
//! - `load/` — model files and formats: GGUF (header checked before parsing), Hugging Face safetensors
//!   checkpoints (16-bit ones kept 16-bit on the CPU), hub ids through the standard cache, the device to
//!   run on, and quantizing full-precision weights to Q8_0 at load ([`QuantizeOnLoad`]).
//! - `llama/` — the model: hyper-parameters, RoPE, projections, the KV cache, and our batching-ready
//!   forward pass in two forms (llama.cpp's arithmetic on the CPU, candle ops elsewhere).
//! - [`kernels`] — the CPU pass's SIMD kernels (quantized and 16-bit float matmul, attention over f16 and
//!   8-bit caches).
//! - `text/` — the tokenizer (byte-level BPE or SentencePiece, built from GGUF metadata or a
//!   `tokenizer.json`), chat templates (with tools), caller text kept as text, streaming with correct
//!   UTF-8, stop strings, and tool calls read from an output in the Llama family's formats
//!   ([`ToolCallFormat`]).
//! - `serving/` — [`Model`], the scheduler that steps concurrent requests together (and forks a request's
//!   choices after one prefill), prefix reuse, sampling, cancellation, exact token counts, scoring
//!   sessions for next-token probabilities, and [`PromptTokenizer`] (a model's tokenizer and template
//!   without its weights, to count prompts).
//! - `guard/` — Llama Guard shields: the categories, the prompt, and scores read from next-token
//!   probabilities.
//! - `error.rs` — [`EngineError`], the one error type every folder returns (at the root, beneath them
//!   all, so no folder depends on another for it).
//!
//! Main types: [`Model`] (load, render a chat, tokenize, [`Model::prepare`] + [`Model::submit`], or
//! [`Model::submit_choices`] for `n` choices forked after one prefill),
//! [`GenerationStream`] and its [`GenerationEvent`]s, [`SamplingParams`], [`EngineError`], and for
//! shields [`LlamaGuard`] (the Llama Guard 3 prompt) with its probability-based [`GuardScores`].
//!
//! ```no_run
//! use llamagate_engine::{ChatMessage, GenerateParams, Model, ModelOptions, ModelSource};
//!
//! # fn main() -> llamagate_engine::Result<()> {
//! let source = ModelSource::parse("models/cache/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let model = Model::load(&source, &ModelOptions::default())?;
//! let prompt = model.render_chat(&[ChatMessage::new("user", "Name three primary colors.")])?;
//! let params = GenerateParams { max_tokens: Some(32), ..Default::default() };
//! let request = model.prepare(model.tokenize(&prompt)?, params)?;
//! let output = model.submit(request)?.collect_blocking()?;
//! println!("{} ({} tokens)", output.text, output.token_ids.len());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod error;
mod guard;
pub mod kernels;
mod llama;
mod load;
mod serving;
mod text;

pub use llama::model;

pub use error::{EngineError, Result};
pub use guard::{
    CATEGORIES, CategoryScore, GuardCategory, GuardScores, GuardVocab, LlamaGuard, categories_for_model,
    category_by_code, normalize_conversation, score_continuations,
};
pub use llama::hparams::{Llama3RopeScaling, LlamaHparams, RopeLayout};
pub use llama::kv_cache_type::KvCacheType;
pub use load::device::DeviceChoice;
pub use load::quantize::QuantizeOnLoad;
pub use load::source::ModelSource;
pub use serving::constraint::{MAX_SCHEMA_BYTES, OutputConstraint, OutputFormat};
pub use serving::engine::{GenerateParams, Model, ModelInfo, ModelOptions, OwnPrefix};
pub use serving::generation::{
    FinishReason, GenerationEvent, GenerationOutput, GenerationRequest, GenerationStream, GenerationSummary, Timings,
    Usage,
};
pub use serving::logprobs::{LogprobToken, MAX_TOP_LOGPROBS, TokenLogprobs};
pub use serving::prompt_tokenizer::PromptTokenizer;
pub use serving::sampling::SamplingParams;
pub use serving::scheduler::{SchedulerConfig, SchedulerStats};
pub use serving::scoring::{NextTokenLogits, ScoringSession};
pub use text::chat_template::{ChatMessage, ChatTemplate, FunctionCallTurn, ToolCallTurn};
pub use text::detokenize::IncrementalDecoder;
pub use text::stop::{StopMatcher, StopOutcome};
pub use text::tokenizer::Tokenizer;
pub use text::tool_calls::{ParsedCall, ToolCallFormat, ToolCalls};
pub use text::tool_prompt::{ChatTools, RequiredCall};
