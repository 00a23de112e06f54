//! The `oauth_config` section: [`OAuthConfig`], read once and validated at start.
//!
//! - [`oauth`]: the section itself, its defaults, environment overrides and validation;
//! - [`error`]: [`ConfigError`], which every nested section's validation returns;
//! - [`env`](mod@env): the `LLAMA_STACK_OAUTH_` override variables and how their values are read;
//! - [`secret`]: [`Secret`], a string redacted in logs and compared in constant time.
//!
//! `error`, `env` and `secret` depend on nothing else in the crate, so the folders that own nested
//! sections (rate limits, safety, audit) can use them while `oauth` gathers those sections.

pub mod env;
pub mod error;
pub mod oauth;
pub mod secret;

pub use error::ConfigError;
pub use oauth::{AuditLogLevel, OAuthConfig, TokenValidationMethod, parse_asymmetric_algorithm};
pub use secret::Secret;
