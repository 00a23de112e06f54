//! Access tokens: everything that turns presented token bytes into a verified `Principal`.
//!
//! - [`claims`]: why a token is refused, the claim readers, and the configurable claim rules;
//! - [`jose`]: compact JWS parsing and the header rules shared by access tokens and DPoP proofs;
//! - `signature` (private): the signature check itself, with `ring`;
//! - [`discovery`]: the authorization server's metadata and the one HTTP client that talks to it;
//! - [`jwks`]: the issuer's keys, cached, each pinned to the algorithms it may verify;
//! - [`jwt`]: RFC 9068 access-token validation, and [`token_cache`] for tokens already verified;
//! - [`introspection`]: RFC 7662 for opaque tokens, with a bounded cache;
//! - [`dpop`]: RFC 9449 proofs of possession for DPoP-bound tokens, with the store of the proof ids
//!   seen — in process ([`replay`]) or in Redis, shared by replicas ([`replay_redis`]) — and the
//!   optional server nonces ([`dpop_nonce`]).

pub mod claims;
pub mod discovery;
pub mod dpop;
pub mod dpop_nonce;
pub mod introspection;
pub mod jose;
pub mod jwks;
pub mod jwt;
pub mod replay;
pub mod replay_redis;
mod signature;
pub mod token_cache;

#[cfg(test)]
mod provider_tests;
