//! Compact JWS parsing shared by access tokens and DPoP proofs.
//!
//! This is the only place that looks inside a JWS before its signature is checked, so the order is
//! deliberate: size limits first (an 8 KB header is refused without being decoded), then the shape
//! (a 5-part JWE is named as such), then the header rules of RFC 8725 §3.1 — `alg` comes from an
//! allow-list and never from the token alone, `none` and HMAC are refused, header-supplied keys
//! (`jwk`, `jku`, `x5u`, `x5c`) are refused except the DPoP proof's own `jwk`, and any `crit` is
//! refused because we understand no JWS extension (RFC 7515 §4.1.11).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::parse_asymmetric_algorithm;
use crate::token::jwks::PinnedKey;

/// Longest token accepted, in bytes; real access tokens are 1–2 KB.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest encoded header accepted; larger ones are refused without decoding.
pub(crate) const MAX_HEADER_LEN: usize = 8 * 1024;
/// Longest `kid` looked up; longer ones are refused (kid-injection payloads are long).
pub(crate) const MAX_KID_LEN: usize = 256;

/// Why a JWS was refused before or at signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Token or header over the size limits.
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url segments holding JSON objects.
    #[error("the token is not a well-formed JWS")]
    Malformed,
    /// A five-part JWE.
    #[error("encrypted tokens are not accepted")]
    Encrypted,
    /// `alg: none` (unsigned).
    #[error("unsigned tokens are not accepted")]
    AlgNone,
    /// An HMAC algorithm (shared-secret; enables RS/HS key confusion).
    #[error("symmetric signature algorithms are not accepted")]
    AlgSymmetric,
    /// An algorithm outside the allow-list or not matching the key.
    #[error("the signature algorithm is not accepted")]
    AlgNotAllowed,
    /// `jwk`, `jku`, `x5u` or `x5c` in an access token header (or `jku`/`x5u`/`x5c` in a proof).
    #[error("header-supplied keys are not accepted")]
    HeaderKey,
    /// A `crit` header.
    #[error("critical header extensions are not supported")]
    Crit,
    /// The `kid` is not a short string.
    #[error("the key id is not acceptable")]
    BadKid,
    /// The signature does not verify.
    #[error("the signature is invalid")]
    BadSignature,
}

impl JoseError {
    /// Short stable reason for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Encrypted => "encrypted",
            Self::AlgNone => "alg_none",
            Self::AlgSymmetric => "alg_symmetric",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::HeaderKey => "header_key",
            Self::Crit => "crit",
            Self::BadKid => "bad_kid",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// A parsed but not yet verified JWS.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    pub header: Map<String, Value>,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// Claims; not to be trusted before [`Jws::verify`] succeeds.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

/// Whether the header may carry the signer's public `jwk` (DPoP proofs only, RFC 9449 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderJwk {
    Forbidden,
    Required,
}

fn is_b64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, JoseError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| JoseError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JoseError::Malformed),
    }
}

/// Parses `token` and applies the header rules; `allowed` is the configured allow-list.
pub(crate) fn parse<'a>(token: &'a str, allowed: &[Algorithm], jwk: HeaderJwk) -> Result<Jws<'a>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLarge);
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => return Err(JoseError::Encrypted),
        _ => return Err(JoseError::Malformed),
    }
    let (head, body, signature) = (parts[0], parts[1], parts[2]);
    if head.len() > MAX_HEADER_LEN {
        return Err(JoseError::TooLarge);
    }
    if head.is_empty() || body.is_empty() || !parts.iter().all(|p| is_b64url(p)) {
        return Err(JoseError::Malformed);
    }
    let header = decode_object(head)?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(JoseError::Malformed)?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(JoseError::AlgNone);
    }
    if alg_name.to_ascii_uppercase().starts_with("HS") {
        return Err(JoseError::AlgSymmetric);
    }
    let alg = parse_asymmetric_algorithm(alg_name).filter(|a| allowed.contains(a)).ok_or(JoseError::AlgNotAllowed)?;
    // Never fetch or trust keys named by the token itself (jwt_tool -X i / -X s, CVE-2018-0114).
    if ["jku", "x5u", "x5c"].iter().any(|k| header.contains_key(*k)) {
        return Err(JoseError::HeaderKey);
    }
    match (jwk, header.contains_key("jwk")) {
        (HeaderJwk::Forbidden, true) | (HeaderJwk::Required, false) => return Err(JoseError::HeaderKey),
        _ => {}
    }
    if header.contains_key("crit") {
        return Err(JoseError::Crit);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.clone()),
        Some(_) => return Err(JoseError::BadKid),
    };
    if signature.is_empty() {
        return Err(JoseError::BadSignature);
    }
    let claims = decode_object(body)?;
    let signing_input = &token[..head.len() + 1 + body.len()];
    Ok(Jws { header, alg, kid, claims, signing_input, signature })
}

impl Jws<'_> {
    /// The `typ` header, if it is a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// Verifies the signature with `key` under the already allow-listed `alg`.
    pub fn verify(&self, key: &PinnedKey) -> Result<(), JoseError> {
        let signature = URL_SAFE_NO_PAD.decode(self.signature).map_err(|_| JoseError::BadSignature)?;
        if key.verify(self.alg, self.signing_input.as_bytes(), &signature) {
            Ok(())
        } else {
            Err(JoseError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    }

    fn token(header: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&serde_json::json!({"sub": "x"})))
    }

    const ALLOWED: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

    fn err(t: &str) -> JoseError {
        parse(t, ALLOWED, HeaderJwk::Forbidden).expect_err("must be refused")
    }

    #[test]
    fn header_rules() {
        use serde_json::json;
        assert_eq!(err(&token(json!({"alg": "none"}))), JoseError::AlgNone);
        assert_eq!(err(&token(json!({"alg": "nOnE"}))), JoseError::AlgNone);
        assert_eq!(err(&token(json!({"alg": "HS256"}))), JoseError::AlgSymmetric);
        assert_eq!(err(&token(json!({"alg": "PS256"}))), JoseError::AlgNotAllowed);
        assert_eq!(err(&token(json!({"alg": "RS257"}))), JoseError::AlgNotAllowed);
        assert_eq!(err(&token(json!({"typ": "at+jwt"}))), JoseError::Malformed);
        for k in ["jwk", "jku", "x5u", "x5c"] {
            assert_eq!(err(&token(json!({"alg": "RS256", k: "x"}))), JoseError::HeaderKey, "{k}");
        }
        assert_eq!(err(&token(json!({"alg": "RS256", "crit": ["exp"], "exp": 1}))), JoseError::Crit);
        assert_eq!(err(&token(json!({"alg": "RS256", "kid": "k".repeat(1_000)}))), JoseError::BadKid);
        assert_eq!(err(&token(json!({"alg": "RS256", "kid": "k".repeat(10_000)}))), JoseError::TooLarge);
        assert_eq!(err(&token(json!({"alg": "RS256", "kid": 7}))), JoseError::BadKid);
        let path_kid = token(json!({"alg": "ES256", "kid": "../../dev/null"}));
        let ok = parse(&path_kid, ALLOWED, HeaderJwk::Forbidden).expect("path-like kid is only a lookup key");
        assert_eq!(ok.kid.as_deref(), Some("../../dev/null"));
        let proof = token(json!({"alg": "ES256", "jwk": {}}));
        assert!(parse(&proof, ALLOWED, HeaderJwk::Required).is_ok());
        assert_eq!(
            parse(&token(json!({"alg": "ES256"})), ALLOWED, HeaderJwk::Required).map(|_| ()),
            Err(JoseError::HeaderKey)
        );
        let jku_proof = token(json!({"alg": "ES256", "jwk": {}, "jku": "http://127.0.0.1:1/"}));
        assert_eq!(parse(&jku_proof, ALLOWED, HeaderJwk::Required).map(|_| ()), Err(JoseError::HeaderKey));
    }

    #[test]
    fn shape_rules() {
        let good = token(serde_json::json!({"alg": "RS256"}));
        assert!(parse(&good, ALLOWED, HeaderJwk::Forbidden).is_ok());
        assert_eq!(err("a.b.c.d.e"), JoseError::Encrypted);
        assert_eq!(err("a.b"), JoseError::Malformed);
        assert_eq!(err(&good[..good.rfind('.').expect("dot")]), JoseError::Malformed);
        assert_eq!(err(&format!("{good}=")), JoseError::Malformed);
        assert_eq!(err(&good.replacen('.', "+.", 1)), JoseError::Malformed);
        let (head, rest) = good.split_once('.').expect("dot");
        assert_eq!(err(&format!("{head}.{}", rest.replace("c2ln", ""))), JoseError::BadSignature);
        let huge_header = format!("{}.e30.c2ln", "A".repeat(MAX_HEADER_LEN + 1));
        assert_eq!(err(&huge_header), JoseError::TooLarge);
        assert_eq!(err(&"A".repeat(MAX_TOKEN_LEN + 1)), JoseError::TooLarge);
        let not_object = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("[1]"));
        assert_eq!(err(&not_object), JoseError::Malformed);
    }
}
