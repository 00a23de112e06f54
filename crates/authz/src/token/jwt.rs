//! RFC 9068 JWT access-token validation against the cached JWKS.
//!
//! Order of checks: the JWS header rules ([`crate::token::jose`]), the `typ`, the key from
//! [`JwksCache`] with its pinned algorithms, the signature, then the claims. By default (the
//! `generic` provider) `typ` must be `at+jwt` (RFC 8725 §3.11) so an ID token or a DPoP proof cannot
//! pass as an access token, and `exp`, `iat`, `jti`, `sub` and `client_id` are required (RFC 9068
//! §2.2). Identity providers that issue other shapes get [`ClaimRules`] (accepted `typ` values,
//! required claims, where subject, client and scopes are); whatever the rules, `iss` is compared
//! exactly against the accepted issuers (a trailing slash is a different issuer), `aud` must hold
//! one accepted audience when present, `exp` is required, and time checks allow `leeway` seconds of
//! skew.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::{ClaimRules, OAuthConfig, Provider};
use crate::principal::{Principal, TokenSource};
/// Defined with the claim readers; named here because the validator returns it.
pub use crate::token::claims::TokenError;
use crate::token::claims::{apply_rules, check_any_audience, confirmation_jkt, numeric_date, string_claim};
use crate::token::jose::{self, HeaderJwk};
use crate::token::jwks::{JwksCache, PinnedKey};

/// What a JWT access token must satisfy, taken from [`OAuthConfig`].
#[derive(Clone, Debug)]
pub struct JwtPolicy {
    /// Exact expected `iss`.
    pub issuer: String,
    /// Audience that `aud` must contain.
    pub audience: String,
    /// Algorithm allow-list.
    pub allowed: Vec<Algorithm>,
    /// Seconds of clock skew tolerated.
    pub leeway: u64,
    /// Required `typ` (also accepted with an `application/` prefix, case-insensitively).
    pub expected_typ: String,
}

impl JwtPolicy {
    /// The policy a validated configuration describes.
    pub fn from_config(cfg: &OAuthConfig) -> Self {
        Self {
            issuer: cfg.auth_server_uri.clone(),
            audience: cfg.effective_audience().to_string(),
            allowed: cfg.algorithms(),
            leeway: cfg.clock_leeway,
            expected_typ: cfg.expected_typ.clone(),
        }
    }
}

/// What verifying one token established: the caller and the key that proved it, so the cache of
/// verified tokens (`token_cache`) can notice when that key is rotated away.
#[derive(Clone)]
pub(crate) struct Verified {
    /// The caller.
    pub principal: Principal,
    /// The header's `kid` and `alg`, to look the key up again.
    pub kid: Option<String>,
    /// The algorithm the signature was checked with.
    pub alg: Algorithm,
    /// The key that verified the signature.
    pub key: Arc<PinnedKey>,
}

/// Validates JWT access tokens into [`Principal`]s.
pub struct TokenValidator {
    jwks: Arc<JwksCache>,
    policy: JwtPolicy,
    rules: ClaimRules,
    clock: Clock,
}

impl TokenValidator {
    /// A validator using `jwks` for keys and `clock` for time checks, with the RFC 9068 claim rules
    /// (the `generic` provider, `typ` = `policy.expected_typ`).
    pub fn new(jwks: Arc<JwksCache>, policy: JwtPolicy, clock: Clock) -> Self {
        let rules = Provider::Generic.preset(&policy.expected_typ);
        Self { jwks, policy, rules, clock }
    }

    /// The same validator applying `rules` (from [`OAuthConfig::claim_rules`]) instead.
    pub fn with_rules(self, rules: ClaimRules) -> Self {
        Self { rules, ..self }
    }

    /// Validates `token` completely; on success the caller is known, not yet authorized.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        Ok(self.validate_verified(token).await?.principal)
    }

    /// [`TokenValidator::validate`], also saying which key verified the token (for the cache of
    /// verified tokens, which must notice when that key is rotated away).
    pub(crate) async fn validate_verified(&self, token: &str) -> Result<Verified, TokenError> {
        let jws = jose::parse(token, &self.policy.allowed, HeaderJwk::Forbidden)?;
        if !self.typ_accepted(jws.typ()) {
            return Err(TokenError::WrongType);
        }
        let key = self.jwks.key_for(jws.kid.as_deref(), jws.alg).await?;
        jws.verify(&key)?;
        let (kid, alg) = (jws.kid.clone(), jws.alg);
        let principal = self.check_claims(jws.claims)?;
        Ok(Verified { principal, kid, alg, key })
    }

    /// The header's `typ` is one of the accepted values, or absent where the rules allow that.
    fn typ_accepted(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.rules.allow_missing_typ,
            Some(_) => self.rules.accepted_typ.iter().any(|accepted| typ_matches(typ, accepted)),
        }
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<Principal, TokenError> {
        let now = self.clock.now();
        let leeway = self.policy.leeway;
        let rules = &self.rules;
        let issuer = string_claim(&claims, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        if issuer != self.policy.issuer && !rules.issuers.iter().any(|i| i == issuer) {
            return Err(TokenError::WrongIssuer);
        }
        if rules.require_audience || claims.contains_key("aud") {
            let accepted: Vec<&str> = std::iter::once(self.policy.audience.as_str())
                .chain(rules.audiences.iter().map(String::as_str))
                .collect();
            check_any_audience(&claims, &accepted)?;
        }
        let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenError::IssuedInFuture);
        }
        let mapped = apply_rules(&claims, rules)?;
        let tier = string_claim(&claims, "tier")?.map(String::from);
        let cnf_jkt = confirmation_jkt(&claims)?;
        Ok(Principal {
            subject: mapped.subject,
            client_id: mapped.client_id,
            scopes: mapped.scopes,
            issuer: issuer.to_string(),
            expires_at: Some(exp),
            token_id: mapped.token_id,
            cnf_jkt,
            tier,
            source: TokenSource::Jwt,
            claims,
        })
    }
}

/// `typ` check of RFC 8725 §3.11: media types compare case-insensitively, `application/` optional.
pub(crate) fn typ_matches(typ: Option<&str>, expected: &str) -> bool {
    let Some(typ) = typ else { return false };
    let typ = typ.to_ascii_lowercase();
    let expected = expected.to_ascii_lowercase();
    let bare = typ.strip_prefix("application/").unwrap_or(&typ);
    bare == expected.strip_prefix("application/").unwrap_or(&expected)
}

#[cfg(test)]
use crate::token::{jose::JoseError, jwks::JwksError};

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
