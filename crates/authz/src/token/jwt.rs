//! RFC 9068 JWT access-token validation against the cached JWKS.
//!
//! Order of checks: the JWS header rules ([`crate::token::jose`]), the key from [`JwksCache`] with its
//! pinned algorithms, the signature, then the claims. `typ` must be `at+jwt` (RFC 8725 §3.11) so an
//! ID token or a DPoP proof cannot pass as an access token. `iss` is compared exactly (a trailing
//! slash is a different issuer), `aud` must contain our audience, `exp`, `iat`, `jti`, `sub` and
//! `client_id` are required (RFC 9068 §2.2), and time checks allow `leeway` seconds of skew.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::OAuthConfig;
use crate::principal::{Principal, Scopes, TokenSource};
use crate::token::jose::{self, HeaderJwk, JoseError};
use crate::token::jwks::{JwksCache, JwksError, PinnedKey};

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

/// Why a token was refused. Messages are fixed text: they never echo the token or its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Header or signature problem.
    #[error(transparent)]
    Jose(#[from] JoseError),
    /// No usable key (`Unavailable` is a server-side 503, the others a 401).
    #[error(transparent)]
    Key(#[from] JwksError),
    /// `typ` is missing or not the access-token type.
    #[error("the token type is not an access token")]
    WrongType,
    /// `iss` is not the configured issuer.
    #[error("the token was issued by an untrusted issuer")]
    WrongIssuer,
    /// `aud` does not contain this resource.
    #[error("the token is not intended for this resource")]
    WrongAudience,
    /// `exp` is past, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A required claim is absent.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unsupported value.
    #[error("the token's `{0}` claim is malformed")]
    BadClaim(&'static str),
}

impl TokenError {
    /// Short stable reason for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Jose(e) => e.reason(),
            Self::Key(JwksError::Unavailable) => "keys_unavailable",
            Self::Key(JwksError::UnknownKey) => "unknown_kid",
            Self::Key(JwksError::AlgorithmMismatch) => "alg_key_mismatch",
            Self::WrongType => "wrong_typ",
            Self::WrongIssuer => "wrong_iss",
            Self::WrongAudience => "wrong_aud",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "iat_in_future",
            Self::MissingClaim(_) => "missing_claim",
            Self::BadClaim(_) => "bad_claim",
        }
    }

    /// True when the failure is on the server's side (no keys), which is a 503 and not a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Key(JwksError::Unavailable))
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
    clock: Clock,
}

impl TokenValidator {
    /// A validator using `jwks` for keys and `clock` for time checks.
    pub fn new(jwks: Arc<JwksCache>, policy: JwtPolicy, clock: Clock) -> Self {
        Self { jwks, policy, clock }
    }

    /// Validates `token` completely; on success the caller is known, not yet authorized.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        Ok(self.validate_verified(token).await?.principal)
    }

    /// [`TokenValidator::validate`], also saying which key verified the token (for the cache of
    /// verified tokens, which must notice when that key is rotated away).
    pub(crate) async fn validate_verified(&self, token: &str) -> Result<Verified, TokenError> {
        let jws = jose::parse(token, &self.policy.allowed, HeaderJwk::Forbidden)?;
        if !typ_matches(jws.typ(), &self.policy.expected_typ) {
            return Err(TokenError::WrongType);
        }
        let key = self.jwks.key_for(jws.kid.as_deref(), jws.alg).await?;
        jws.verify(&key)?;
        let (kid, alg) = (jws.kid.clone(), jws.alg);
        let principal = self.check_claims(jws.claims)?;
        Ok(Verified { principal, kid, alg, key })
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<Principal, TokenError> {
        let now = self.clock.now();
        let leeway = self.policy.leeway;
        let issuer = string_claim(&claims, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        if issuer != self.policy.issuer {
            return Err(TokenError::WrongIssuer);
        }
        check_audience(&claims, &self.policy.audience)?;
        let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
        let iat = numeric_date(&claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        let subject = required_string(&claims, "sub")?;
        let client_id = required_string(&claims, "client_id")?;
        let token_id = required_string(&claims, "jti")?;
        let scopes = string_claim(&claims, "scope")?.map(Scopes::parse).unwrap_or_default();
        let tier = string_claim(&claims, "tier")?.map(String::from);
        let cnf_jkt = confirmation_jkt(&claims)?;
        Ok(Principal {
            subject: subject.to_string(),
            client_id: client_id.to_string(),
            scopes,
            issuer: issuer.to_string(),
            expires_at: Some(exp),
            token_id: Some(token_id.to_string()),
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

pub(crate) fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

pub(crate) fn required_string<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    match string_claim(claims, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(TokenError::MissingClaim(name)),
    }
}

/// A NumericDate (RFC 7519 §2): non-negative seconds, fractions allowed and truncated.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(TokenError::BadClaim(name)),
        },
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

pub(crate) fn check_audience(claims: &Map<String, Value>, audience: &str) -> Result<(), TokenError> {
    let ok = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => {
            if !list.iter().all(Value::is_string) {
                return Err(TokenError::BadClaim("aud"));
            }
            list.iter().any(|a| a == audience)
        }
        Some(_) => return Err(TokenError::BadClaim("aud")),
    };
    if ok { Ok(()) } else { Err(TokenError::WrongAudience) }
}

/// `cnf.jkt` (RFC 9449 §6). Other confirmation methods (e.g. mTLS `x5t#S256`) cannot be checked
/// here, and a bound token whose binding is not checked must not be accepted.
pub(crate) fn confirmation_jkt(claims: &Map<String, Value>) -> Result<Option<String>, TokenError> {
    match claims.get("cnf") {
        None => Ok(None),
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt.clone())),
            _ => Err(TokenError::BadClaim("cnf")),
        },
        Some(_) => Err(TokenError::BadClaim("cnf")),
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
