//! RFC 9728 OAuth 2.0 Protected Resource Metadata, served at
//! `/.well-known/oauth-protected-resource` so clients (and MCP-style LLM clients) can find the
//! authorization server, the scopes and the token presentation methods without configuration.

use serde::Serialize;
use url::Url;

use crate::config::OAuthConfig;

/// Well-known suffix of the metadata document (RFC 9728 §3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: `stack_uri`, which clients pass as RFC 8707 `resource`.
    pub resource: String,
    /// Issuers whose tokens are accepted.
    pub authorization_servers: Vec<String>,
    /// Scopes this resource understands (model scopes and others), sorted.
    pub scopes_supported: Vec<String>,
    /// Only the `Authorization` header: no query or body tokens.
    pub bearer_methods_supported: Vec<String>,
    /// Algorithms accepted in DPoP proofs, present only when DPoP is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// Human-readable name.
    pub resource_name: String,
}

impl ProtectedResourceMetadata {
    /// The document for `cfg`, listing `scopes` (e.g. from the permission matrix).
    pub fn new(cfg: &OAuthConfig, scopes: impl IntoIterator<Item = String>, resource_name: &str) -> Self {
        let mut scopes_supported: Vec<String> = scopes.into_iter().collect();
        scopes_supported.sort();
        scopes_supported.dedup();
        Self {
            resource: cfg.stack_uri.clone(),
            authorization_servers: vec![cfg.auth_server_uri.clone()],
            scopes_supported,
            bearer_methods_supported: vec!["header".into()],
            dpop_signing_alg_values_supported: cfg.dpop_enabled.then(|| dpop_algorithms(cfg)),
            resource_name: resource_name.into(),
        }
    }
}

/// The metadata URL for a resource: the well-known segment goes between host and path
/// (RFC 9728 §3.1), so `https://h` gives `https://h/.well-known/oauth-protected-resource` and
/// `https://h/api` gives `https://h/.well-known/oauth-protected-resource/api`.
pub fn resource_metadata_url(resource: &str) -> String {
    match Url::parse(resource) {
        Ok(url) => {
            let path = url.path().trim_end_matches('/');
            format!("{}{WELL_KNOWN_PATH}{path}", url.origin().ascii_serialization())
        }
        Err(_) => format!("{}{WELL_KNOWN_PATH}", resource.trim_end_matches('/')),
    }
}

/// Algorithms accepted in DPoP proofs: the asymmetric allow-list. Both this document and the DPoP
/// challenge advertise it.
pub(crate) fn dpop_algorithms(cfg: &OAuthConfig) -> Vec<String> {
    cfg.algorithms().iter().map(|a| format!("{a:?}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn document_shape() {
        let mut cfg = OAuthConfig {
            auth_server_uri: "http://127.0.0.1:9400".into(),
            stack_uri: "http://127.0.0.1:8321".into(),
            ..OAuthConfig::default()
        };
        let scopes = ["model_b".to_string(), "model_a".to_string(), "model_a".to_string()];
        let doc =
            serde_json::to_value(ProtectedResourceMetadata::new(&cfg, scopes.clone(), "llamagate")).expect("json");
        assert_eq!(
            doc,
            json!({"resource": "http://127.0.0.1:8321", "authorization_servers": ["http://127.0.0.1:9400"],
                   "scopes_supported": ["model_a", "model_b"], "bearer_methods_supported": ["header"],
                   "resource_name": "llamagate"})
        );
        cfg.dpop_enabled = true;
        let doc = serde_json::to_value(ProtectedResourceMetadata::new(&cfg, scopes, "llamagate")).expect("json");
        assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["RS256", "ES256"]));
    }

    #[test]
    fn metadata_url_inserts_the_well_known_segment() {
        assert_eq!(
            resource_metadata_url("http://127.0.0.1:8321"),
            "http://127.0.0.1:8321/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            resource_metadata_url("https://h.example/"),
            "https://h.example/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            resource_metadata_url("https://h.example/api"),
            "https://h.example/.well-known/oauth-protected-resource/api"
        );
    }
}
