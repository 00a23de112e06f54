//! Authorization server metadata discovery (RFC 8414, then OpenID Connect Discovery) and the one
//! HTTP client configuration used for every call to the authorization server.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Largest metadata, JWKS or introspection answer read, so a hostile or broken AS cannot exhaust memory.
pub(crate) const MAX_BODY: usize = 512 * 1024;

/// The fields of the issuer's metadata this crate uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AuthServerMetadata {
    /// Must equal the configured issuer exactly (RFC 8414 §3.3), or the document is refused.
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: Option<String>,
    /// RFC 7662 endpoint, when the AS offers one.
    pub introspection_endpoint: Option<String>,
}

/// Why the AS could not be used; the server answers 503 for all of these.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built (TLS provider problem).
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    /// Connection failure, timeout or non-success status.
    #[error("request to {url} failed: {detail}")]
    Http {
        /// The URL that failed (a metadata or JWKS URL, never one taken from a token).
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The answer was not the expected JSON.
    #[error("answer from {url} is not usable: {detail}")]
    BadDocument {
        /// The URL that answered.
        url: String,
        /// What is wrong with the answer.
        detail: String,
    },
}

/// Installs the rustls `ring` provider once per process; reqwest is built without a default one.
///
/// Call it early in `main` and in tests; calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for calls to the authorization server: short timeouts (a slow AS must not hold
/// requests), no redirects (a redirect could point the RS somewhere unintended).
pub fn build_http_client() -> Result<reqwest::Client, FetchError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("llamagate-authz/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))
}

/// Reads a response body up to [`MAX_BODY`] bytes after checking for a 2xx status.
pub(crate) async fn read_body(url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let http_err = |detail: String| FetchError::Http { url: url.to_string(), detail };
    if !resp.status().is_success() {
        return Err(http_err(format!("status {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(e.to_string()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::BadDocument { url: url.into(), detail: "answer too large".into() });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs `url` and parses its JSON body as `T`.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, FetchError> {
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Http { url: url.into(), detail: e.to_string() })?;
    let body = read_body(url, resp).await?;
    serde_json::from_slice(&body).map_err(|e| FetchError::BadDocument { url: url.into(), detail: e.to_string() })
}

/// The two well-known locations for `issuer`: RFC 8414 inserts the well-known segment before the
/// issuer's path, OIDC Discovery appends it.
pub fn metadata_urls(issuer: &str) -> Result<[String; 2], FetchError> {
    let url = Url::parse(issuer).map_err(|e| FetchError::Client(format!("issuer is not a URL: {e}")))?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

/// Fetches and checks the issuer's metadata, trying RFC 8414 first and OIDC second.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<AuthServerMetadata, FetchError> {
    let mut last = None;
    for url in metadata_urls(issuer)? {
        match get_json::<AuthServerMetadata>(http, &url).await {
            Ok(meta) if meta.issuer == issuer => {
                for endpoint in [&meta.jwks_uri, &meta.introspection_endpoint].into_iter().flatten() {
                    if !as_safe_as_issuer(issuer, endpoint) {
                        return Err(FetchError::BadDocument {
                            url,
                            detail: format!(
                                "metadata endpoint `{}` is not https",
                                endpoint.chars().take(200).collect::<String>()
                            ),
                        });
                    }
                }
                return Ok(meta);
            }
            Ok(meta) => {
                // A mismatched issuer is a mix-up attempt or a misconfiguration; never use it.
                return Err(FetchError::BadDocument {
                    url,
                    detail: format!("metadata issuer `{}` differs from the configured issuer", meta.issuer),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| FetchError::Client("no metadata URL".into())))
}

/// Whether an endpoint the metadata names may be called: https always; plain http only when the issuer
/// itself is plain http (a loopback or explicitly allowed one, which the configuration checked) on the
/// same host — so a document fetched over TLS can never send the keys or tokens over plain http.
fn as_safe_as_issuer(issuer: &str, endpoint: &str) -> bool {
    let (Ok(issuer), Ok(endpoint)) = (Url::parse(issuer), Url::parse(endpoint)) else { return false };
    match endpoint.scheme() {
        "https" => true,
        "http" => issuer.scheme() == "http" && issuer.host_str() == endpoint.host_str(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::MockServer;

    #[test]
    fn discovered_endpoints_are_held_to_https() {
        let https = "https://as.example/tenant";
        assert!(as_safe_as_issuer(https, "https://keys.example/jwks"));
        assert!(!as_safe_as_issuer(https, "http://as.example/jwks"), "no downgrade from an https issuer");
        assert!(!as_safe_as_issuer(https, "file:///etc/keys"));
        let local = "http://127.0.0.1:9000";
        assert!(as_safe_as_issuer(local, "http://127.0.0.1:9000/jwks"));
        assert!(as_safe_as_issuer(local, "https://keys.example/jwks"));
        assert!(!as_safe_as_issuer(local, "http://keys.example/jwks"), "plain http only to the issuer's host");
        assert!(!as_safe_as_issuer(local, "not a url"));
    }
    use serde_json::json;

    #[test]
    fn well_known_urls_insert_and_append() {
        let [a, b] = metadata_urls("https://as.example/tenant/1").expect("urls");
        assert_eq!(a, "https://as.example/.well-known/oauth-authorization-server/tenant/1");
        assert_eq!(b, "https://as.example/tenant/1/.well-known/openid-configuration");
        let [a, b] = metadata_urls("http://127.0.0.1:9400").expect("urls");
        assert_eq!(a, "http://127.0.0.1:9400/.well-known/oauth-authorization-server");
        assert_eq!(b, "http://127.0.0.1:9400/.well-known/openid-configuration");
    }

    #[tokio::test]
    async fn discovery_falls_back_to_oidc_and_checks_issuer() {
        let http = build_http_client().expect("client");
        let mock = MockServer::start().await;
        let oidc = json!({"issuer": mock.base, "jwks_uri": "http://127.0.0.1:1/jwks"});
        mock.set("/.well-known/openid-configuration", 200, &oidc);
        let meta = discover(&http, &mock.base).await.expect("oidc fallback");
        assert_eq!(meta.jwks_uri.as_deref(), Some("http://127.0.0.1:1/jwks"));
        assert_eq!(mock.hits("/.well-known/oauth-authorization-server"), 1);

        let other = json!({"issuer": format!("{}/", mock.base), "jwks_uri": "x"});
        mock.set("/.well-known/oauth-authorization-server", 200, &other);
        let err = discover(&http, &mock.base).await.expect_err("issuer with trailing slash differs");
        assert!(matches!(err, FetchError::BadDocument { .. }), "{err}");
    }
}
