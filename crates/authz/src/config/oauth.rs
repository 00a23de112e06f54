//! The `oauth_config` section of the stack configuration, as one struct: [`OAuthConfig`].
//!
//! Its nested sections are owned by the folders that use them (`rate_limits` by `ratelimit`, `safety`
//! by `policy`, `audit` by `audit`); this file only gathers them, so none of those folders has to
//! know about the others.
//!
//! Config is data: one serde struct, defaults in [`OAuthConfig::default`], environment overrides in
//! [`OAuthConfig::apply_env_overrides`] and every rule in [`OAuthConfig::validate`], which the server
//! runs once at start so a bad key stops start-up with a message that names it and says how to fix
//! it.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::audit::AuditConfig;
/// Defined by `audit`, which reads it; named here too because `audit_log_level` is an `oauth_config` key.
pub use crate::audit::AuditLogLevel;
use crate::config::claims::{ClaimRules, ClaimsConfig};
use crate::config::env::{EnvKey, check_names, env_keys, overlay_env};
use crate::config::error::ConfigError;
use crate::config::provider::Provider;
use crate::config::secret::Secret;
use crate::policy::safety::{BASIC_USER, SafetyConfig};
use crate::principal::is_scope_char;
use crate::ratelimit::config::{Backend, RateLimitConfig};

/// Shortest accepted `dpop_nonce_secret`: 32 characters of a random string carry enough entropy for
/// an HMAC key.
const MIN_NONCE_SECRET_LEN: usize = 32;

/// How access tokens are validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenValidationMethod {
    /// RFC 9068 JWTs verified locally against the issuer's JWKS (no call per request).
    #[default]
    JwtAsymmetric,
    /// Opaque tokens checked with the issuer's RFC 7662 introspection endpoint (cached).
    Introspection,
}

/// Whether DPoP proofs must carry a server nonce (RFC 9449 §9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpopNonceMode {
    /// Proofs need no nonce: their `iat` alone bounds how long a stolen proof is usable.
    #[default]
    Off,
    /// A proof without a recent nonce of ours is refused with `use_dpop_nonce` and a `DPoP-Nonce`
    /// header; clients retry with it (one extra round trip per nonce window).
    Required,
}

/// The `oauth_config` section: how tokens are validated and which policies apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Authentication on/off. Off is for local experiments only; the server logs a warning.
    pub enable_auth: bool,
    /// Issuer identifier of the authorization server (must equal the tokens' `iss`).
    pub auth_server_uri: String,
    /// Public base URL of this server: the RFC 9728 resource and the default audience.
    pub stack_uri: String,
    /// JWT (local verification) or RFC 7662 introspection.
    pub token_validation_method: TokenValidationMethod,
    /// JWKS location; when unset it is discovered from the issuer's metadata.
    pub jwks_uri: Option<String>,
    /// Seconds a fetched JWKS is trusted before it is fetched again.
    pub jwks_cache_ttl: u64,
    /// Minimum seconds between two JWKS fetches triggered by unknown `kid`s (flood protection).
    pub jwks_refetch_interval: u64,
    /// Expected `aud`; defaults to `stack_uri`.
    pub audience: Option<String>,
    /// Further accepted audiences: a token passes when its `aud` holds any one of these or `audience`.
    pub audiences: Vec<String>,
    /// Further accepted issuers, compared exactly (Entra v1 and v2, Google's two spellings). Keys
    /// still come from `auth_server_uri`'s JWKS.
    pub issuers: Vec<String>,
    /// The identity provider whose token shape the `claims` rules start from (default `generic`:
    /// RFC 9068 exactly).
    pub provider: Provider,
    /// Claim rules laid over the `provider` preset (see [`ClaimsConfig`]).
    pub claims: ClaimsConfig,
    /// Accepted JWS algorithms; asymmetric only (HMAC and `none` are refused at validation).
    pub allowed_algorithms: Vec<String>,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub clock_leeway: u64,
    /// Required JWT `typ` (RFC 9068 `at+jwt`; `application/` prefix also accepted).
    pub expected_typ: String,
    /// RFC 7662 endpoint; when unset it is discovered from the issuer's metadata.
    pub introspection_endpoint: Option<String>,
    /// Client id this server authenticates with at the introspection endpoint.
    pub client_id: Option<String>,
    /// Client secret for the introspection endpoint (redacted in logs).
    pub client_secret: Option<Secret>,
    /// Longest time (seconds) a positive introspection answer is reused; never past the token's `exp`.
    pub introspection_cache_ttl: u64,
    /// Refuse introspection answers without an `aud` holding this server's audience. Off by default
    /// because many authorization servers omit `aud` for tokens issued without a resource indicator;
    /// an `aud` that is present is always checked.
    pub introspection_require_audience: bool,
    /// Accept RFC 9449 DPoP-bound tokens with `Authorization: DPoP`.
    pub dpop_enabled: bool,
    /// Seconds a DPoP proof's `iat` may differ from now (and how long its `jti` is remembered).
    pub dpop_proof_max_age: u64,
    /// Server nonces in DPoP proofs (RFC 9449 §9): `off` or `required`.
    pub dpop_nonce: DpopNonceMode,
    /// Secret the nonces are derived from; set the same one on every replica so each accepts the
    /// others' nonces. Unset: a random secret per process (redacted in logs).
    pub dpop_nonce_secret: Option<Secret>,
    /// `realm` in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Permit `http://` URLs for non-loopback hosts (loopback is always allowed).
    pub allow_insecure_http: bool,
    /// Check the model permission matrix on every inference request.
    pub enforce_model_permissions: bool,
    /// Run input/output safety checks according to the caller's safety level.
    pub enforce_content_safety: bool,
    /// Safety level for callers whose scopes name none.
    pub default_safety_level: String,
    /// Safety levels, how scopes pick them, and the Llama Guard code → category map (see
    /// [`crate::policy::safety`]).
    pub safety: SafetyConfig,
    /// Apply per-tier rate limits.
    pub enable_rate_limiting: bool,
    /// Tier for callers whose token names none.
    pub default_user_tier: String,
    /// Tiers, their limits and the limiter's backend (see [`crate::ratelimit`]).
    pub rate_limits: RateLimitConfig,
    /// Write audit records.
    pub enable_audit_logging: bool,
    /// Level of audit records.
    pub audit_log_level: AuditLogLevel,
    /// Audit sinks, rotation and back-pressure (`oauth_config.audit`).
    pub audit: AuditConfig,
    /// Model id -> required scope, overriding family defaults and the model's own `required_scope`.
    pub model_scope_overrides: BTreeMap<String, String>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            enable_auth: true,
            auth_server_uri: String::new(),
            stack_uri: String::new(),
            token_validation_method: TokenValidationMethod::JwtAsymmetric,
            jwks_uri: None,
            jwks_cache_ttl: 300,
            jwks_refetch_interval: 30,
            audience: None,
            audiences: Vec::new(),
            issuers: Vec::new(),
            provider: Provider::Generic,
            claims: ClaimsConfig::default(),
            allowed_algorithms: vec!["RS256".into(), "ES256".into()],
            clock_leeway: 60,
            expected_typ: "at+jwt".into(),
            introspection_endpoint: None,
            client_id: None,
            client_secret: None,
            introspection_cache_ttl: 60,
            introspection_require_audience: false,
            dpop_enabled: false,
            dpop_proof_max_age: 60,
            dpop_nonce: DpopNonceMode::Off,
            dpop_nonce_secret: None,
            realm: "llamagate".into(),
            allow_insecure_http: false,
            enforce_model_permissions: true,
            enforce_content_safety: true,
            default_safety_level: BASIC_USER.into(),
            safety: SafetyConfig::default(),
            enable_rate_limiting: true,
            default_user_tier: "free".into(),
            rate_limits: RateLimitConfig::default(),
            enable_audit_logging: true,
            audit_log_level: AuditLogLevel::Info,
            audit: AuditConfig::default(),
            model_scope_overrides: BTreeMap::new(),
        }
    }
}

/// Parses one algorithm name, refusing symmetric and `none` algorithms (RFC 8725 §3.1–3.2).
pub fn parse_asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl OAuthConfig {
    /// The audience tokens must carry: `audience`, or `stack_uri` when unset.
    pub fn effective_audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.stack_uri)
    }

    /// The JWT claim rules in force: the `provider` preset with `claims`, `issuers` and `audiences`
    /// laid over it.
    pub fn claim_rules(&self) -> ClaimRules {
        self.claims.resolve(self.provider.preset(&self.expected_typ), &self.issuers, &self.audiences)
    }

    /// The allow-list as typed algorithms; unknown and symmetric names are dropped (and refused by
    /// [`OAuthConfig::validate`]).
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.allowed_algorithms.iter().filter_map(|a| parse_asymmetric_algorithm(a)).collect()
    }

    /// Checks every rule; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enable_auth {
            return Ok(());
        }
        self.check_url("auth_server_uri", &self.auth_server_uri, true)?;
        self.check_url("stack_uri", &self.stack_uri, true)?;
        if let Some(uri) = &self.jwks_uri {
            self.check_url("jwks_uri", uri, false)?;
        }
        if let Some(uri) = &self.introspection_endpoint {
            self.check_url("introspection_endpoint", uri, false)?;
        }
        if self.effective_audience().is_empty() {
            return Err(ConfigError::invalid("audience", "is empty", "set it to this server's resource URI"));
        }
        if self.allowed_algorithms.is_empty() {
            return Err(ConfigError::invalid("allowed_algorithms", "is empty", "list e.g. [RS256, ES256]"));
        }
        for alg in &self.allowed_algorithms {
            if parse_asymmetric_algorithm(alg).is_none() {
                return Err(ConfigError::invalid(
                    "allowed_algorithms",
                    format!("`{alg}` is not an accepted algorithm (symmetric and `none` are never accepted)"),
                    "use only RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
                ));
            }
        }
        if self.jwks_cache_ttl == 0 || self.jwks_cache_ttl > 86_400 {
            return Err(ConfigError::invalid("jwks_cache_ttl", "must be 1..=86400 seconds", "300 is a good value"));
        }
        if self.jwks_refetch_interval > 3_600 {
            return Err(ConfigError::invalid("jwks_refetch_interval", "must be at most 3600 s", "use 30"));
        }
        if self.clock_leeway > 300 {
            return Err(ConfigError::invalid("clock_leeway", "must be at most 300 s", "use 60"));
        }
        if self.expected_typ.trim().is_empty() {
            return Err(ConfigError::invalid("expected_typ", "is empty", "use at+jwt (RFC 9068)"));
        }
        let rules = self.claim_rules();
        rules.validate()?;
        if self.provider == Provider::Google && rules.allowed_client_ids.is_empty() {
            return Err(ConfigError::invalid(
                "claims.allowed_client_ids",
                "is empty with provider: google, so an ID token any Google account minted for this audience would pass",
                "list the callers' client or service-account ids (their `azp`)",
            ));
        }
        if self.dpop_proof_max_age == 0 || self.dpop_proof_max_age > 600 {
            return Err(ConfigError::invalid("dpop_proof_max_age", "must be 1..=600 s", "use 60"));
        }
        if self.dpop_nonce == DpopNonceMode::Required && !self.dpop_enabled {
            return Err(ConfigError::invalid(
                "dpop_nonce",
                "is `required` while dpop_enabled is false",
                "set dpop_enabled: true, or dpop_nonce: off",
            ));
        }
        if self.dpop_nonce_secret.as_ref().is_some_and(|s| s.expose().len() < MIN_NONCE_SECRET_LEN) {
            return Err(ConfigError::invalid(
                "dpop_nonce_secret",
                format!("is shorter than {MIN_NONCE_SECRET_LEN} characters"),
                "use e.g. the output of `openssl rand -base64 32`",
            ));
        }
        if !self.realm.chars().all(|c| c == ' ' || is_scope_char(c)) {
            return Err(ConfigError::invalid(
                "realm",
                "contains quotes, backslashes or control characters",
                "use plain ASCII",
            ));
        }
        if self.token_validation_method == TokenValidationMethod::Introspection {
            if self.client_id.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError::invalid("client_id", "is required for introspection", "set the RS client id"));
            }
            if self.client_secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
                return Err(ConfigError::invalid(
                    "client_secret",
                    "is required for introspection",
                    "set the RS client secret",
                ));
            }
        }
        for (model, scope) in &self.model_scope_overrides {
            if scope.is_empty() || !scope.chars().all(is_scope_char) {
                return Err(ConfigError::invalid(
                    "model_scope_overrides",
                    format!("scope for `{model}` must be one non-empty scope token"),
                    "use a single word such as model_llama_3_1_8b",
                ));
            }
        }
        self.audit.validate()?;
        if self.default_user_tier.is_empty() {
            return Err(ConfigError::invalid("default_user_tier", "is empty", "use e.g. free"));
        }
        // The DPoP replay store uses the rate limiter's Redis too, also with rate limiting off.
        if self.enable_rate_limiting || (self.dpop_enabled && self.rate_limits.backend == Backend::Redis) {
            self.rate_limits.validate(&self.default_user_tier)?;
        }
        self.safety.validate(&self.default_safety_level)?;
        Ok(())
    }

    fn check_url(&self, key: &'static str, value: &str, require_no_query: bool) -> Result<(), ConfigError> {
        if value.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "is required when enable_auth is true",
                "set an absolute http(s) URL",
            ));
        }
        let url = Url::parse(value).map_err(|e| {
            ConfigError::invalid(key, format!("`{value}` is not a URL ({e})"), "use an absolute http(s) URL")
        })?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        match url.scheme() {
            "https" => {}
            "http" if loopback || self.allow_insecure_http => {}
            "http" => {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{value}` uses plain http on a non-loopback host"),
                    "use https, or set allow_insecure_http: true inside a trusted network",
                ));
            }
            other => return Err(ConfigError::invalid(key, format!("scheme `{other}` is not supported"), "use https")),
        }
        if require_no_query && (url.query().is_some() || url.fragment().is_some()) {
            return Err(ConfigError::invalid(
                key,
                "must not have a query or fragment",
                "remove everything after ? or #",
            ));
        }
        Ok(())
    }

    /// Applies `LLAMA_STACK_OAUTH_<KEY>` variables (e.g. `LLAMA_STACK_OAUTH_ENABLE_AUTH=false`), for
    /// every key, nested ones included: `LLAMA_STACK_OAUTH_<SECTION>__<KEY>` (e.g.
    /// `LLAMA_STACK_OAUTH_AUDIT__PATH`, `LLAMA_STACK_OAUTH_CLAIMS__SCOPES`).
    ///
    /// Lists are JSON or comma-separated; maps are JSON (`LLAMA_STACK_OAUTH_RATE_LIMITS__TIERS`) or
    /// `key=value,key=value`; an empty value clears an optional key. `env` is a lookup function so
    /// tests need not touch the process environment; [`OAuthConfig::check_env_names`] refuses the
    /// variables that set nothing.
    pub fn apply_env_overrides(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let (mut updated, applied) = overlay_env(self, &[], SECTIONS, &env)?;
        // Secrets serialize redacted, so the round trip keeps only the ones a variable set.
        if !applied.iter().any(|k| k.path == ["client_secret"]) {
            updated.client_secret = self.client_secret.take();
        }
        if !applied.iter().any(|k| k.path == ["dpop_nonce_secret"]) {
            updated.dpop_nonce_secret = self.dpop_nonce_secret.take();
        }
        *self = updated;
        Ok(())
    }

    /// Every variable that sets a key, with the key's path (for documentation and tests).
    pub fn env_keys() -> Vec<EnvKey> {
        let mut keys = serde_json::to_value(Self::default()).map(|v| env_keys(&v, &[], SECTIONS)).unwrap_or_default();
        // In the keys' alphabetical order, whichever order serde_json keeps its maps in (a dependency
        // may switch on `preserve_order`).
        keys.sort_by(|a, b| a.path.cmp(&b.path));
        keys
    }

    /// Fails on the first `LLAMA_STACK_OAUTH_` variable among `names` that sets no key, naming the
    /// closest one that does (a misspelt override would otherwise be ignored in silence).
    pub fn check_env_names(names: impl IntoIterator<Item = String>) -> Result<(), ConfigError> {
        check_names(names, &Self::env_keys())
    }
}

/// The nested sections whose keys are set one by one (`LLAMA_STACK_OAUTH_AUDIT__PATH`); other maps
/// (`model_scope_overrides`, `rate_limits.tiers`) are one key each, set as a whole.
const SECTIONS: &[&str] = &["audit", "rate_limits", "safety", "claims"];

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
