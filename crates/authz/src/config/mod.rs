//! The `oauth_config` section: [`OAuthConfig`], read once and validated at start.
//!
//! - [`oauth`]: the section itself, its defaults, environment overrides and validation;
//! - [`claims`]: the `claims` section, which JWT claims are required and where subject, client and
//!   scopes are read from, and [`provider`]: the presets it starts from (`provider: keycloak`, …);
//! - [`error`]: [`ConfigError`], which every nested section's validation returns;
//! - [`env`](mod@env): the `LLAMA_STACK_OAUTH_` override variables and how their values are read;
//! - [`secret`]: [`Secret`], a string redacted in logs and compared in constant time.
//!
//! `error`, `env` and `secret` depend on nothing else in the crate, so the folders that own nested
//! sections (rate limits, safety, audit) can use them while `oauth` gathers those sections.

pub mod claims;
#[cfg(test)]
mod claims_config_tests;
pub mod env;
#[cfg(test)]
mod env_tests;
pub mod error;
pub mod oauth;
pub mod provider;
pub mod secret;

pub use claims::{ClaimRules, ClaimsConfig};
pub use error::ConfigError;
pub use oauth::{AuditLogLevel, DpopNonceMode, OAuthConfig, TokenValidationMethod, parse_asymmetric_algorithm};
pub use provider::Provider;
pub use secret::Secret;
