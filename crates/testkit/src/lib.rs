//! # llamagate-testkit: what the integration tests of every crate share
//!
//! **Owns** the real processes the tests start and the repository paths they read: a `redis-server`
//! on a free loopback port ([`RedisServer`]), `llamagate serve --dev` in a working directory with
//! `llamagate token` for it ([`DevServer`], [`dev_token`]), and where the default model lives
//! ([`default_model`]). A dev-dependency only: nothing here ships in a binary.
//!
//! **Must not know** any crate's types: it starts processes and hands back addresses and strings, so
//! the crates under test depend on it without it depending on them.

#![deny(missing_docs)]

mod dev_server;
mod paths;
mod redis;

pub use dev_server::{DevServer, dev_token};
pub use paths::{default_model, llamagate_bin, workspace_root};
pub use redis::RedisServer;
