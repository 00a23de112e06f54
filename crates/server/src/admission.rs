//! Admission: the rate-limit step of the request path (design, "The path of one chat completion",
//! steps 6 and 8), wired around the engine.
//!
//! After the prompt is tokenized and the engine has capped `max_tokens` to the context
//! ([`GenerationRequest`]), [`Admission::reserve`] takes one request and `prompt_tokens + max_tokens`
//! from the caller's tier, or refuses with 429 (503 while a fail-closed Redis is unreachable).
//! [`crate::sse::respond`] then owns the admission: it copies the rate-limit headers onto the
//! response and settles with the engine's real `prompt + completion` count when generation ends.
//! If the response is dropped first (client gone, stream cancelled, engine failure) the admission
//! is dropped with it and charges the prompt plus the tokens streamed so far; the rest is refunded.
//!
//! Rate limiting applies only when `enable_rate_limiting` is on **and** authentication is on: the
//! buckets are keyed by the token's subject and client, and without authentication there is no
//! trustworthy identity to key on (an IP address is not one behind a load balancer), so an open
//! development server is unlimited and says so at start.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use llamagate_authz::ratelimit::BackendHealth;
use llamagate_authz::{OAuthConfig, Principal, RateKey, RateLimitStatus, RateLimiter, Reservation, Tiers};
use llamagate_engine::{GenerationRequest, GenerationSummary};

use crate::caller::UsageReport;

use crate::error::ApiError;

/// The limiter and the tier rules; built once at start.
#[derive(Debug)]
pub struct RateLimits {
    limiter: RateLimiter,
    tiers: Tiers,
}

impl RateLimits {
    /// `Some` when `oauth_config` turns rate limiting on (and authentication is on). Must run inside
    /// the Tokio runtime (the Redis connection is created there).
    pub fn from_config(cfg: &OAuthConfig) -> anyhow::Result<Option<Arc<Self>>> {
        if !cfg.enable_auth {
            if cfg.enable_rate_limiting {
                tracing::warn!("rate limiting is off: it needs authentication (limits are per token subject)");
            }
            return Ok(None);
        }
        if !cfg.enable_rate_limiting {
            return Ok(None);
        }
        let limits = &cfg.rate_limits;
        let limiter = RateLimiter::from_config(limits).map_err(|e| anyhow::anyhow!("oauth_config.rate_limits: {e}"))?;
        tracing::info!(backend = ?limits.backend, on_backend_failure = ?limits.on_backend_failure, "rate limiting enabled");
        Ok(Some(Arc::new(Self { limiter, tiers: Tiers::from_config(limits, &cfg.default_user_tier) })))
    }

    /// The caller's limits and remaining budget (`GET /v1/usage`).
    pub async fn usage(&self, principal: &Principal) -> Result<RateLimitStatus, ApiError> {
        let tier = self.tiers.resolve(principal);
        self.limiter.usage(&RateKey::of(principal), &tier).await.map_err(ApiError::RateLimited)
    }

    /// Whether the backend answers (`GET /v1/health`).
    pub async fn health(&self) -> BackendHealth {
        self.limiter.health().await
    }
}

/// One admitted generation's budget: settled by [`crate::sse::respond`], or charged on drop.
#[derive(Debug)]
pub struct Admission {
    reservation: Reservation,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Where the real counts go besides the limiter (audit record, metrics).
    report: Option<UsageReport>,
}

impl Admission {
    /// Reserves `1 request + prompt_tokens + max_tokens` for the caller, or refuses.
    pub async fn reserve(
        limits: Option<&RateLimits>,
        principal: Option<&Principal>,
        request: &GenerationRequest,
    ) -> Result<Self, ApiError> {
        let prompt_tokens = request.prompt_ids.len() as u64;
        let reservation = match (limits, principal) {
            (Some(limits), Some(principal)) => {
                let tier = limits.tiers.resolve(principal);
                let tokens = prompt_tokens + request.max_tokens as u64;
                let key = RateKey::of(principal);
                limits.limiter.reserve(&key, &tier, tokens).await.map_err(|e| {
                    tracing::info!(sub = %principal.subject, tier = %tier.name, tokens, reason = %e, "rate limited");
                    ApiError::RateLimited(e)
                })?
            }
            _ => Reservation::unmetered(),
        };
        Ok(Self { reservation, prompt_tokens, completion_tokens: 0, report: None })
    }

    /// Also reports the generation's token counts to the audit record and metrics.
    pub fn reporting_to(mut self, report: UsageReport) -> Self {
        self.report = Some(report);
        self
    }

    /// The engine accepted the request: from now on a drop charges at least the prompt.
    pub fn started(&mut self) {
        self.reservation.record_usage(self.prompt_tokens);
    }

    /// One more token was generated (streaming), so a drop charges it too.
    pub fn generated_token(&mut self) {
        self.completion_tokens += 1;
        if let Some(report) = &mut self.report {
            report.generated_token();
        }
        self.reservation.record_usage(self.prompt_tokens + self.completion_tokens);
    }

    /// The generation failed mid-stream; the drop that follows charges what was generated.
    pub fn failed(&mut self, reason: &str) {
        if let Some(report) = &mut self.report {
            report.failed(reason);
        }
    }

    /// The rate-limit fields as of admission (none when unmetered).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(status) = self.reservation.status() {
            insert_headers(&mut headers, llamagate_authz::ratelimit::headers::status_headers(status));
        }
        headers
    }

    /// Charges the real usage and refunds the rest of the reservation.
    pub async fn settle(mut self, summary: &GenerationSummary) {
        if let Some(report) = &mut self.report {
            report.finished(summary);
        }
        let usage = summary.usage;
        let actual = (usage.prompt_tokens + usage.completion_tokens) as u64;
        let reserved = self.reservation.reserved();
        let refunded = self.reservation.settle(actual).await;
        if reserved > 0 {
            tracing::debug!(reserved, actual, refunded, "rate-limit reservation settled");
        }
    }
}

/// Copies `(name, value)` pairs from authz onto a header map; names are static and lower-case, values
/// ASCII, so nothing is dropped in practice.
pub fn insert_headers(headers: &mut HeaderMap, fields: Vec<(&'static str, String)>) {
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// A refusal in the error envelope, `type` naming the case, with the rate-limit fields
/// (`Retry-After`, or `x-should-retry: false` when waiting cannot help).
pub fn rate_limited_response(
    error: &llamagate_authz::RateLimitError,
    status: axum::http::StatusCode,
    mut body: serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use llamagate_authz::RateLimitError;
    let kind = match error {
        RateLimitError::Exceeded { .. } => "rate_limit_exceeded",
        RateLimitError::NeverFits { .. } => "request_exceeds_tier_limit",
        RateLimitError::Unavailable(_) => "rate_limiter_unavailable",
    };
    body["error"]["type"] = serde_json::json!(kind);
    let mut response = (status, axum::Json(body)).into_response();
    insert_headers(response.headers_mut(), llamagate_authz::ratelimit::headers::error_headers(error));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::response::IntoResponse;
    use llamagate_authz::RateLimitError;
    use llamagate_authz::ratelimit::Quota;

    use super::*;

    fn status() -> RateLimitStatus {
        let quota = |limit| Quota { limit, remaining: 0, reset: Duration::from_secs(6) };
        RateLimitStatus { tier: "free".into(), window_seconds: 60, requests: quota(10), tokens: quota(1_000) }
    }

    async fn answer(error: RateLimitError) -> (u16, HeaderMap, serde_json::Value) {
        let response = ApiError::RateLimited(error).into_response();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, headers, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_type_and_retry_advice() {
        let (code, headers, body) =
            answer(RateLimitError::Exceeded { status: status(), retry_after: Duration::from_millis(5_500) }).await;
        assert_eq!((code, body["error"]["type"].as_str()), (429, Some("rate_limit_exceeded")));
        assert_eq!(headers["retry-after"], "6");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert!(headers.contains_key("ratelimit-policy") && headers.contains_key("ratelimit"));

        let (code, headers, body) = answer(RateLimitError::NeverFits { needed: 2_000, status: status() }).await;
        assert_eq!((code, body["error"]["type"].as_str()), (429, Some("request_exceeds_tier_limit")));
        assert_eq!(headers["x-should-retry"], "false");
        assert!(!headers.contains_key("retry-after"));

        let (code, headers, body) = answer(RateLimitError::Unavailable("redis: refused".into())).await;
        assert_eq!((code, body["error"]["type"].as_str()), (503, Some("rate_limiter_unavailable")));
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(body["error"]["code"], "503");
    }
}
