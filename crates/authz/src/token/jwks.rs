//! The issuer's signing keys, fetched from its JWKS and cached.
//!
//! Rules (OIDC Core §10.1.1, RFC 8725 §3.1, and what Kong/LiteLLM/Spring do in practice):
//! - the JWKS URI is configured or discovered from the issuer's metadata, never taken from a token;
//! - the key set is trusted for `ttl` seconds, then fetched again;
//! - an unknown `kid` triggers one refetch (key rotation), but fetches are single-flight and at most
//!   one per `refetch_interval` (30 s), so a flood of random `kid`s costs the AS one request;
//! - when the AS is unreachable the last good key set keeps serving (stale beats down);
//! - with no key set at all the answer is [`JwksError::Unavailable`], which the server maps to 503;
//! - every key pins the algorithms it may verify, from its key type and curve (and its own `alg`
//!   member), intersected with the configured allow-list. A token's `alg` must be in that set.

use std::sync::{Arc, OnceLock, RwLock};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::audit::{AuditEvent, AuditLog, AuditRecord, Outcome};
use crate::clock::Clock;
use crate::config::parse_asymmetric_algorithm;
use crate::token::discovery::{self, FetchError};
use crate::token::signature::VerifyingKey;

/// Retry interval while no key set has ever been fetched (the AS may still be starting).
const EMPTY_RETRY_SECS: u64 = 5;
/// Smallest RSA modulus accepted (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// Where and how often to fetch keys.
#[derive(Clone, Debug)]
pub struct JwksSettings {
    /// Configured issuer; metadata must name exactly this issuer.
    pub issuer: String,
    /// Explicit JWKS URI; when `None` it is discovered from the issuer's metadata.
    pub jwks_uri: Option<String>,
    /// Seconds a fetched key set is trusted.
    pub ttl: u64,
    /// Minimum seconds between two fetch attempts.
    pub refetch_interval: u64,
    /// Configured algorithm allow-list.
    pub allowed: Vec<Algorithm>,
}

/// A verification key with the algorithms it may be used with.
pub struct PinnedKey {
    /// The JWK `kid`, if it had one.
    pub kid: Option<String>,
    /// Algorithms this key may verify: key type ∩ JWK `alg` ∩ allow-list.
    pub algorithms: Vec<Algorithm>,
    key: VerifyingKey,
}

impl PinnedKey {
    /// True when `signature` (raw bytes) is valid for `message` under `alg`, which must be one of
    /// this key's pinned algorithms (any other algorithm fails).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.algorithms.contains(&alg) && self.key.verify(alg, message, signature)
    }
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// No key set has been obtained (AS unreachable or serving nothing usable): a server-side 503.
    #[error("no signing keys are available from the authorization server")]
    Unavailable,
    /// The key set holds no key with the token's `kid` (after an allowed refetch).
    #[error("no signing key matches the token's key id")]
    UnknownKey,
    /// The `kid` names a key that may not be used with the token's `alg` (e.g. RS256 on an EC key).
    #[error("the token's algorithm does not match its signing key")]
    AlgorithmMismatch,
}

#[derive(Default)]
struct KeyState {
    keys: Arc<Vec<Arc<PinnedKey>>>,
    fetched_at: Option<u64>,
    last_attempt: Option<u64>,
    generation: u64,
    jwks_uri: Option<String>,
}

/// Cached, pinned signing keys of one issuer. Cheap to share behind an `Arc`.
pub struct JwksCache {
    http: reqwest::Client,
    settings: JwksSettings,
    clock: Clock,
    state: RwLock<KeyState>,
    refresh_lock: Mutex<()>,
    /// Where failed refreshes are recorded, once the server has an audit log.
    audit: OnceLock<AuditLog>,
}

impl JwksCache {
    /// A cache that fetches nothing until the first lookup (or [`JwksCache::prefetch`]).
    pub fn new(http: reqwest::Client, settings: JwksSettings, clock: Clock) -> Self {
        let state = KeyState { jwks_uri: settings.jwks_uri.clone(), ..KeyState::default() };
        Self { http, settings, clock, state: RwLock::new(state), refresh_lock: Mutex::new(()), audit: OnceLock::new() }
    }

    /// Records every failed refresh in `log` as `security_jwks_refresh_failure` (set once, at start).
    pub fn audit_failures_to(&self, log: AuditLog) {
        let _ = self.audit.set(log);
    }

    /// Fetches the key set now so the first request does not wait; the error is for a start-up log.
    pub async fn prefetch(&self) -> Result<usize, FetchError> {
        let keys = self.fetch().await?;
        let n = keys.len();
        let mut s = self.write();
        s.keys = Arc::new(keys);
        s.fetched_at = Some(self.clock.now());
        s.last_attempt = s.fetched_at;
        s.generation += 1;
        Ok(n)
    }

    /// The key for a token with header `kid` and `alg`, refetching as the rules above allow.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<PinnedKey>, JwksError> {
        let (generation, expired) = {
            let s = self.read();
            let expired = s.fetched_at.is_none_or(|t| self.clock.now() >= t.saturating_add(self.settings.ttl));
            (s.generation, expired)
        };
        if expired {
            self.refresh(generation).await;
        }
        let generation = match self.lookup(kid, alg) {
            Ok(key) => return Ok(key),
            Err(JwksError::UnknownKey) => self.read().generation,
            Err(e) => return Err(e),
        };
        // Unfamiliar kid: the AS may have rotated keys (OIDC Core §10.1.1).
        self.refresh(generation).await;
        self.lookup(kid, alg)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<PinnedKey>, JwksError> {
        let keys = self.read().keys.clone();
        if keys.is_empty() {
            return Err(JwksError::Unavailable);
        }
        let key = match kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            // Without a kid, only an unambiguous key for this alg will do.
            None => {
                let mut fits = keys.iter().filter(|k| k.algorithms.contains(&alg));
                match (fits.next(), fits.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        };
        let key = key.ok_or(JwksError::UnknownKey)?;
        if key.algorithms.contains(&alg) { Ok(key.clone()) } else { Err(JwksError::AlgorithmMismatch) }
    }

    /// Single-flight, throttled refresh. `seen` is the generation the caller looked at: if another
    /// task refreshed meanwhile, this one just uses its result.
    async fn refresh(&self, seen: u64) {
        let _flight = self.refresh_lock.lock().await;
        let now = self.clock.now();
        {
            let s = self.read();
            if s.generation != seen {
                return;
            }
            let wait = if s.keys.is_empty() {
                self.settings.refetch_interval.min(EMPTY_RETRY_SECS)
            } else {
                self.settings.refetch_interval
            };
            if s.last_attempt.is_some_and(|last| now < last.saturating_add(wait)) {
                return;
            }
        }
        let result = self.fetch().await;
        let mut s = self.write();
        s.last_attempt = Some(now);
        s.generation += 1;
        match result {
            Ok(keys) => {
                s.keys = Arc::new(keys);
                s.fetched_at = Some(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, stale_keys = s.keys.len(), "JWKS refresh failed");
                if let Some(log) = self.audit.get() {
                    let mut record = AuditRecord::new(AuditEvent::SecurityJwksRefreshFailure, Outcome::Failed);
                    record.issuer = Some(self.settings.issuer.clone());
                    record.reason = Some(format!("{e} (stale keys served: {})", s.keys.len()));
                    // A full queue is already counted as a drop; nothing else to do off a request.
                    let _ = log.record(record);
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<PinnedKey>>, FetchError> {
        let known = self.read().jwks_uri.clone();
        let uri = match known {
            Some(uri) => uri,
            None => {
                let meta = discovery::discover(&self.http, &self.settings.issuer).await?;
                let uri = meta.jwks_uri.ok_or_else(|| FetchError::BadDocument {
                    url: self.settings.issuer.clone(),
                    detail: "metadata has no jwks_uri".into(),
                })?;
                self.write().jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc: Value = discovery::get_json(&self.http, &uri).await?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| FetchError::BadDocument { url: uri.clone(), detail: "no `keys` array".into() })?;
        let keys: Vec<Arc<PinnedKey>> =
            entries.iter().filter_map(|e| pin(e, &self.settings.allowed)).map(Arc::new).collect();
        if keys.is_empty() {
            // Keep the previous set rather than replacing it with nothing.
            return Err(FetchError::BadDocument { url: uri, detail: "no usable signing key".into() });
        }
        Ok(keys)
    }
}

/// Turns one JWK into a pinned verification key, or `None` for keys we must not use.
pub(crate) fn pin(entry: &Value, allowed: &[Algorithm]) -> Option<PinnedKey> {
    let obj = entry.as_object()?;
    // A published private or symmetric key is an AS misconfiguration; never verify with it.
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|m| obj.contains_key(*m)) {
        tracing::warn!(kid = ?obj.get("kid"), "JWKS entry with private or symmetric key material ignored");
        return None;
    }
    if obj.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = obj.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|o| o == "verify"))
    {
        return None;
    }
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = base64_len(&p.n);
            if n * 8 < MIN_RSA_BITS {
                return None;
            }
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        _ => return None,
    };
    let declared = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(parse_asymmetric_algorithm(a)?),
        Some(_) => return None,
    };
    let algorithms: Vec<Algorithm> =
        family.iter().copied().filter(|a| allowed.contains(a) && declared.is_none_or(|d| d == *a)).collect();
    if algorithms.is_empty() {
        return None;
    }
    let key = VerifyingKey::from_jwk(&jwk)?;
    Some(PinnedKey { kid: jwk.common.key_id.clone(), algorithms, key })
}

/// Decoded length of a base64url string (ignoring a leading zero byte is not needed for a bound).
fn base64_len(s: &str) -> usize {
    s.trim_end_matches('=').len() * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::test_fixtures::{MockServer, ec_key, rsa_key};
    use crate::token::discovery::build_http_client;
    use serde_json::json;

    const ALLOWED: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

    async fn new_cache(mock: &MockServer) -> (JwksCache, ManualClock) {
        let (clock, hand) = Clock::manual(1_000_000);
        let settings = JwksSettings {
            issuer: mock.base.clone(),
            jwks_uri: None,
            ttl: 300,
            refetch_interval: 30,
            allowed: ALLOWED.to_vec(),
        };
        (JwksCache::new(build_http_client().expect("client"), settings, clock), hand)
    }

    #[test]
    fn keys_pin_their_algorithm_family() {
        let rsa = rsa_key(0, "r", Algorithm::RS256);
        let ec = ec_key("e");
        let all = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];
        let mut rsa_no_alg = rsa.public_jwk.clone();
        rsa_no_alg.as_object_mut().expect("obj").remove("alg");
        let pinned = pin(&rsa_no_alg, &all).expect("rsa");
        assert_eq!(pinned.algorithms, [Algorithm::RS256, Algorithm::PS256]);
        assert_eq!(pin(&rsa.public_jwk, &all).expect("rsa").algorithms, [Algorithm::RS256]);
        assert_eq!(pin(&ec.public_jwk, &all).expect("ec").algorithms, [Algorithm::ES256]);
        assert!(pin(&ec.public_jwk, &[Algorithm::RS256]).is_none());

        let mut private = ec.public_jwk.clone();
        private["d"] = json!("AAAA");
        assert!(pin(&private, &all).is_none(), "private key material must be ignored");
        assert!(pin(&json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}), &all).is_none());
        let mut enc = ec.public_jwk.clone();
        enc["use"] = json!("enc");
        assert!(pin(&enc, &all).is_none());
        let mut small = rsa_no_alg.clone();
        small["n"] = json!("AQAB".repeat(40));
        assert!(pin(&small, &all).is_none(), "RSA under 2048 bits must be ignored");
    }

    #[tokio::test]
    async fn unknown_kid_flood_refetches_at_most_once_per_interval() {
        let mock = MockServer::start().await;
        let ec = ec_key("es-1");
        mock.serve_metadata();
        mock.serve_jwks(&[&ec]);
        let (cache, hand) = new_cache(&mock).await;
        let cache = Arc::new(cache);
        assert!(cache.key_for(Some("es-1"), Algorithm::ES256).await.is_ok());
        assert_eq!(mock.hits("/jwks"), 1);
        assert_eq!(mock.hits("/.well-known/oauth-authorization-server"), 1);

        let mut tasks = Vec::new();
        for i in 0..200 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.key_for(Some(&format!("evil-{i}")), Algorithm::ES256).await }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join").err(), Some(JwksError::UnknownKey));
        }
        // Within 30 s of the first fetch, the flood is answered from the cache alone.
        assert_eq!(mock.hits("/jwks"), 1);
        hand.advance(31);
        for i in 0..50 {
            let cache = cache.clone();
            assert!(cache.key_for(Some(&format!("again-{i}")), Algorithm::ES256).await.is_err());
        }
        assert_eq!(mock.hits("/jwks"), 2, "one refetch per 30 s, however many unknown kids");
        assert_eq!(mock.hits("/.well-known/oauth-authorization-server"), 1, "jwks_uri is remembered");
    }

    #[tokio::test]
    async fn rotation_is_picked_up_by_one_refetch_and_old_keys_go() {
        let mock = MockServer::start().await;
        let old = ec_key("old");
        let new = ec_key("new");
        mock.serve_metadata();
        mock.serve_jwks(&[&old]);
        let (cache, hand) = new_cache(&mock).await;
        assert!(cache.key_for(Some("old"), Algorithm::ES256).await.is_ok());
        mock.serve_jwks(&[&new]);
        hand.advance(30);
        assert!(cache.key_for(Some("new"), Algorithm::ES256).await.is_ok());
        assert_eq!(mock.hits("/jwks"), 2);
        assert_eq!(cache.key_for(Some("old"), Algorithm::ES256).await.err(), Some(JwksError::UnknownKey));
    }

    #[tokio::test]
    async fn stale_keys_serve_while_the_as_is_down_and_empty_cache_is_unavailable() {
        let mock = MockServer::start().await;
        let ec = ec_key("k");
        mock.serve_metadata();
        mock.serve_jwks(&[&ec]);
        let (cache, hand) = new_cache(&mock).await;
        assert!(cache.key_for(Some("k"), Algorithm::ES256).await.is_ok());
        mock.set_down(true);
        hand.advance(301); // TTL over: a refresh is due but fails
        assert!(cache.key_for(Some("k"), Algorithm::ES256).await.is_ok(), "stale key must keep serving");
        assert!(cache.key_for(Some("k"), Algorithm::ES256).await.is_ok());
        assert_eq!(mock.hits("/jwks"), 2, "failed refresh is throttled too");

        let down = MockServer::start().await;
        down.set_down(true);
        let (empty, _hand) = new_cache(&down).await;
        assert_eq!(empty.key_for(Some("k"), Algorithm::ES256).await.err(), Some(JwksError::Unavailable));
        let unreachable = JwksCache::new(
            build_http_client().expect("client"),
            JwksSettings {
                issuer: "http://127.0.0.1:9".into(),
                jwks_uri: Some("http://127.0.0.1:9/jwks".into()),
                ttl: 300,
                refetch_interval: 30,
                allowed: ALLOWED.to_vec(),
            },
            Clock::system(),
        );
        assert_eq!(unreachable.key_for(Some("k"), Algorithm::ES256).await.err(), Some(JwksError::Unavailable));
    }

    #[tokio::test]
    async fn token_alg_must_fit_the_key() {
        let mock = MockServer::start().await;
        let ec = ec_key("ec");
        let rsa = rsa_key(0, "rsa", Algorithm::RS256);
        mock.serve_metadata();
        mock.serve_jwks(&[&ec, &rsa]);
        let (cache, _hand) = new_cache(&mock).await;
        assert_eq!(cache.key_for(Some("ec"), Algorithm::RS256).await.err(), Some(JwksError::AlgorithmMismatch));
        assert_eq!(cache.key_for(Some("rsa"), Algorithm::ES256).await.err(), Some(JwksError::AlgorithmMismatch));
        assert!(cache.key_for(None, Algorithm::ES256).await.is_ok(), "single ES key needs no kid");
        assert_eq!(mock.hits("/jwks"), 1);
    }
}
