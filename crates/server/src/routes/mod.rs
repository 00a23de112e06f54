//! Route handlers, one module per API area. Handlers parse, call the registry and engine, and shape
//! the response; anything with a policy in it lives elsewhere.

pub mod chat;
pub mod chat_types;
pub mod completions;
pub mod completions_types;
pub mod inspect;
pub mod models;
pub mod providers;
pub mod system;
