//! Tokens already verified, so a client that sends the same access token with every request pays
//! for its signature once rather than on every request.
//!
//! Keyed by the token's SHA-256 (the token itself is never stored). An entry is reused only while
//! - the token has not expired (its `exp` plus leeway, checked on every hit, and the entry is
//!   evicted no later than that anyway), and
//! - the key that verified it is still the one the JWKS cache holds for its `kid` and `alg` (the same
//!   key object): after a refresh that rebuilt or removed the key — rotation — the token is verified
//!   again from scratch, so a token signed by a removed key fails exactly as it would uncached.
//!
//! Everything a JWT check decides is a function of the token bytes, the key and the time, so with
//! those three pinned the cached answer is the answer. DPoP proofs are not cached: each request
//! carries a fresh one and the authenticator checks it every time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::principal::Principal;
use crate::token::jwks::JwksCache;
use crate::token::jwt::{TokenError, TokenValidator, Verified};

/// Most distinct tokens remembered; beyond this the least recently used are dropped.
const CAPACITY: u64 = 10_000;
/// Longest an entry lives even for a long-lived token, so the cache turns over.
const MAX_AGE: Duration = Duration::from_secs(300);

struct Entry {
    verified: Verified,
    /// Seconds from insertion until the token's `exp` (plus leeway) passes.
    lifetime: Duration,
}

struct UntilExpiry;

impl Expiry<[u8; 32], Arc<Entry>> for UntilExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], entry: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        Some(entry.lifetime.min(MAX_AGE))
    }
}

/// JWT validation with a cache of tokens already verified.
pub struct CachingValidator {
    validator: TokenValidator,
    jwks: Arc<JwksCache>,
    cache: Cache<[u8; 32], Arc<Entry>>,
    clock: Clock,
    leeway: u64,
}

impl CachingValidator {
    /// Wraps `validator`, whose keys come from `jwks`; `leeway` is the configured clock leeway.
    pub fn new(validator: TokenValidator, jwks: Arc<JwksCache>, clock: Clock, leeway: u64) -> Self {
        let cache = Cache::builder().max_capacity(CAPACITY).expire_after(UntilExpiry).build();
        Self { validator, jwks, cache, clock, leeway }
    }

    /// The same answer as [`TokenValidator::validate`], from the cache when the token was verified
    /// before with a key that is still current.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(entry) = self.cache.get(&digest).await {
            if self.still_valid(&entry.verified).await {
                return Ok(entry.verified.principal.clone());
            }
            self.cache.invalidate(&digest).await;
        }
        let verified = self.validator.validate_verified(token).await?;
        let expires = verified.principal.expires_at.unwrap_or(0).saturating_add(self.leeway);
        let lifetime = Duration::from_secs(expires.saturating_sub(self.clock.now()));
        let principal = verified.principal.clone();
        self.cache.insert(digest, Arc::new(Entry { verified, lifetime })).await;
        Ok(principal)
    }

    async fn still_valid(&self, verified: &Verified) -> bool {
        let not_expired =
            verified.principal.expires_at.is_some_and(|exp| self.clock.now() < exp.saturating_add(self.leeway));
        if !not_expired {
            return false;
        }
        match self.jwks.key_for(verified.kid.as_deref(), verified.alg).await {
            Ok(key) => Arc::ptr_eq(&key, &verified.key),
            Err(_) => false,
        }
    }
}
