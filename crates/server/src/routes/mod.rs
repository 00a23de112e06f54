//! Route handlers, one module per API area. Handlers parse, call the registry and engine, and shape
//! the response; anything with a policy in it lives elsewhere.

pub mod admin;
pub mod chat;
pub mod chat_tool_calls;
pub mod chat_tools;
pub mod chat_types;
pub mod completions;
pub mod completions_types;
pub mod docs;
pub mod generation_fields;
pub mod inspect;
pub mod logprobs_body;
pub mod metrics;
pub mod models;
pub mod moderations;
pub mod providers;
pub mod redact;
pub mod safety;
pub mod shields;
pub mod system;
pub mod usage;
