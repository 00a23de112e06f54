//! Reading credentials from a request, as pure functions over header bytes.
//!
//! Rules: exactly one `Authorization` header (several are ambiguous and refused), scheme `Bearer`
//! or `DPoP` in any case, a token68 value (RFC 7235 §2.1), and never a token in the URL query
//! (OAuth 2.1 §5.1.1 forbids it: URLs end up in logs and `Referer` headers).

use url::form_urlencoded;

use crate::authentication::challenge::AuthError;
use crate::token::jose::MAX_TOKEN_LEN;

/// The authentication scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750 bearer token.
    Bearer,
    /// RFC 9449 DPoP-bound token, with a proof in the `DPoP` header.
    Dpop,
}

/// A presented access token and how it was presented.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The scheme.
    pub scheme: Scheme,
    /// The access token (never logged: `Debug` hides it).
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("scheme", &self.scheme).field("token", &"[redacted]").finish()
    }
}

fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Parses all `Authorization` header values of a request (pass every value, in order).
pub fn parse_authorization<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Credentials, AuthError> {
    let values: Vec<&[u8]> = values.into_iter().take(2).collect();
    let value = match values.as_slice() {
        [] => return Err(AuthError::MissingToken { reason: "no_token", description: "authentication is required" }),
        [value] => *value,
        _ => {
            return Err(AuthError::InvalidRequest {
                reason: "multiple_authorization",
                description: "more than one Authorization header",
            });
        }
    };
    let value = std::str::from_utf8(value).ok().filter(|v| v.is_ascii()).ok_or(AuthError::InvalidRequest {
        reason: "malformed_authorization",
        description: "the Authorization header is not ASCII",
    })?;
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(AuthError::MissingToken {
            reason: "unsupported_scheme",
            description: "use the Bearer or DPoP scheme",
        });
    };
    let token = token.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::InvalidToken { reason: "too_large", description: "the token is too large".into() });
    }
    if !is_token68(token) {
        return Err(AuthError::InvalidRequest {
            reason: "malformed_authorization",
            description: "the Authorization header is malformed",
        });
    }
    Ok(Credentials { scheme, token: token.to_string() })
}

/// The single `DPoP` proof header of a request (RFC 9449 §4.3 step 1: exactly one).
pub fn parse_dpop_header<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<&'a str, AuthError> {
    let values: Vec<&[u8]> = values.into_iter().take(2).collect();
    let refuse =
        |description: &str| AuthError::InvalidDpopProof { reason: "dpop_header", description: description.into() };
    match values.as_slice() {
        [value] => std::str::from_utf8(value)
            .ok()
            .map(|v| v.trim_matches([' ', '\t']))
            .filter(|v| {
                v.len() <= MAX_TOKEN_LEN
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
            .ok_or_else(|| refuse("the DPoP header is malformed")),
        [] => Err(refuse("a DPoP proof is required")),
        _ => Err(refuse("more than one DPoP header")),
    }
}

/// True when a URL query string carries `access_token`, which must be refused (400).
pub fn query_has_access_token(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
}

/// Refuses a request whose query string carries a token.
pub fn refuse_token_in_query(query: Option<&str>) -> Result<(), AuthError> {
    match query {
        Some(q) if query_has_access_token(q) => Err(AuthError::InvalidRequest {
            reason: "token_in_query",
            description: "access tokens are not accepted in the URL; use the Authorization header",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<Credentials, AuthError> {
        parse_authorization(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn one_header_one_scheme_one_token() {
        let c = parse(&["Bearer abc.def-_~+/=="]).expect("bearer");
        assert_eq!((c.scheme, c.token.as_str()), (Scheme::Bearer, "abc.def-_~+/=="));
        assert_eq!(parse(&["bEaReR  tok"]).expect("case").token, "tok");
        assert_eq!(parse(&["DPoP tok"]).expect("dpop").scheme, Scheme::Dpop);
        assert_eq!(parse(&["dpop tok"]).expect("dpop").scheme, Scheme::Dpop);
        assert!(!format!("{c:?}").contains("abc"), "Debug must not show the token");

        assert_eq!(parse(&[]).expect_err("none").status(), 401);
        assert_eq!(parse(&[]).expect_err("none").error_code(), None);
        let two = parse(&["Bearer a", "Bearer b"]).expect_err("two headers");
        assert_eq!((two.status(), two.error_code()), (400, Some("invalid_request")));
        let basic = parse(&["Basic dXNlcjpwYXNz"]).expect_err("basic");
        assert_eq!((basic.status(), basic.error_code(), basic.reason()), (401, None, "unsupported_scheme"));
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\"b", "Bearer =abc", "Bearer tök", "Bearertoken"] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse_authorization([&b"Bearer \xff"[..]]).is_err());
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(parse(&[&huge]).expect_err("huge").reason(), "too_large");
    }

    #[test]
    fn dpop_header_and_query_rules() {
        assert_eq!(parse_dpop_header([&b"a.b.c"[..]]), Ok("a.b.c"));
        assert_eq!(parse_dpop_header(std::iter::empty()).expect_err("none").error_code(), Some("invalid_dpop_proof"));
        assert!(parse_dpop_header([&b"a.b.c"[..], &b"d.e.f"[..]]).is_err());
        assert!(parse_dpop_header([&b"a b"[..]]).is_err());

        assert!(query_has_access_token("access_token=abc"));
        assert!(query_has_access_token("x=1&access_token=&y=2"));
        assert!(query_has_access_token("access%5Ftoken=abc"));
        assert!(!query_has_access_token("my_access_token=1&q=access_token"));
        assert_eq!(refuse_token_in_query(Some("access_token=x")).expect_err("query").status(), 400);
        assert!(refuse_token_in_query(None).is_ok());
    }
}
