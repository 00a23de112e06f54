//! llamagate's inference engine: Llama-family models in, tokens out.
//!
//! The engine owns model files and formats (GGUF, Hugging Face safetensors, hub ids), the tokenizer
//! (including one built from GGUF metadata), chat templates, sampling, our own batching-ready Llama
//! forward pass, the scheduler that steps concurrent requests together, streaming with correct UTF-8,
//! cancellation, exact token counts and Llama Guard scores read from next-token probabilities. It knows nothing about HTTP, access tokens or tenants: the server
//! decides who may call it, and the engine reports the real numbers the server bills with.
//!
//! Main types: [`Model`] (load, render a chat, tokenize, [`Model::prepare`] + [`Model::submit`]),
//! [`GenerationStream`] and its [`GenerationEvent`]s, [`SamplingParams`], [`EngineError`], and for
//! shields [`LlamaGuard`] (the Llama Guard 3 prompt) with its probability-based [`GuardScores`].

mod chat_template;
mod cpu_forward;
mod detokenize;
mod device;
mod engine;
mod error;
mod generation;
mod gguf;
mod gguf_check;
mod guard;
mod guard_scores;
mod hf;
mod hparams;
mod huge_pages;
pub mod kernels;
mod kv_cache_type;
mod linear;
pub mod model;
mod prefix_cache;
mod rope;
mod sampling;
mod scheduler;
mod scoring;
mod sequence;
mod source;
mod stop;
mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use detokenize::IncrementalDecoder;
pub use device::DeviceChoice;
pub use engine::{GenerateParams, Model, ModelInfo, ModelOptions};
pub use error::{EngineError, Result};
pub use generation::{
    FinishReason, GenerationEvent, GenerationOutput, GenerationRequest, GenerationStream, GenerationSummary, Timings,
    Usage,
};
pub use guard::{
    CATEGORIES, GuardCategory, LlamaGuard, categories_for_model, category_by_code, normalize_conversation,
};
pub use guard_scores::{CategoryScore, GuardScores, GuardVocab, score_continuations};
pub use hparams::{Llama3RopeScaling, LlamaHparams, RopeLayout};
pub use kv_cache_type::KvCacheType;
pub use sampling::SamplingParams;
pub use scheduler::{SchedulerConfig, SchedulerStats};
pub use scoring::{NextTokenLogits, ScoringSession};
pub use source::ModelSource;
pub use stop::{StopMatcher, StopOutcome};
pub use tokenizer::Tokenizer;
