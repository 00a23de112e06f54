//! RFC 6750 / RFC 9449 error semantics: [`AuthError`] and the `WWW-Authenticate` challenges.
//!
//! This is the single mapping from "why authentication failed" to status code, error code and
//! challenge; the server turns an [`AuthErrorResponse`] into HTTP without adding rules of its own.
//! Challenge parameters are quoted-strings built only from characters RFC 6750 §3 allows
//! (`%x20-21 / %x23-5B / %x5D-7E`), so no text — ours or an attacker's — can close a quote or add
//! a parameter.

use serde::Serialize;

use crate::authentication::metadata::{dpop_algorithms, resource_metadata_url};
use crate::config::OAuthConfig;
use crate::token::dpop::DpopError;
use crate::token::introspection::IntrospectionError;
use crate::token::jwt::TokenError;

/// Longest `error_description` sent.
const MAX_DESCRIPTION: usize = 200;

/// Why a request was not authenticated or not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or a scheme we do not accept: 401 with a bare challenge (RFC 6750 §3.1).
    #[error("{description}")]
    MissingToken {
        /// Reason class for audit.
        reason: &'static str,
        /// Human-readable explanation.
        description: &'static str,
    },
    /// Malformed request (several `Authorization` headers, token in the query): 400.
    #[error("{description}")]
    InvalidRequest {
        /// Reason class for audit.
        reason: &'static str,
        /// Human-readable explanation.
        description: &'static str,
    },
    /// The token is not acceptable: 401 `invalid_token`.
    #[error("{description}")]
    InvalidToken {
        /// Reason class for audit.
        reason: &'static str,
        /// Human-readable explanation (fixed text, never the token).
        description: String,
    },
    /// The DPoP proof is not acceptable: 401 `invalid_dpop_proof` (RFC 9449 §7.1).
    #[error("{description}")]
    InvalidDpopProof {
        /// Reason class for audit.
        reason: &'static str,
        /// Human-readable explanation.
        description: String,
    },
    /// Server nonces are on and the proof lacks a current one: 401 `use_dpop_nonce` with the nonce to
    /// use in a `DPoP-Nonce` header (RFC 9449 §9). Not a failure the client caused: it retries once.
    #[error("the DPoP proof must carry the server nonce given in the DPoP-Nonce header")]
    UseDpopNonce {
        /// The nonce the next proof must carry.
        nonce: String,
    },
    /// Valid token without the scope the resource needs: 403 `insufficient_scope`.
    #[error("the token lacks the scope `{required}`")]
    InsufficientScope {
        /// The scope that would have been enough.
        required: String,
    },
    /// Identity could not be checked on the server's side (AS and keys unreachable): 503.
    #[error("{description}")]
    Unavailable {
        /// Reason class for audit.
        reason: &'static str,
        /// Human-readable explanation.
        description: String,
    },
}

impl AuthError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken { .. }
            | Self::InvalidToken { .. }
            | Self::InvalidDpopProof { .. }
            | Self::UseDpopNonce { .. } => 401,
            Self::InvalidRequest { .. } => 400,
            Self::InsufficientScope { .. } => 403,
            Self::Unavailable { .. } => 503,
        }
    }

    /// OAuth error code, absent when the request simply carried no credentials.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken { .. } => None,
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::InvalidToken { .. } => Some("invalid_token"),
            Self::InvalidDpopProof { .. } => Some("invalid_dpop_proof"),
            Self::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::Unavailable { .. } => Some("temporarily_unavailable"),
        }
    }

    /// Short stable reason for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken { reason, .. }
            | Self::InvalidRequest { reason, .. }
            | Self::InvalidToken { reason, .. }
            | Self::InvalidDpopProof { reason, .. }
            | Self::Unavailable { reason, .. } => reason,
            Self::UseDpopNonce { .. } => "dpop_nonce",
            Self::InsufficientScope { .. } => "insufficient_scope",
        }
    }

    /// Status, error code, description and challenges for this error.
    pub fn to_response(&self, params: &ChallengeParams) -> AuthErrorResponse {
        let description = self.to_string();
        let mut error = String::new();
        if let Some(code) = self.error_code() {
            error = format!(", error=\"{code}\", error_description=\"{}\"", quoted(&description));
        }
        if let Self::InsufficientScope { required } = self {
            error.push_str(&format!(", scope=\"{}\"", quoted(required)));
        }
        let mut challenges = Vec::new();
        if self.status() != 503 {
            let dpop_only = matches!(self, Self::InvalidDpopProof { .. } | Self::UseDpopNonce { .. });
            let bearer_error = if dpop_only { "" } else { error.as_str() };
            challenges.push(format!(
                "Bearer realm=\"{}\"{bearer_error}, resource_metadata=\"{}\"",
                quoted(&params.realm),
                quoted(&params.resource_metadata)
            ));
            if let Some(algs) = &params.dpop_algs {
                challenges.push(format!(
                    "DPoP realm=\"{}\"{error}, algs=\"{}\"",
                    quoted(&params.realm),
                    quoted(&algs.join(" "))
                ));
            }
        }
        let dpop_nonce = match self {
            Self::UseDpopNonce { nonce } => Some(nonce.clone()),
            _ => None,
        };
        AuthErrorResponse {
            status: self.status(),
            error: self.error_code(),
            description,
            www_authenticate: challenges,
            dpop_nonce,
        }
    }
}

/// What the server needs to answer an [`AuthError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthErrorResponse {
    /// HTTP status code.
    pub status: u16,
    /// OAuth error code (`invalid_token`, …), also for the Llama Stack error envelope.
    pub error: Option<&'static str>,
    /// Human-readable description.
    pub description: String,
    /// One `WWW-Authenticate` header value per entry (Bearer, then DPoP when enabled).
    pub www_authenticate: Vec<String>,
    /// The `DPoP-Nonce` header, sent with `use_dpop_nonce` (base64url, so always a valid header).
    pub dpop_nonce: Option<String>,
}

/// Fixed challenge parameters, built once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeParams {
    /// `realm`.
    pub realm: String,
    /// RFC 9728 `resource_metadata` URL.
    pub resource_metadata: String,
    /// DPoP `algs` when DPoP is enabled.
    pub dpop_algs: Option<Vec<String>>,
}

impl ChallengeParams {
    /// Parameters for a validated configuration.
    pub fn from_config(cfg: &OAuthConfig) -> Self {
        Self {
            realm: cfg.realm.clone(),
            resource_metadata: resource_metadata_url(&cfg.stack_uri),
            dpop_algs: cfg.dpop_enabled.then(|| dpop_algorithms(cfg)),
        }
    }
}

/// Makes `text` safe inside a quoted-string: disallowed characters become `?`, length is capped.
fn quoted(text: &str) -> String {
    text.chars()
        .take(MAX_DESCRIPTION)
        .map(|c| if matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E') { c } else { '?' })
        .collect()
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable { reason: e.reason(), description: e.to_string() }
        } else {
            Self::InvalidToken { reason: e.reason(), description: e.to_string() }
        }
    }
}

impl From<IntrospectionError> for AuthError {
    fn from(e: IntrospectionError) -> Self {
        match e {
            IntrospectionError::Unavailable => Self::Unavailable { reason: e.reason(), description: e.to_string() },
            _ => Self::InvalidToken { reason: e.reason(), description: e.to_string() },
        }
    }
}

impl AuthError {
    /// The answer to a refused DPoP proof; `nonce` is the current server nonce, sent with
    /// `use_dpop_nonce`.
    pub fn from_dpop(e: DpopError, nonce: Option<String>) -> Self {
        match (e, nonce) {
            (DpopError::UseNonce, Some(nonce)) => Self::UseDpopNonce { nonce },
            // Not the proof's fault: the server cannot record it right now.
            (DpopError::ReplayStoreFull | DpopError::ReplayStoreUnavailable, _) => {
                Self::Unavailable { reason: e.reason(), description: e.to_string() }
            }
            _ => Self::InvalidDpopProof { reason: e.reason(), description: e.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dpop: bool) -> ChallengeParams {
        ChallengeParams {
            realm: "llamagate".into(),
            resource_metadata: "http://127.0.0.1:8321/.well-known/oauth-protected-resource".into(),
            dpop_algs: dpop.then(|| vec!["ES256".into(), "RS256".into()]),
        }
    }

    #[test]
    fn statuses_and_challenges() {
        let r = AuthError::MissingToken { reason: "no_token", description: "authentication required" }
            .to_response(&params(false));
        assert_eq!(r.status, 401);
        assert_eq!(r.error, None);
        assert_eq!(
            r.www_authenticate,
            [
                "Bearer realm=\"llamagate\", resource_metadata=\"http://127.0.0.1:8321/.well-known/oauth-protected-resource\""
            ]
        );

        let r = AuthError::from(TokenError::Expired).to_response(&params(false));
        assert_eq!((r.status, r.error), (401, Some("invalid_token")));
        assert_eq!(
            r.www_authenticate[0],
            "Bearer realm=\"llamagate\", error=\"invalid_token\", error_description=\"the token has expired\", resource_metadata=\"http://127.0.0.1:8321/.well-known/oauth-protected-resource\""
        );

        let r = AuthError::InsufficientScope { required: "model_llama_3_1_70b".into() }.to_response(&params(true));
        assert_eq!(r.status, 403);
        assert!(r.www_authenticate[0].contains("error=\"insufficient_scope\""));
        assert!(r.www_authenticate[0].contains("scope=\"model_llama_3_1_70b\""));
        assert!(r.www_authenticate[1].starts_with("DPoP realm=\"llamagate\", error=\"insufficient_scope\""));
        assert!(r.www_authenticate[1].ends_with("algs=\"ES256 RS256\""));

        let r = AuthError::from_dpop(DpopError::Replay, None).to_response(&params(true));
        assert_eq!((r.status, r.error), (401, Some("invalid_dpop_proof")));
        assert!(!r.www_authenticate[0].contains("error="), "Bearer challenge stays bare");
        assert!(r.www_authenticate[1].contains("error=\"invalid_dpop_proof\""));
        assert_eq!(r.dpop_nonce, None);

        let r = AuthError::from_dpop(DpopError::UseNonce, Some("n0nce".into())).to_response(&params(true));
        assert_eq!((r.status, r.error), (401, Some("use_dpop_nonce")));
        assert!(!r.www_authenticate[0].contains("error="), "Bearer challenge stays bare");
        assert!(r.www_authenticate[1].starts_with("DPoP realm=\"llamagate\", error=\"use_dpop_nonce\""));
        assert_eq!(r.dpop_nonce.as_deref(), Some("n0nce"));
        for busy in [DpopError::ReplayStoreFull, DpopError::ReplayStoreUnavailable] {
            let r = AuthError::from_dpop(busy, None).to_response(&params(true));
            assert_eq!((r.status, r.www_authenticate.len()), (503, 0), "{busy:?}");
        }

        let r = AuthError::InvalidRequest { reason: "token_in_query", description: "x" }.to_response(&params(false));
        assert_eq!((r.status, r.error), (400, Some("invalid_request")));

        let r =
            AuthError::from(TokenError::Key(crate::token::jwks::JwksError::Unavailable)).to_response(&params(false));
        assert_eq!(r.status, 503);
        assert!(r.www_authenticate.is_empty());
        let r = AuthError::from(IntrospectionError::Unavailable).to_response(&params(false));
        assert_eq!(r.status, 503);
        assert_eq!(AuthError::from(IntrospectionError::Inactive).status(), 401);
    }

    #[test]
    fn attacker_text_cannot_break_the_header() {
        let evil = "x\", error=\"none\", scope=\"admin\\\r\nSet-Cookie: a=b";
        let r = AuthError::InsufficientScope { required: evil.into() }.to_response(&params(false));
        let h = &r.www_authenticate[0];
        assert!(!h.contains('\r') && !h.contains('\n') && !h.contains('\\'));
        // Exactly the quotes we put there: realm, error, error_description, scope, resource_metadata.
        assert_eq!(h.matches('"').count(), 10, "{h}");
        let long = AuthError::InvalidToken { reason: "r", description: "é".repeat(1_000) }.to_response(&params(false));
        assert!(long.www_authenticate[0].is_ascii());
        assert!(long.www_authenticate[0].len() < 400);
    }
}
