//! Llama Stack 0.7's `server.auth` with `provider_config.type: oauth2_token`, read as llamagate's
//! `oauth_config` when the file has none — so a user's `run.yaml` starts with the same issuer, keys and
//! audience — plus one notice per thing that changes or is not read.
//!
//! What maps (see docs/migrating-from-llama-stack-auth.md): `issuer` → `auth_server_uri` (required
//! here: `iss` is always checked), `audience` → `audience` (Llama Stack's default `llama-stack` kept),
//! `jwks.uri` → `jwks_uri`, `jwks.key_recheck_period` → `jwks_cache_ttl`, `introspection.{url,
//! client_id, client_secret}` → `token_validation_method: introspection` with `introspection_endpoint`,
//! `client_id`, `client_secret`. `stack_uri`, which Llama Stack has no key for, is the server's own
//! address. Not read, each named: `claims_mapping` and `access_policy`/`route_policy` (access is by
//! OAuth scopes per model), `jwks.token`, `verify_tls`/`tls_cafile`, `introspection.send_secret_in_body`.
//! llamagate's stricter checks (RFC 9068 `typ`, `client_id`/`jti` claims, leeway) keep their defaults,
//! and the notice says so.

use llamagate_authz::{OAuthConfig, Secret, TokenValidationMethod};
use yaml_serde::Value;

use super::ConfigError;

/// `server.auth` as an `oauth_config`, and what changed in the reading.
#[derive(Debug)]
pub struct MappedAuth {
    /// The resource server's settings.
    pub config: OAuthConfig,
    /// One line per key that changes meaning or is not read, for the start-up log.
    pub notices: Vec<String>,
}

/// Llama Stack's default audience, kept so the tokens an AS already issues for it are accepted.
const LLAMA_STACK_AUDIENCE: &str = "llama-stack";

/// Reads `auth` (the `server.auth` value) when its `provider_config.type` is `oauth2_token`; `None` for
/// any other type. `stack_uri` is the server's own address (`http://host:port`).
pub fn map_oauth2_token(auth: &Value, stack_uri: &str) -> Result<Option<MappedAuth>, ConfigError> {
    let Some(provider) = auth.get("provider_config") else { return Ok(None) };
    if provider.get("type").and_then(Value::as_str) != Some("oauth2_token") {
        return Ok(None);
    }
    let key = |field: &str| format!("server.auth.provider_config.{field}");
    let text = |value: Option<&Value>| value.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let mut notices = Vec::new();
    let mut config = OAuthConfig { enable_auth: true, ..OAuthConfig::default() };
    config.auth_server_uri = text(provider.get("issuer")).ok_or_else(|| ConfigError::Invalid {
        key: key("issuer"),
        reason: "llamagate always checks `iss`: name the issuer (or write an `oauth_config` section)".into(),
    })?;
    config.stack_uri = stack_uri.to_string();
    notices.push(format!(
        "server.auth: read as oauth_config (issuer {}); stack_uri is {stack_uri} — set LLAMA_STACK_OAUTH_STACK_URI \
         to the public URL clients use",
        config.auth_server_uri
    ));
    config.audience = Some(text(provider.get("audience")).unwrap_or_else(|| LLAMA_STACK_AUDIENCE.into()));
    let jwks = provider.get("jwks");
    config.jwks_uri = text(jwks.and_then(|j| j.get("uri")));
    if let Some(period) = jwks.and_then(|j| j.get("key_recheck_period")).and_then(Value::as_u64) {
        config.jwks_cache_ttl = period;
        notices.push(format!(
            "server.auth: jwks.key_recheck_period is jwks_cache_ttl ({period} s); an unknown kid refetches at most \
             once per jwks_refetch_interval"
        ));
    }
    if let Some(introspection) = provider.get("introspection").filter(|v| !v.is_null()) {
        let url = text(introspection.get("url")).ok_or_else(|| ConfigError::Invalid {
            key: key("introspection.url"),
            reason: "the introspection endpoint is required with `introspection`".into(),
        })?;
        config.token_validation_method = TokenValidationMethod::Introspection;
        config.introspection_endpoint = Some(url);
        config.client_id = text(introspection.get("client_id"));
        config.client_secret = text(introspection.get("client_secret")).map(Secret::new);
        notices.push("server.auth: introspection answers are cached (introspection_cache_ttl, never past exp)".into());
    }
    let not_read = [
        ("claims_mapping", "access is decided by OAuth scopes per model (required_scope)"),
        ("verify_tls", "TLS to the issuer is always verified"),
        ("tls_cafile", "use the system trust store"),
    ];
    for (field, why) in not_read {
        if provider.get(field).is_some_and(|v| !v.is_null()) {
            notices.push(format!("server.auth.provider_config.{field}: not read ({why})"));
        }
    }
    if jwks.and_then(|j| j.get("token")).is_some_and(|v| !v.is_null()) {
        notices.push("server.auth.provider_config.jwks.token: not read (the JWKS is fetched without a token)".into());
    }
    for field in ["access_policy", "route_policy"] {
        if auth.get(field).is_some_and(|v| !v.is_null()) {
            notices.push(format!(
                "server.auth.{field}: not read (every route but the public ones needs a token; models need their scope)"
            ));
        }
    }
    notices.push(
        "server.auth: llamagate's token checks are stricter than Llama Stack's: typ at+jwt, client_id and jti \
         claims, 60 s leeway (docs/migrating-from-llama-stack-auth.md)"
            .into(),
    );
    Ok(Some(MappedAuth { config, notices }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oauth2_token_section_becomes_oauth_config_with_notices() {
        let auth: Value = yaml_serde::from_str(
            "provider_config:\n  type: oauth2_token\n  issuer: https://idp.example/realms/ai\n  \
             jwks: {uri: https://idp.example/certs, key_recheck_period: 600}\n  \
             claims_mapping: {sub: roles}\naccess_policy: []\n",
        )
        .unwrap();
        let mapped = map_oauth2_token(&auth, "http://127.0.0.1:8321").unwrap().unwrap();
        let config = &mapped.config;
        assert_eq!(config.auth_server_uri, "https://idp.example/realms/ai");
        assert_eq!(config.audience.as_deref(), Some("llama-stack"));
        assert_eq!(config.jwks_uri.as_deref(), Some("https://idp.example/certs"));
        assert_eq!(
            (config.jwks_cache_ttl, config.token_validation_method),
            (600, TokenValidationMethod::JwtAsymmetric)
        );
        assert_eq!(config.stack_uri, "http://127.0.0.1:8321");
        let notices = mapped.notices.join("\n");
        assert!(notices.contains("claims_mapping: not read"), "{notices}");
        assert!(notices.contains("server.auth.access_policy: not read"), "{notices}");

        let introspection: Value = yaml_serde::from_str(
            "provider_config:\n  type: oauth2_token\n  issuer: https://idp\n  audience: gate\n  \
             introspection: {url: https://idp/introspect, client_id: gate, client_secret: s3cret}\n",
        )
        .unwrap();
        let config = map_oauth2_token(&introspection, "http://h:1").unwrap().unwrap().config;
        assert_eq!(config.token_validation_method, TokenValidationMethod::Introspection);
        assert_eq!(config.introspection_endpoint.as_deref(), Some("https://idp/introspect"));
        assert_eq!((config.client_id.as_deref(), config.audience.as_deref()), (Some("gate"), Some("gate")));
        assert_eq!(config.client_secret.as_ref().map(Secret::expose), Some("s3cret"));
    }

    #[test]
    fn other_types_are_not_mapped_and_a_missing_issuer_is_named() {
        let github: Value = yaml_serde::from_str("provider_config: {type: github_token}").unwrap();
        assert!(map_oauth2_token(&github, "http://h:1").unwrap().is_none());
        let no_issuer: Value = yaml_serde::from_str("provider_config: {type: oauth2_token, jwks: {uri: x}}").unwrap();
        let err = map_oauth2_token(&no_issuer, "http://h:1").unwrap_err().to_string();
        assert!(err.starts_with("server.auth.provider_config.issuer:"), "{err}");
    }
}
