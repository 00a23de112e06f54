//! # llamagate-authz: the OAuth 2.1 resource-server half of llamagate
//!
//! **Owns** everything that decides whether a request may reach a model, one folder per concern:
//!
//! - [`config`]: the `oauth_config` section ([`OAuthConfig`], validated once at start); the nested
//!   sections' types live with the folders that use them (`rate_limits` in [`ratelimit`], `safety`
//!   in [`policy`], `audit` in [`audit`]);
//! - [`token`]: access tokens — RFC 9068 JWT validation against a cached, pinned JWKS
//!   ([`TokenValidator`], [`JwksCache`]), with claim rules that read other identity providers' token
//!   shapes (`oauth_config.provider` and `claims`, [`config::ClaimRules`]), RFC 7662 introspection with a bounded cache
//!   ([`Introspector`]), RFC 9449 DPoP proofs ([`DpopVerifier`], with replay ids in process or in the
//!   rate limiter's Redis, and optional server nonces) and the authorization server's metadata;
//! - [`authentication`]: what the server calls per request — reading credentials from header bytes,
//!   the whole sequence ([`Authenticator`]), RFC 6750 errors and challenges ([`AuthError`]) and RFC
//!   9728 metadata ([`ProtectedResourceMetadata`]);
//! - [`principal`]: the resulting caller ([`Principal`], its [`Scopes`]), which every later decision
//!   reads instead of the token;
//! - [`policy`]: the model permission matrix ([`PermissionMatrix`]) and safety levels
//!   ([`SafetyPolicy`]), which turn a shield's per-category scores into a per-caller decision;
//! - [`ratelimit`]: tiers ([`Tiers`], keyed by [`RateKey`]) and the rate limiter ([`RateLimiter`], in
//!   process or in Redis), which takes a [`Reservation`] before generation and settles it with the
//!   real token count; a tier also carries the priority the server hands the engine's queue (a
//!   number, nothing engine-specific);
//! - [`audit`]: the hash-chained audit log ([`AuditLog`]) that records every decision;
//! - [`clock`]: the injectable [`Clock`] every time-based rule reads.
//!
//! No two modules import each other, directly or through others: what several need (the config
//! errors and environment prefix, the scope vocabulary in [`principal`], the limiter's status types)
//! sits in small modules that import none of their users, and each folder's `mod.rs` only declares
//! and re-exports.
//!
//! **Must not know** about HTTP servers, routes, request bodies, models' weights or the engine:
//! the server passes header bytes, method and URL in ([`AuthRequest`]) and turns an
//! [`AuthErrorResponse`] into an HTTP answer. The only HTTP here is the client that talks to the
//! authorization server (metadata, JWKS, introspection) — never to a URL taken from a token.
//!
//! Security stance: deny by default, algorithms pinned per key and never taken from the token,
//! no header-supplied keys, exact scope matching, time through an injectable [`Clock`], tokens
//! never logged or stored (the introspection cache is keyed by their SHA-256), secrets compared in
//! constant time, and "cannot check" (503) kept apart from "checked and refused" (401/403).

#![deny(missing_docs)]

pub mod audit;
pub mod authentication;
pub mod clock;
pub mod config;
pub mod policy;
pub mod principal;
pub mod ratelimit;
#[cfg(test)]
mod test_fixtures;
pub mod token;

pub use audit::{AuditConfig, AuditEvent, AuditLog, AuditRecord};
pub use authentication::authenticator::{AuthRequest, Authenticator, Refusal, SetupError};
pub use authentication::challenge::{AuthError, AuthErrorResponse, ChallengeParams};
pub use authentication::metadata::ProtectedResourceMetadata;
pub use clock::Clock;
pub use config::{ConfigError, DpopNonceMode, OAuthConfig, Secret, TokenValidationMethod};
pub use policy::permissions::{Decision, PermissionError, PermissionMatrix, SAFETY_SCOPE};
pub use policy::safety::{ContentCategory, SafetyConfig, SafetyDecision, SafetyLevel, SafetyPolicy, SafetyViolation};
pub use principal::{Principal, Scopes, TokenSource};
pub use ratelimit::tier::{RateKey, Tier, Tiers};
pub use ratelimit::{RateLimitError, RateLimitStatus, RateLimiter, Reservation};
pub use token::discovery::install_crypto_provider;
pub use token::dpop::DpopVerifier;
pub use token::introspection::Introspector;
pub use token::jwks::JwksCache;
pub use token::jwt::{TokenError, TokenValidator};
