//! RFC 7662 token introspection for opaque access tokens, with a bounded positive cache.
//!
//! The cache is keyed by SHA-256 of the token (the raw token is never stored). An answer is reused
//! for at most `max_cache_ttl` seconds, so a revoked token stays accepted for at most that long,
//! and never past the token's own `exp`. If the AS is unreachable when a cached answer is due for a
//! recheck, the cached answer keeps serving until the token's `exp` (stale beats down, as with
//! JWKS); with nothing cached the answer is [`IntrospectionError::Unavailable`] (503).
//!
//! A token the AS called inactive is refused without asking again for [`NEGATIVE_TTL`] seconds (a
//! flood of one garbage token costs the AS one call), and concurrent requests with the same unseen
//! token wait for one answer rather than each asking (single flight).
//!
//! An answer's `aud`, when present, must hold this server's audience; with
//! `introspection_require_audience` an answer without `aud` is refused too, so a token the AS issued
//! for another resource (and answers for without naming it) is not accepted here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use moka::Expiry;
use moka::future::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use url::form_urlencoded;

use crate::clock::Clock;
use crate::config::{OAuthConfig, Secret};
use crate::principal::{Principal, Scopes, TokenSource};
use crate::token::claims::{TokenError, check_audience, confirmation_jkt, numeric_date, string_claim};
use crate::token::discovery::{self, FetchError};

/// Most cached answers held at once.
const CACHE_CAPACITY: u64 = 10_000;

/// Seconds an inactive answer is reused: long enough that repeating a garbage or revoked token
/// costs the AS nothing, short enough that a token activated late (clock skew) is soon accepted.
pub const NEGATIVE_TTL: u64 = 10;

/// What the AS said, in a form concurrent waiters can share.
#[derive(Clone)]
enum Answer {
    Active(Map<String, Value>),
    Inactive,
    Failed(String),
}

/// One introspection call under way, shared by every request that needs its answer.
type Flight = Arc<tokio::sync::OnceCell<Answer>>;

/// Endpoint, credentials and cache policy.
#[derive(Clone, Debug)]
pub struct IntrospectionSettings {
    /// Issuer; used to discover the endpoint and to check `iss` when the answer has one.
    pub issuer: String,
    /// Endpoint; discovered from the issuer's metadata when `None`.
    pub endpoint: Option<String>,
    /// Audience that `aud` must contain when the answer has one.
    pub audience: String,
    /// Whether an answer must have an `aud` (holding `audience`) at all.
    pub require_audience: bool,
    /// This resource server's client id at the AS.
    pub client_id: String,
    /// This resource server's client secret.
    pub client_secret: Secret,
    /// Seconds a positive answer is reused before asking again.
    pub max_cache_ttl: u64,
}

impl IntrospectionSettings {
    /// Settings from a validated configuration.
    pub fn from_config(cfg: &OAuthConfig) -> Self {
        Self {
            issuer: cfg.auth_server_uri.clone(),
            endpoint: cfg.introspection_endpoint.clone(),
            audience: cfg.effective_audience().to_string(),
            require_audience: cfg.introspection_require_audience,
            client_id: cfg.client_id.clone().unwrap_or_default(),
            client_secret: cfg.client_secret.clone().unwrap_or_default(),
            max_cache_ttl: cfg.introspection_cache_ttl,
        }
    }
}

/// Why an introspected token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectionError {
    /// `active: false` (revoked, expired or unknown): 401 `invalid_token`.
    #[error("the token is not active")]
    Inactive,
    /// Active, but a claim is unacceptable (wrong `aud`/`iss`, expired, no `client_id`): 401.
    #[error(transparent)]
    Claims(#[from] TokenError),
    /// The AS could not be asked and nothing usable is cached: 503.
    #[error("the token introspection service is unavailable")]
    Unavailable,
}

impl IntrospectionError {
    /// Short stable reason for audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Claims(e) => e.reason(),
            Self::Unavailable => "introspection_unavailable",
        }
    }
}

#[derive(Clone)]
struct Cached {
    principal: Arc<Principal>,
    cached_at: u64,
    hard_ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<[u8; 32], Cached> for PerEntryTtl {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Cached, _at: Instant) -> Option<Duration> {
        Some(value.hard_ttl)
    }
}

/// RFC 7662 client with a cache of positive answers.
pub struct Introspector {
    http: reqwest::Client,
    settings: IntrospectionSettings,
    clock: Clock,
    endpoint: OnceCell<String>,
    cache: Cache<[u8; 32], Cached>,
    /// Token hashes the AS called inactive, with when.
    inactive: Cache<[u8; 32], u64>,
    in_flight: Mutex<HashMap<[u8; 32], Flight>>,
}

impl Introspector {
    /// A client that discovers its endpoint on first use when none is configured.
    pub fn new(http: reqwest::Client, settings: IntrospectionSettings, clock: Clock) -> Self {
        let cache = Cache::builder().max_capacity(CACHE_CAPACITY).expire_after(PerEntryTtl).build();
        let inactive =
            Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(Duration::from_secs(NEGATIVE_TTL)).build();
        Self { http, settings, clock, endpoint: OnceCell::new(), cache, inactive, in_flight: Mutex::default() }
    }

    /// Introspects `token` (or reuses a cached positive answer) into a [`Principal`].
    pub async fn introspect(&self, token: &str) -> Result<Principal, IntrospectionError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now();
        let mut stale = None;
        if let Some(hit) = self.cache.get(&key).await {
            if hit.principal.expires_at.is_some_and(|exp| now >= exp) {
                self.cache.invalidate(&key).await;
                return Err(TokenError::Expired.into());
            }
            if now < hit.cached_at.saturating_add(self.settings.max_cache_ttl) {
                return Ok((*hit.principal).clone());
            }
            stale = Some(hit);
        }
        if self.inactive.get(&key).await.is_some_and(|at| now < at.saturating_add(NEGATIVE_TTL)) {
            return Err(IntrospectionError::Inactive);
        }
        match self.ask_once(key, token).await {
            Answer::Active(answer) => {
                let principal = self.principal_from(answer, now)?;
                let until_exp = principal.expires_at.map_or(self.settings.max_cache_ttl, |exp| exp - now);
                // Kept until exp (for serving through an AS outage); freshness is decided by the
                // clock checks above, memory by the capacity bound.
                let hard_ttl = Duration::from_secs(until_exp.max(1));
                let cached = Cached { principal: Arc::new(principal.clone()), cached_at: now, hard_ttl };
                self.cache.insert(key, cached).await;
                Ok(principal)
            }
            Answer::Inactive => {
                self.cache.invalidate(&key).await;
                self.inactive.insert(key, now).await;
                Err(IntrospectionError::Inactive)
            }
            Answer::Failed(e) => match stale {
                Some(hit) if hit.principal.expires_at.is_some() => {
                    tracing::warn!(error = %e, "introspection failed; serving the cached answer until the token expires");
                    Ok((*hit.principal).clone())
                }
                _ => {
                    tracing::warn!(error = %e, "introspection failed");
                    Err(IntrospectionError::Unavailable)
                }
            },
        }
    }

    /// The AS's answer for `token`, asked once however many requests need it at the same moment.
    async fn ask_once(&self, key: [u8; 32], token: &str) -> Answer {
        let flight = {
            let mut flights = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            flights.entry(key).or_default().clone()
        };
        let answer = flight
            .get_or_init(|| async {
                match self.ask(token).await {
                    Ok(Some(answer)) => Answer::Active(answer),
                    Ok(None) => Answer::Inactive,
                    Err(e) => Answer::Failed(e.to_string()),
                }
            })
            .await
            .clone();
        let mut flights = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&key).is_some_and(|current| Arc::ptr_eq(current, &flight)) {
            flights.remove(&key);
        }
        answer
    }

    async fn endpoint(&self) -> Result<&str, FetchError> {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| async {
                if let Some(e) = &self.settings.endpoint {
                    return Ok(e.clone());
                }
                let meta = discovery::discover(&self.http, &self.settings.issuer).await?;
                meta.introspection_endpoint.ok_or_else(|| FetchError::BadDocument {
                    url: self.settings.issuer.clone(),
                    detail: "metadata has no introspection_endpoint".into(),
                })
            })
            .await?;
        Ok(endpoint)
    }

    /// `Ok(Some(answer))` when active, `Ok(None)` when inactive.
    async fn ask(&self, token: &str) -> Result<Option<Map<String, Value>>, FetchError> {
        let url = self.endpoint().await?.to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        // client_secret_basic: both parts form-encoded before base64 (RFC 6749 §2.3.1).
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials =
            format!("{}:{}", encode(&self.settings.client_id), encode(self.settings.client_secret.expose()));
        let resp = self
            .http
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(credentials)))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| FetchError::Http { url: url.clone(), detail: e.to_string() })?;
        let bytes = discovery::read_body(&url, resp).await?;
        let answer: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| FetchError::BadDocument { url: url.clone(), detail: e.to_string() })?;
        Ok(if answer.get("active") == Some(&Value::Bool(true)) { Some(answer) } else { None })
    }

    fn principal_from(&self, claims: Map<String, Value>, now: u64) -> Result<Principal, TokenError> {
        let exp = numeric_date(&claims, "exp")?;
        if exp.is_some_and(|exp| now >= exp) {
            return Err(TokenError::Expired);
        }
        let issuer = string_claim(&claims, "iss")?;
        if issuer.is_some_and(|iss| iss != self.settings.issuer) {
            return Err(TokenError::WrongIssuer);
        }
        if self.settings.require_audience || claims.contains_key("aud") {
            check_audience(&claims, &self.settings.audience)?;
        }
        if let Some(kind) = string_claim(&claims, "token_type")? {
            // Only access tokens may be used here (not refresh or ID tokens).
            if !kind.eq_ignore_ascii_case("bearer") && !kind.eq_ignore_ascii_case("dpop") {
                return Err(TokenError::BadClaim("token_type"));
            }
        }
        let client_id = string_claim(&claims, "client_id")?
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("client_id"))?;
        // oidc-provider omits `sub` for client-credentials tokens, where the client is the subject.
        let subject = string_claim(&claims, "sub")?.filter(|s| !s.is_empty()).unwrap_or(client_id);
        Ok(Principal {
            subject: subject.to_string(),
            client_id: client_id.to_string(),
            scopes: string_claim(&claims, "scope")?.map(Scopes::parse).unwrap_or_default(),
            issuer: issuer.unwrap_or(&self.settings.issuer).to_string(),
            expires_at: exp,
            token_id: string_claim(&claims, "jti")?.map(String::from),
            cnf_jkt: confirmation_jkt(&claims)?,
            tier: string_claim(&claims, "tier")?.map(String::from),
            source: TokenSource::Introspection,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::test_fixtures::MockServer;
    use crate::token::discovery::build_http_client;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    async fn setup() -> (MockServer, Introspector, ManualClock) {
        let mock = MockServer::start().await;
        mock.serve_metadata();
        let (clock, hand) = Clock::manual(NOW);
        let settings = IntrospectionSettings {
            issuer: mock.base.clone(),
            endpoint: None,
            audience: "http://127.0.0.1:8321".into(),
            require_audience: false,
            client_id: "rs-introspector".into(),
            client_secret: Secret::new("rs secret&"),
            max_cache_ttl: 60,
        };
        (mock.clone(), Introspector::new(build_http_client().expect("client"), settings, clock), hand)
    }

    fn active(mock: &MockServer, exp: u64) -> Value {
        json!({"active": true, "client_id": "premium-client", "exp": exp, "iat": NOW - 5, "iss": mock.base,
               "aud": "http://127.0.0.1:8321", "scope": "premium_access", "token_type": "Bearer", "tier": "premium"})
    }

    #[tokio::test]
    async fn active_answer_becomes_a_principal_and_is_cached_by_hash() {
        let (mock, intro, hand) = setup().await;
        mock.set("/introspect", 200, &active(&mock, NOW + 300));
        let p = intro.introspect("opaque-token-1").await.expect("active");
        assert_eq!(p.subject, "premium-client", "sub falls back to client_id");
        assert!(p.scopes.contains("premium_access"));
        assert_eq!(p.tier.as_deref(), Some("premium"));
        assert_eq!(p.source, TokenSource::Introspection);
        let seen = mock.seen().into_iter().find(|s| s.path == "/introspect").expect("request");
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.body, "token=opaque-token-1&token_type_hint=access_token");
        let auth = seen.headers["authorization"].to_str().expect("ascii");
        assert_eq!(auth, format!("Basic {}", STANDARD.encode("rs-introspector:rs+secret%26")));

        // Revoked at the AS: the cached answer holds for max_cache_ttl (60 s), then the AS decides.
        mock.set("/introspect", 200, &json!({"active": false}));
        assert!(intro.introspect("opaque-token-1").await.is_ok());
        assert_eq!(mock.hits("/introspect"), 1);
        hand.advance(60);
        assert_eq!(intro.introspect("opaque-token-1").await.err(), Some(IntrospectionError::Inactive));
        assert_eq!(mock.hits("/introspect"), 2);
        assert_eq!(intro.introspect("opaque-token-1").await.err(), Some(IntrospectionError::Inactive));
        assert_eq!(mock.hits("/introspect"), 2, "an inactive answer is reused for NEGATIVE_TTL");
        hand.advance(NEGATIVE_TTL);
        assert_eq!(intro.introspect("opaque-token-1").await.err(), Some(IntrospectionError::Inactive));
        assert_eq!(mock.hits("/introspect"), 3, "then the AS is asked again");
        intro.cache.run_pending_tasks().await;
        assert!(intro.cache.iter().all(|(k, _)| *k != [0u8; 32]));
        assert!(!intro.cache.contains_key(&<[u8; 32]>::from(Sha256::digest(b"other"))));
    }

    /// Twenty requests with the same unseen token at once: the AS is asked once, and a flood of one
    /// garbage token costs it one call per NEGATIVE_TTL.
    #[tokio::test]
    async fn concurrent_uses_of_one_token_ask_once_and_garbage_is_remembered() {
        let (mock, intro, _hand) = setup().await;
        mock.set("/introspect", 200, &active(&mock, NOW + 300));
        let intro = Arc::new(intro);
        let asks: Vec<_> = (0..20)
            .map(|_| {
                let intro = intro.clone();
                tokio::spawn(async move { intro.introspect("fresh-token").await.is_ok() })
            })
            .collect();
        for ask in asks {
            assert!(ask.await.expect("task"));
        }
        assert_eq!(mock.hits("/introspect"), 1);

        mock.set("/introspect", 200, &json!({"active": false}));
        for _ in 0..1_000 {
            assert_eq!(intro.introspect("garbage").await.err(), Some(IntrospectionError::Inactive));
        }
        assert_eq!(mock.hits("/introspect"), 2);

        // A thousand distinct garbage tokens, each sent three times: one call per distinct token.
        for round in 0..3 {
            for i in 0..1_000 {
                let token = format!("garbage-{i}");
                assert_eq!(intro.introspect(&token).await.err(), Some(IntrospectionError::Inactive), "{round}");
            }
        }
        assert_eq!(mock.hits("/introspect"), 2 + 1_000);
    }

    #[tokio::test]
    async fn cache_never_outlives_exp_and_as_outage_is_distinct() {
        let (mock, intro, hand) = setup().await;
        mock.set("/introspect", 200, &active(&mock, NOW + 30));
        assert!(intro.introspect("t").await.is_ok());
        hand.advance(30);
        assert_eq!(intro.introspect("t").await.err(), Some(IntrospectionError::Claims(TokenError::Expired)));
        assert_eq!(mock.hits("/introspect"), 1, "expiry is decided from the cache, without the AS");

        // AS down: a cached answer due for a recheck serves until exp; an uncached token is a 503.
        hand.set(NOW);
        mock.set("/introspect", 200, &active(&mock, NOW + 600));
        assert!(intro.introspect("u").await.is_ok());
        mock.set_down(true);
        hand.advance(120);
        assert!(intro.introspect("u").await.is_ok(), "cached positive honoured while the AS is down");
        assert_eq!(intro.introspect("never-seen").await.err(), Some(IntrospectionError::Unavailable));
        hand.advance(600);
        assert!(intro.introspect("u").await.is_err());
    }

    #[tokio::test]
    async fn a_required_audience_refuses_answers_without_or_with_another_aud() {
        let (mock, intro, _hand) = setup().await;
        let intro = Introspector {
            settings: IntrospectionSettings { require_audience: true, ..intro.settings.clone() },
            ..intro
        };
        let cases = [
            (None, Err(IntrospectionError::Claims(TokenError::MissingClaim("aud")))),
            (Some(json!("https://other")), Err(IntrospectionError::Claims(TokenError::WrongAudience))),
            (
                Some(json!(["https://other", "https://third"])),
                Err(IntrospectionError::Claims(TokenError::WrongAudience)),
            ),
            (Some(json!("http://127.0.0.1:8321")), Ok(())),
            (Some(json!(["https://other", "http://127.0.0.1:8321"])), Ok(())),
        ];
        for (i, (aud, want)) in cases.into_iter().enumerate() {
            let mut answer = active(&mock, NOW + 300);
            match &aud {
                Some(aud) => answer["aud"] = aud.clone(),
                None => {
                    answer.as_object_mut().expect("obj").remove("aud");
                }
            }
            mock.set("/introspect", 200, &answer);
            assert_eq!(intro.introspect(&format!("aud-{i}")).await.map(|_| ()), want, "aud {aud:?}");
        }
    }

    #[tokio::test]
    async fn active_answers_are_still_checked() {
        let (mock, intro, _hand) = setup().await;
        let cases = [
            (json!({"aud": "https://other"}), TokenError::WrongAudience),
            (json!({"iss": "https://evil"}), TokenError::WrongIssuer),
            (json!({"exp": NOW - 1}), TokenError::Expired),
            (json!({"token_type": "refresh_token"}), TokenError::BadClaim("token_type")),
            (json!({"client_id": null}), TokenError::BadClaim("client_id")),
        ];
        for (i, (patch, want)) in cases.into_iter().enumerate() {
            let mut answer = active(&mock, NOW + 300);
            for (k, v) in patch.as_object().expect("obj") {
                answer[k] = v.clone();
            }
            mock.set("/introspect", 200, &answer);
            assert_eq!(intro.introspect(&format!("tok-{i}")).await.err(), Some(IntrospectionError::Claims(want)));
        }
        let mut without_aud = active(&mock, NOW + 300);
        without_aud.as_object_mut().expect("obj").remove("aud");
        mock.set("/introspect", 200, &without_aud);
        assert!(intro.introspect("no-aud").await.is_ok(), "`aud` is optional by default");
        mock.set("/introspect", 200, &json!({"active": "true", "client_id": "x"}));
        assert_eq!(intro.introspect("stringly").await.err(), Some(IntrospectionError::Inactive));
        mock.set("/introspect", 401, &json!({"error": "invalid_client"}));
        assert_eq!(intro.introspect("bad-creds").await.err(), Some(IntrospectionError::Unavailable));
    }
}
