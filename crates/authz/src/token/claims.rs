//! JWT claims: why a token is refused ([`TokenError`]), the typed readers of standard claims, and
//! the configurable rules ([`ClaimRules`]) that say where an identity provider puts the caller's
//! subject, client and scopes.
//!
//! Claim names come from the configuration, so refusals name them through [`intern`]: each distinct
//! name is leaked once and reused, which keeps [`TokenError`] `'static` (and its existing variants
//! unchanged) at a cost bounded by the configuration.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::config::ClaimRules;
use crate::principal::{Scopes, is_scope_char};
use crate::token::jose::JoseError;
use crate::token::jwks::JwksError;

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
    /// A claim of `claims.required_values` holds another value (e.g. `token_use: id`).
    #[error("the token's `{0}` claim does not have the required value")]
    WrongClaimValue(&'static str),
    /// A claim of `claims.forbidden` is present (e.g. an ID token's `nonce`).
    #[error("the token carries the `{0}` claim, which access tokens must not")]
    ForbiddenClaim(&'static str),
    /// The client is not one of `claims.allowed_client_ids`.
    #[error("the token was issued to a client that may not call this resource")]
    ClientNotAllowed,
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
            Self::WrongClaimValue(_) => "wrong_claim_value",
            Self::ForbiddenClaim(_) => "forbidden_claim",
            Self::ClientNotAllowed => "client_not_allowed",
        }
    }

    /// True when the failure is on the server's side (no keys), which is a 503 and not a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Key(JwksError::Unavailable))
    }
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

/// `aud` must hold `audience` (a string, or an array of strings containing it).
pub(crate) fn check_audience(claims: &Map<String, Value>, audience: &str) -> Result<(), TokenError> {
    check_any_audience(claims, &[audience])
}

/// `aud` must hold one of `accepted` (exact match); an array must contain only strings.
pub(crate) fn check_any_audience(claims: &Map<String, Value>, accepted: &[&str]) -> Result<(), TokenError> {
    let ok = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(a)) => accepted.contains(&a.as_str()),
        Some(Value::Array(list)) => {
            if !list.iter().all(Value::is_string) {
                return Err(TokenError::BadClaim("aud"));
            }
            list.iter().filter_map(Value::as_str).any(|a| accepted.contains(&a))
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

/// A claim name from the configuration as `&'static str`, for [`TokenError`]. Standard names are
/// literals; others are leaked once each (the set is bounded by what the configuration names).
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The claim at `path`: the top-level claim of that exact name when there is one (Auth0's namespaced
/// claims contain dots), otherwise the dotted path walked through objects (`realm_access.roles`).
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let (first, rest) = path.split_once('.')?;
    rest.split('.').try_fold(claims.get(first)?, |v, part| v.as_object()?.get(part))
}

/// What the claim rules read out of a token whose other checks passed.
#[derive(Debug, PartialEq)]
pub(crate) struct MappedClaims {
    /// The caller (`claims.subject`).
    pub subject: String,
    /// The client (first present of `claims.client_id`).
    pub client_id: String,
    /// Scopes gathered from every `claims.scopes` claim.
    pub scopes: Scopes,
    /// `jti`, when present.
    pub token_id: Option<String>,
}

/// Applies the presence, value, client and scope rules of `rules` (issuer, audience and times are
/// checked before, by the validator).
pub(crate) fn apply_rules(claims: &Map<String, Value>, rules: &ClaimRules) -> Result<MappedClaims, TokenError> {
    for name in &rules.required {
        match lookup(claims, name) {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim(intern(name))),
            Some(Value::String(s)) if s.is_empty() => return Err(TokenError::MissingClaim(intern(name))),
            Some(_) => {}
        }
    }
    if let Some(name) = rules.forbidden.iter().find(|name| lookup(claims, name).is_some()) {
        return Err(TokenError::ForbiddenClaim(intern(name)));
    }
    for (name, expected) in &rules.required_values {
        match lookup(claims, name) {
            None => return Err(TokenError::MissingClaim(intern(name))),
            Some(Value::String(actual)) if actual == expected => {}
            Some(_) => return Err(TokenError::WrongClaimValue(intern(name))),
        }
    }
    let subject = required_string(claims, intern(&rules.subject))?.to_string();
    let client_id = client_id(claims, rules)?;
    if !rules.allowed_client_ids.is_empty() && !rules.allowed_client_ids.contains(&client_id) {
        return Err(TokenError::ClientNotAllowed);
    }
    let token_id = string_claim(claims, "jti")?.map(String::from);
    Ok(MappedClaims { subject, client_id, scopes: scopes(claims, &rules.scopes)?, token_id })
}

/// The first present, non-empty claim of `rules.client_id`; a present claim that is not a string is
/// malformed rather than skipped.
fn client_id(claims: &Map<String, Value>, rules: &ClaimRules) -> Result<String, TokenError> {
    for name in &rules.client_id {
        match lookup(claims, name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(_) => return Err(TokenError::BadClaim(intern(name))),
        }
    }
    Err(TokenError::MissingClaim(rules.client_id.first().map_or("client_id", |n| intern(n))))
}

/// Every scope of every claim in `sources`: strings split on spaces, arrays taken element by element
/// (elements that are not valid scope tokens — e.g. role names with spaces — can never match a
/// configured scope and are left out). `scope` itself must be a string (RFC 8693 §4.2); anything
/// else of the wrong type is malformed.
fn scopes(claims: &Map<String, Value>, sources: &[String]) -> Result<Scopes, TokenError> {
    let mut all: Vec<String> = Vec::new();
    for name in sources {
        match lookup(claims, name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => all.extend(Scopes::parse(s).iter().map(String::from)),
            Some(Value::Array(items)) if name != "scope" => {
                for item in items {
                    let item = item.as_str().ok_or_else(|| TokenError::BadClaim(intern(name)))?;
                    if !item.is_empty() && item.chars().all(is_scope_char) {
                        all.push(item.to_string());
                    }
                }
            }
            Some(_) => return Err(TokenError::BadClaim(intern(name))),
        }
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
