//! The engine's integration tests, one binary (one link, one process to start): a module per area, all
//! reading their fixtures and the default model through [`support`].

mod bad_input;
mod caller_text;
mod generation;
mod guard;
mod guard_prompt;
mod hub_cache;
mod kquant_llamacpp;
mod llama_spm;
mod scheduling;
mod smollm2_llamacpp;
mod structured_output;
mod support;
mod tiny_llama3;
