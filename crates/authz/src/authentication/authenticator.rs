//! One call from request parts to [`Principal`]: the whole authentication rule set in order.
//!
//! 1. a token in the query string is refused (400);
//! 2. exactly one `Authorization` header, `Bearer` or `DPoP` (401/400 otherwise);
//! 3. the token is validated (JWT — a token verified before is answered from
//!    [`crate::token::token_cache`] while its key is current — or introspection, per configuration);
//! 4. binding: a DPoP-bound token (`cnf.jkt`) sent as `Bearer` is refused (RFC 9449 §7.2 — the
//!    binding would otherwise be bypassed by simply dropping the proof); a `DPoP` request needs a
//!    bound token and exactly one valid proof for this method, URL and token (and, with
//!    `dpop_nonce: required`, a recent server nonce). The proof ids are remembered in the rate
//!    limiter's Redis when `rate_limits.backend` is `redis`, so every replica refuses a replay; in
//!    this process otherwise.

use std::sync::Arc;
use std::time::Duration;

use crate::authentication::challenge::{AuthError, ChallengeParams};
use crate::authentication::credentials::{Scheme, parse_authorization, parse_dpop_header, refuse_token_in_query};
use crate::clock::Clock;
use crate::config::{DpopNonceMode, OAuthConfig, TokenValidationMethod};
use crate::principal::Principal;
use crate::ratelimit::config::Backend;
use crate::token::discovery::{FetchError, build_http_client};
use crate::token::dpop::{DpopRequest, DpopVerifier};
use crate::token::dpop_nonce::{NonceIssuer, NonceSecretError};
use crate::token::introspection::{IntrospectionSettings, Introspector};
use crate::token::jwks::{JwksCache, JwksSettings};
use crate::token::jwt::{JwtPolicy, TokenValidator};
use crate::token::replay_redis::{RedisReplayStore, ReplayError};
use crate::token::token_cache::CachingValidator;

/// The parts of an HTTP request authentication looks at; no HTTP framework types.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// Every `Authorization` header value, in order.
    pub authorization: &'a [&'a [u8]],
    /// Every `DPoP` header value, in order.
    pub dpop: &'a [&'a [u8]],
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URL as the client addressed it (`stack_uri` + path), for DPoP `htu`.
    pub url: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
}

/// Why an [`Authenticator`] could not be built from a validated configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client for the authorization server.
    #[error(transparent)]
    Http(#[from] FetchError),
    /// The Redis connection of the DPoP replay store.
    #[error("rate_limits.redis_url (the DPoP replay store): {0}")]
    ReplayStore(#[from] ReplayError),
    /// The random DPoP nonce secret.
    #[error("dpop_nonce: {0}")]
    NonceSecret(#[from] NonceSecretError),
}

/// A refused request: the answer, and the token's principal when the token itself was valid and only
/// its DPoP proof was refused (so the audit record can name the caller).
#[derive(Debug)]
pub struct Refusal {
    /// What to answer.
    pub error: AuthError,
    /// Who the valid token named, if the token was valid.
    pub principal: Option<Box<Principal>>,
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Self { error, principal: None }
    }
}

enum Validation {
    Jwt { validator: CachingValidator, jwks: Arc<JwksCache> },
    Introspection(Introspector),
}

/// Authenticates requests according to an [`OAuthConfig`].
pub struct Authenticator {
    validation: Validation,
    dpop: Option<DpopVerifier>,
    challenge: ChallengeParams,
}

impl Authenticator {
    /// Builds validators from a validated configuration; nothing is fetched or dialled yet. Call
    /// inside a Tokio runtime (the Redis replay store's connection is prepared here).
    pub fn from_config(cfg: &OAuthConfig, clock: Clock) -> Result<Self, SetupError> {
        let http = build_http_client()?;
        let validation = match cfg.token_validation_method {
            TokenValidationMethod::JwtAsymmetric => {
                let settings = JwksSettings {
                    issuer: cfg.auth_server_uri.clone(),
                    jwks_uri: cfg.jwks_uri.clone(),
                    ttl: cfg.jwks_cache_ttl,
                    refetch_interval: cfg.jwks_refetch_interval,
                    allowed: cfg.algorithms(),
                };
                let jwks = Arc::new(JwksCache::new(http, settings, clock.clone()));
                let validator = TokenValidator::new(jwks.clone(), JwtPolicy::from_config(cfg), clock.clone())
                    .with_rules(cfg.claim_rules());
                let validator = CachingValidator::new(validator, jwks.clone(), clock.clone(), cfg.clock_leeway);
                Validation::Jwt { validator, jwks }
            }
            TokenValidationMethod::Introspection => Validation::Introspection(Introspector::new(
                http,
                IntrospectionSettings::from_config(cfg),
                clock.clone(),
            )),
        };
        let dpop = if cfg.dpop_enabled { Some(dpop_verifier(cfg, clock)?) } else { None };
        Ok(Self { validation, dpop, challenge: ChallengeParams::from_config(cfg) })
    }

    /// The nonce DPoP clients must put in their next proof, when `dpop_nonce` is `required`: sent as
    /// `DPoP-Nonce` on answers to DPoP requests, so clients pick up a rotated nonce without a refusal
    /// (RFC 9449 §8.2 lets a server send one with any answer).
    pub fn dpop_nonce(&self) -> Option<String> {
        self.dpop.as_ref().and_then(DpopVerifier::current_nonce)
    }

    /// Fetches the JWKS ahead of the first request (no-op for introspection); log the error, if any.
    pub async fn prefetch(&self) -> Result<(), FetchError> {
        match &self.validation {
            Validation::Jwt { jwks, .. } => jwks.prefetch().await.map(|_| ()),
            Validation::Introspection(_) => Ok(()),
        }
    }

    /// Sends the authenticator's own events (failed JWKS refreshes) to the audit log.
    pub fn audit_to(&self, log: &crate::audit::AuditLog) {
        if let Validation::Jwt { jwks, .. } = &self.validation {
            jwks.audit_failures_to(log.clone());
        }
    }

    /// Challenge parameters, for answering any [`AuthError`].
    pub fn challenge_params(&self) -> &ChallengeParams {
        &self.challenge
    }

    /// Authenticates one request.
    pub async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        self.authenticate_or_refuse(req).await.map_err(|refusal| refusal.error)
    }

    /// Authenticates one request; a refusal also names the token's principal when only the DPoP
    /// proof was refused.
    pub async fn authenticate_or_refuse(&self, req: &AuthRequest<'_>) -> Result<Principal, Refusal> {
        refuse_token_in_query(req.query)?;
        let credentials = parse_authorization(req.authorization.iter().copied())?;
        let verifier = match (credentials.scheme, &self.dpop) {
            (Scheme::Bearer, _) => None,
            (Scheme::Dpop, Some(verifier)) => Some(verifier),
            (Scheme::Dpop, None) => {
                return Err(AuthError::MissingToken {
                    reason: "dpop_disabled",
                    description: "the DPoP scheme is not enabled; use Bearer",
                }
                .into());
            }
        };
        let principal = match &self.validation {
            Validation::Jwt { validator, .. } => {
                validator.validate(&credentials.token).await.map_err(AuthError::from)?
            }
            Validation::Introspection(introspector) => {
                introspector.introspect(&credentials.token).await.map_err(AuthError::from)?
            }
        };
        match (verifier, principal.cnf_jkt.as_deref()) {
            (None, None) => Ok(principal),
            (None, Some(_)) => Err(AuthError::InvalidToken {
                reason: "dpop_bound_as_bearer",
                description: "this token is DPoP-bound; present it with the DPoP scheme and a proof".into(),
            }
            .into()),
            (Some(_), None) => Err(AuthError::InvalidToken {
                reason: "dpop_unbound_token",
                description: "the token is not DPoP-bound; use the Bearer scheme".into(),
            }
            .into()),
            (Some(verifier), Some(jkt)) => {
                let checked = match parse_dpop_header(req.dpop.iter().copied()) {
                    Ok(proof) => {
                        let dpop_req = DpopRequest {
                            method: req.method,
                            url: req.url,
                            access_token: &credentials.token,
                            expected_jkt: jkt,
                        };
                        let verified = verifier.verify(proof, &dpop_req).await;
                        verified.map_err(|e| AuthError::from_dpop(e, verifier.current_nonce()))
                    }
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(()) => Ok(principal),
                    Err(error) => Err(Refusal { error, principal: Some(Box::new(principal)) }),
                }
            }
        }
    }
}

/// The DPoP verifier `cfg` asks for: proof ids in Redis when the rate limiter's backend is Redis (so
/// replicas share them), server nonces when `dpop_nonce` is `required`.
fn dpop_verifier(cfg: &OAuthConfig, clock: Clock) -> Result<DpopVerifier, SetupError> {
    let mut verifier = DpopVerifier::new(cfg.algorithms(), cfg.dpop_proof_max_age, clock.clone());
    let limits = &cfg.rate_limits;
    if limits.backend == Backend::Redis {
        let url = limits.redis_url.as_deref().unwrap_or_default();
        let timeout = Duration::from_millis(limits.redis_timeout_ms);
        verifier = verifier.with_shared_replays(RedisReplayStore::connect(url, &limits.redis_key_prefix, timeout)?);
    }
    if cfg.dpop_nonce == DpopNonceMode::Required {
        let secret = cfg.dpop_nonce_secret.as_ref().map(|s| s.expose().as_bytes());
        verifier = verifier.with_nonces(NonceIssuer::new(secret, clock)?);
    }
    Ok(verifier)
}

#[cfg(test)]
#[path = "authenticator_tests.rs"]
mod tests;
