//! One call from request parts to [`Principal`]: the whole authentication rule set in order.
//!
//! 1. a token in the query string is refused (400);
//! 2. exactly one `Authorization` header, `Bearer` or `DPoP` (401/400 otherwise);
//! 3. the token is validated (JWT — a token verified before is answered from
//!    [`crate::token::token_cache`] while its key is current — or introspection, per configuration);
//! 4. binding: a DPoP-bound token (`cnf.jkt`) sent as `Bearer` is refused (RFC 9449 §7.2 — the
//!    binding would otherwise be bypassed by simply dropping the proof); a `DPoP` request needs a
//!    bound token and exactly one valid proof for this method, URL and token.

use std::sync::Arc;

use crate::authentication::challenge::{AuthError, ChallengeParams};
use crate::authentication::credentials::{Scheme, parse_authorization, parse_dpop_header, refuse_token_in_query};
use crate::clock::Clock;
use crate::config::{OAuthConfig, TokenValidationMethod};
use crate::principal::Principal;
use crate::token::discovery::{FetchError, build_http_client};
use crate::token::dpop::{DpopRequest, DpopVerifier};
use crate::token::introspection::{IntrospectionSettings, Introspector};
use crate::token::jwks::{JwksCache, JwksSettings};
use crate::token::jwt::{JwtPolicy, TokenValidator};
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
    /// Builds validators from a validated configuration; nothing is fetched yet.
    pub fn from_config(cfg: &OAuthConfig, clock: Clock) -> Result<Self, FetchError> {
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
        let dpop = cfg.dpop_enabled.then(|| DpopVerifier::new(cfg.algorithms(), cfg.dpop_proof_max_age, clock));
        Ok(Self { validation, dpop, challenge: ChallengeParams::from_config(cfg) })
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
        refuse_token_in_query(req.query)?;
        let credentials = parse_authorization(req.authorization.iter().copied())?;
        let verifier = match (credentials.scheme, &self.dpop) {
            (Scheme::Bearer, _) => None,
            (Scheme::Dpop, Some(verifier)) => Some(verifier),
            (Scheme::Dpop, None) => {
                return Err(AuthError::MissingToken {
                    reason: "dpop_disabled",
                    description: "the DPoP scheme is not enabled; use Bearer",
                });
            }
        };
        let principal = match &self.validation {
            Validation::Jwt { validator, .. } => validator.validate(&credentials.token).await?,
            Validation::Introspection(introspector) => introspector.introspect(&credentials.token).await?,
        };
        match (verifier, principal.cnf_jkt.as_deref()) {
            (None, None) => Ok(principal),
            (None, Some(_)) => Err(AuthError::InvalidToken {
                reason: "dpop_bound_as_bearer",
                description: "this token is DPoP-bound; present it with the DPoP scheme and a proof".into(),
            }),
            (Some(_), None) => Err(AuthError::InvalidToken {
                reason: "dpop_unbound_token",
                description: "the token is not DPoP-bound; use the Bearer scheme".into(),
            }),
            (Some(verifier), Some(jkt)) => {
                let proof = parse_dpop_header(req.dpop.iter().copied())?;
                let dpop_req = DpopRequest {
                    method: req.method,
                    url: req.url,
                    access_token: &credentials.token,
                    expected_jkt: jkt,
                };
                verifier.verify(proof, &dpop_req).await?;
                Ok(principal)
            }
        }
    }
}

#[cfg(test)]
#[path = "authenticator_tests.rs"]
mod tests;
