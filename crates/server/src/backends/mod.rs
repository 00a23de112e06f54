//! What serves models and shields behind the gate: the [`registry`] of served models, each a
//! [`registry::Backend`] (the engine here, or a [`remote`] OpenAI-compatible provider), and the Llama Guard
//! [`shields`] that run on them. A `guard_double` stand-in for
//! a guard model exists only in builds with the `test-guard` feature.

#[cfg(feature = "test-guard")]
pub mod guard_double;
pub mod prompt;
pub mod provider_data;
pub mod registry;
pub mod remote;
pub mod shields;
