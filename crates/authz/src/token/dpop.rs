//! RFC 9449 DPoP proof verification at the resource server (§4.3 checks, §7.1 binding).
//!
//! A DPoP proof is the one JWS whose header may carry a key (`jwk`), because the proof shows
//! possession of exactly that key; the access token's `cnf.jkt` must equal the key's RFC 7638
//! thumbprint. Replay is stopped by a store of `(thumbprint, jti)` hashes that keeps every one for the
//! whole time a proof's `iat` could still be accepted: in this process ([`ReplayStore`], which refuses
//! new proofs with 503 rather than forget a live one when full), or in Redis ([`RedisReplayStore`],
//! shared by every replica; unreachable means 503, never "accept"). The replay check runs last, so a
//! proof that fails any other check cannot burn a `jti`.
//!
//! With server nonces on (RFC 9449 §9, [`NonceIssuer`]) a proof must also carry a recent nonce of ours
//! in its `nonce` claim; without one it is refused with `use_dpop_nonce` and the current nonce.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use crate::clock::Clock;
use crate::token::dpop_nonce::NonceIssuer;
use crate::token::jose::{self, HeaderJwk, JoseError, MAX_KID_LEN};
use crate::token::jwks::pin;
use crate::token::jwt::typ_matches;
use crate::token::replay::{ID_BYTES, ReplayStore, Seen};
use crate::token::replay_redis::RedisReplayStore;

/// Most proof ids remembered at once: a million proofs within one acceptance window (about 60 bytes
/// each); past it new proofs get 503 until old ids expire.
const REPLAY_CAPACITY: usize = 1_000_000;

/// Why a DPoP proof was refused (RFC 9449 error `invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Header or signature problem.
    #[error(transparent)]
    Jose(#[from] JoseError),
    /// `typ` is not `dpop+jwt`.
    #[error("the proof is not a DPoP proof")]
    WrongType,
    /// The header `jwk` contains private key material.
    #[error("the proof key must be a public key")]
    PrivateKey,
    /// The header `jwk` is unusable or does not fit `alg`.
    #[error("the proof key is not acceptable")]
    BadKey,
    /// A required claim is missing or malformed.
    #[error("the proof lacks a valid `{0}` claim")]
    BadClaim(&'static str),
    /// `htm` differs from the request method.
    #[error("the proof is for another HTTP method")]
    MethodMismatch,
    /// `htu` differs from the request URL.
    #[error("the proof is for another URL")]
    UrlMismatch,
    /// `iat` is outside the accepted window.
    #[error("the proof is too old or from the future")]
    IatOutOfWindow,
    /// `ath` is not the hash of the presented access token.
    #[error("the proof is for another access token")]
    AthMismatch,
    /// The proof key is not the key the token is bound to.
    #[error("the proof key does not match the token binding")]
    KeyMismatch,
    /// Server nonces are on and the proof carries none, or one that is not recent (RFC 9449 §9:
    /// `use_dpop_nonce`, answered with a fresh nonce).
    #[error("the proof must carry a current server nonce (see the DPoP-Nonce header)")]
    UseNonce,
    /// This `jti` was already used.
    #[error("the proof has been used before")]
    Replay,
    /// So many proofs arrived within the acceptance window that no more can be remembered; refused
    /// rather than accepted unrecorded.
    #[error("too many DPoP proofs right now; try again shortly")]
    ReplayStoreFull,
    /// The shared replay store (Redis) could not record the proof; refused rather than accepted
    /// unrecorded.
    #[error("the DPoP replay store is unavailable; try again shortly")]
    ReplayStoreUnavailable,
}

impl DpopError {
    /// Short stable reason for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Jose(e) => e.reason(),
            Self::WrongType => "dpop_wrong_typ",
            Self::PrivateKey => "dpop_private_key",
            Self::BadKey => "dpop_bad_key",
            Self::BadClaim(_) => "dpop_bad_claim",
            Self::MethodMismatch => "dpop_htm",
            Self::UrlMismatch => "dpop_htu",
            Self::IatOutOfWindow => "dpop_iat",
            Self::AthMismatch => "dpop_ath",
            Self::KeyMismatch => "dpop_jkt",
            Self::UseNonce => "dpop_nonce",
            Self::Replay => "dpop_replay",
            Self::ReplayStoreFull => "dpop_replay_store_full",
            Self::ReplayStoreUnavailable => "dpop_replay_store_unavailable",
        }
    }
}

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The request's absolute URL as the client addressed it (query and fragment are ignored).
    pub url: &'a str,
    /// The access token presented with `Authorization: DPoP`.
    pub access_token: &'a str,
    /// The token's `cnf.jkt`.
    pub expected_jkt: &'a str,
}

/// Seconds a proof id is kept in Redis beyond the proof's lifetime on this replica, for replicas whose
/// clocks run a little behind ours (and so would still accept the proof).
const REPLICA_CLOCK_MARGIN: u64 = 5;

/// Where the proof ids seen are kept.
enum Replays {
    /// In this process: replicas do not see each other's proofs.
    Memory(ReplayStore),
    /// In Redis, shared by every replica.
    Redis(RedisReplayStore),
}

/// Verifies DPoP proofs and remembers their `jti`s.
pub struct DpopVerifier {
    allowed: Vec<Algorithm>,
    max_age: u64,
    clock: Clock,
    seen: Replays,
    nonces: Option<NonceIssuer>,
}

impl DpopVerifier {
    /// Accepts proofs signed with `allowed` algorithms whose `iat` is within `max_age` seconds,
    /// remembering their ids in this process and asking for no server nonce.
    pub fn new(allowed: Vec<Algorithm>, max_age: u64, clock: Clock) -> Self {
        // A proof can be accepted from iat - max_age to iat + max_age, so remember ids that long.
        let seen = Replays::Memory(ReplayStore::new(REPLAY_CAPACITY, 2 * max_age + 1));
        Self { allowed, max_age, clock, seen, nonces: None }
    }

    /// Keeps the proof ids in Redis instead, shared with every replica that uses the same store.
    pub fn with_shared_replays(self, store: RedisReplayStore) -> Self {
        Self { seen: Replays::Redis(store), ..self }
    }

    /// Requires proofs to carry a recent nonce from `nonces` (RFC 9449 §9).
    pub fn with_nonces(self, nonces: NonceIssuer) -> Self {
        Self { nonces: Some(nonces), ..self }
    }

    /// The nonce clients must put in their next proof, when nonces are required (`DPoP-Nonce`).
    pub fn current_nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(NonceIssuer::current)
    }

    /// The algorithms accepted in proofs (for the `DPoP algs="…"` challenge and RFC 9728 metadata).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.allowed
    }

    /// Checks `proof` against the request and the token's binding.
    pub async fn verify(&self, proof: &str, req: &DpopRequest<'_>) -> Result<(), DpopError> {
        let jws = jose::parse(proof, &self.allowed, HeaderJwk::Required)?;
        if !typ_matches(jws.typ(), "dpop+jwt") {
            return Err(DpopError::WrongType);
        }
        let jwk = jws.header.get("jwk").and_then(Value::as_object).ok_or(DpopError::BadKey)?;
        if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|m| jwk.contains_key(*m)) {
            return Err(DpopError::PrivateKey);
        }
        let key = pin(&Value::Object(jwk.clone()), &[jws.alg]).ok_or(DpopError::BadKey)?;
        jws.verify(&key)?;

        let claims = &jws.claims;
        if str_claim(claims, "htm")? != req.method {
            return Err(DpopError::MethodMismatch);
        }
        if normalize_htu(str_claim(claims, "htu")?) != normalize_htu(req.url) || normalize_htu(req.url).is_none() {
            return Err(DpopError::UrlMismatch);
        }
        let iat = claims.get("iat").and_then(Value::as_f64).ok_or(DpopError::BadClaim("iat"))?;
        if (iat - self.clock.now() as f64).abs() > self.max_age as f64 {
            return Err(DpopError::IatOutOfWindow);
        }
        let jti = str_claim(claims, "jti")?;
        if jti.is_empty() || jti.len() > MAX_KID_LEN {
            return Err(DpopError::BadClaim("jti"));
        }
        let ath = claims.get("ath").and_then(Value::as_str).ok_or(DpopError::AthMismatch)?;
        if !bool::from(ath.as_bytes().ct_eq(access_token_hash(req.access_token).as_bytes())) {
            return Err(DpopError::AthMismatch);
        }
        let jkt = thumbprint(jwk).ok_or(DpopError::BadKey)?;
        if !bool::from(jkt.as_bytes().ct_eq(req.expected_jkt.as_bytes())) {
            return Err(DpopError::KeyMismatch);
        }
        if let Some(nonces) = &self.nonces
            && !claims.get("nonce").and_then(Value::as_str).is_some_and(|nonce| nonces.accepts(nonce))
        {
            return Err(DpopError::UseNonce);
        }
        let digest = Sha256::new().chain_update(&jkt).chain_update(b"\0").chain_update(jti).finalize();
        let mut replay_key = [0u8; ID_BYTES];
        replay_key.copy_from_slice(&digest[..ID_BYTES]);
        let now = self.clock.now();
        let seen = match &self.seen {
            Replays::Memory(store) => store.remember(replay_key, now),
            Replays::Redis(store) => {
                // Until the proof's iat is too old here, plus the margin for other replicas' clocks.
                let until = (iat.max(0.0) as u64).saturating_add(self.max_age + REPLICA_CLOCK_MARGIN);
                let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
                store.remember(replay_key, ttl).await.map_err(|e| {
                    tracing::warn!(error = %e, "DPoP proof refused: the replay store cannot record it");
                    DpopError::ReplayStoreUnavailable
                })?
            }
        };
        match seen {
            Seen::First => Ok(()),
            Seen::Again => Err(DpopError::Replay),
            Seen::Full => Err(DpopError::ReplayStoreFull),
        }
    }
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, DpopError> {
    claims.get(name).and_then(Value::as_str).ok_or(DpopError::BadClaim(name))
}

/// `htu` comparison form (RFC 9449 §4.3 step 9): parsed URL without query and fragment, so scheme
/// and host case and default ports compare as equal.
fn normalize_htu(raw: &str) -> Option<String> {
    let mut url = Url::parse(raw).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

/// `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members in lexicographic order.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match s("kty")? {
        "EC" => json!({"crv": s("crv")?, "kty": "EC", "x": s("x")?, "y": s("y")?}),
        "RSA" => json!({"e": s("e")?, "kty": "RSA", "n": s("n")?}),
        "OKP" => json!({"crv": s("crv")?, "kty": "OKP", "x": s("x")?}),
        _ => return None,
    };
    // The members are written in lexicographic order, as RFC 7638 requires; serde_json keeps them so
    // with or without `preserve_order` (which a dependency switches on).
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes())))
}

#[cfg(test)]
#[path = "dpop_tests.rs"]
mod tests;
