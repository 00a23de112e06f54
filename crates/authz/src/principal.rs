//! Who is calling: the [`Principal`] a validated token yields, and its [`Scopes`].

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// A token's scopes: a set of exact scope tokens.
///
/// Matching is by whole token only (`model_llama_3_1_8b` never matches `model_llama_3_1_8b_extra`
/// or `llama`), because a substring match turns one scope into many.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses an RFC 6749 §3.3 `scope` value: tokens separated by single or repeated spaces.
    pub fn parse(value: &str) -> Self {
        Self(value.split(' ').filter(|s| !s.is_empty()).map(String::from).collect())
    }

    /// True when `scope` is one of the tokens, compared exactly (case-sensitive, per RFC 6749).
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// The tokens in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// True when the token carried no scope at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, the wire form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

/// True for characters RFC 6749 §3.3 allows inside a scope token (`%x21 / %x23-5B / %x5D-7E`), which
/// is also what an RFC 6750 §3 challenge may carry inside quotes.
pub(crate) fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// The authenticated caller, as established by a validated access token.
///
/// Everything after authentication (permissions, tiers, safety levels, audit) reads this and never
/// the token, so the token itself is not kept here.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Principal {
    /// `sub`: the resource owner, or the client itself for client-credentials tokens.
    pub subject: String,
    /// `client_id`: the OAuth client that obtained the token.
    pub client_id: String,
    /// `scope`, parsed; a token without `scope` has none.
    pub scopes: Scopes,
    /// `iss`: the authorization server that issued the token.
    pub issuer: String,
    /// `exp` in Unix seconds; `None` only for introspected tokens whose answer had no `exp`.
    pub expires_at: Option<u64>,
    /// `jti`, for audit and revocation lookups.
    pub token_id: Option<String>,
    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key the token is bound to.
    pub cnf_jkt: Option<String>,
    /// `tier` claim, when the authorization server sets one.
    pub tier: Option<String>,
    /// How the token was checked.
    pub source: TokenSource,
    /// The full claim set (JWT claims or introspection answer). It never holds the token itself.
    pub claims: Map<String, Value>,
}

/// How a [`Principal`] was established; recorded in audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// A JWT verified against the cached JWKS.
    Jwt,
    /// An opaque token answered by RFC 7662 introspection.
    Introspection,
}

impl Principal {
    /// A principal with only what every access token names — subject, client, scopes, issuer — and no
    /// expiry, token id, key binding, tier claim or other claims. The validators fill in the rest; this
    /// is what code that decides on principals (tiers, permissions, the server's caller) is tested
    /// with.
    pub fn new(subject: &str, client_id: &str, scopes: Scopes, issuer: &str, source: TokenSource) -> Self {
        Self {
            subject: subject.to_string(),
            client_id: client_id.to_string(),
            scopes,
            issuer: issuer.to_string(),
            expires_at: None,
            token_id: None,
            cnf_jkt: None,
            tier: None,
            source,
            claims: Map::new(),
        }
    }

    /// True when the token is DPoP-bound and so must come with a proof.
    pub fn is_dpop_bound(&self) -> bool {
        self.cnf_jkt.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_whole_tokens_only() {
        let s = Scopes::parse("model_llama_3_1_8b  premium_access");
        assert!(s.contains("model_llama_3_1_8b"));
        assert!(s.contains("premium_access"));
        assert!(!s.contains("model_llama_3_1"));
        assert!(!s.contains("model_llama_3_1_8"));
        assert!(!s.contains("premium"));
        assert!(!s.contains("Premium_access"));
        assert!(!s.contains(""));
        assert_eq!(s.to_string(), "model_llama_3_1_8b premium_access");
        assert!(Scopes::parse("").is_empty());
        let superstring = Scopes::parse("model_llama_3_1_8b_extra xmodel_llama_3_1_8b");
        assert!(!superstring.contains("model_llama_3_1_8b"));
    }
}
