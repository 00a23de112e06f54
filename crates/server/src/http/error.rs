//! [`ApiError`]: every way a request can fail, mapped to HTTP in exactly this one place — statuses,
//! the envelope, RFC 6750 challenges on authentication failures, rate-limit headers on 429s and
//! `Retry-After` on a busy engine.
//!
//! Bodies use Llama Stack's error envelope, `{"error":{"message":...}}`
//! (docs/reference/llama-stack-api.md §a.3), which both
//! SDKs turn into their typed errors (`BadRequestError`, `NotFoundError`, …). Internal details are
//! logged, never sent: a 500 says only that something went wrong.

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llamagate_authz::{AuthErrorResponse, RateLimitError};
use llamagate_engine::EngineError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// A request failure with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter is malformed, out of range, or asks for something unsupported.
    #[error("{0}")]
    BadRequest(String),
    /// The prompt has more tokens than the model's context: a 400 like [`Self::BadRequest`], keeping
    /// the count so the caller's budget is charged the counting it caused.
    #[error("{message}")]
    PromptTooLong { message: String, prompt_tokens: u64 },
    /// The requested model is not served here.
    #[error("Model '{0}' not found. Use 'client.models.list()' to list available Models.")]
    ModelNotFound(String),
    /// The requested provider is not configured; Llama Stack answers this with 400, not 404.
    #[error("Provider {0} not found")]
    ProviderNotFound(String),
    /// `GET /v1/shields/{id}` for a shield that is unknown or not readable: 400, as Llama Stack answers.
    #[error("Shield '{0}' not found")]
    ShieldNotFound(String),
    /// `run-shield` with a shield id no provider serves (Llama Stack's exact text, typo included).
    #[error(
        "Shield `{0}` not served by provider: `llama-guard`. Make sure there is an Safety provider serving this shield."
    )]
    ShieldNotServed(String),
    /// No route matches the path.
    #[error("Not Found")]
    RouteNotFound,
    /// Too many requests from this address were refused by authentication lately: answered without
    /// reading its credentials until the penalty ends.
    #[error("Too many refused requests from this address; retry after {retry_after_secs} s")]
    TooManyRefusals { retry_after_secs: u64 },
    /// The route exists but not with this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// A method no route of this server could ever use (not a standard one).
    #[error("Not Implemented")]
    MethodNotImplemented,
    /// The body is larger than `server.max_body_bytes`.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The engine is shutting down, or the audit log or a shield cannot keep up; retrying later can
    /// succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The engine's queue is full: the request was not queued. Answered 503 with `Retry-After`, the
    /// engine's estimate of when a slot frees up, so clients back off instead of hammering a full queue.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },
    /// Authentication or authorization refused the request (401, 400, 403 or 503), with its
    /// `WWW-Authenticate` challenges.
    #[error("{}", .0.description)]
    Auth(AuthErrorResponse),
    /// The caller's tier has no budget left for this request (429; `x-should-retry: false` when it
    /// can never fit), or the rate limiter's backend is down in fail-closed mode (503).
    #[error("{0}")]
    RateLimited(RateLimitError),
    /// Content safety refused the input at the caller's safety level (400, `type:
    /// content_policy_violation`, the violated named categories in `categories`).
    #[error(
        "I can't answer that. Can I help with something else? (content policy: refused at safety level `{level}` \
         for {})", .categories.join(", ")
    )]
    ContentPolicy { level: String, categories: Vec<String> },
    /// A remote provider failed or could not be reached (502); the message names the provider, never
    /// its URL, headers or key.
    #[error("{0}")]
    BadGateway(String),
    /// A remote provider did not answer within its timeouts (504).
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or resource problem on our side; the detail goes to the log only.
    #[error("Internal server error: An unexpected error occurred.")]
    Internal(String),
}

impl ApiError {
    /// The tokens a refused prompt was counted at, when the refusal came after counting them.
    pub fn prompt_tokens(&self) -> Option<u64> {
        match self {
            Self::PromptTooLong { prompt_tokens, .. } => Some(*prompt_tokens),
            _ => None,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_)
            | Self::PromptTooLong { .. }
            | Self::ProviderNotFound(_)
            | Self::ShieldNotFound(_)
            | Self::ShieldNotServed(_)
            | Self::ContentPolicy { .. } => StatusCode::BAD_REQUEST,
            Self::ModelNotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MethodNotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Auth(answer) => StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED),
            Self::RateLimited(RateLimitError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) | Self::TooManyRefusals { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The envelope body. `code` (the status as a string) is what a mid-stream error event carries,
    /// and is harmless on ordinary responses.
    pub fn body(&self) -> Value {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let (kind, categories) = match self {
            Self::ContentPolicy { categories, .. } => (Some(CONTENT_POLICY_VIOLATION.into()), Some(categories.clone())),
            _ => (None, None),
        };
        let error =
            ErrorDetail { message: self.to_string(), code: self.status().as_u16().to_string(), kind, categories };
        json!(ErrorEnvelope { error })
    }
}

/// Llama Stack's error envelope, `{"error":{...}}`: the body of every failure, typed so the OpenAPI
/// document describes exactly what [`ApiError::body`] sends.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of the envelope. The SDKs read `message`; the rest is for programs that branch on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A human-readable explanation.
    pub message: String,
    /// The HTTP status as a string, as Llama Stack sends it on mid-stream error events.
    pub code: String,
    /// The RFC 6750 error code (`invalid_token`, `insufficient_scope`, …) on authentication failures;
    /// `rate_limit_exceeded`, `request_exceeds_tier_limit` or `rate_limiter_unavailable` on rate limits.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// On a content-safety refusal: the violated named categories (`violence`, `hate`, `sexual`,
    /// `illegal`, `harmful`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

/// The `type` of a content-safety refusal.
pub const CONTENT_POLICY_VIOLATION: &str = "content_policy_violation";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Auth(answer) = &self {
            return auth_error_response(answer);
        }
        if let Self::RateLimited(error) = &self {
            return rate_limited_response(error, self.status(), self.body());
        }
        if let Self::Busy { retry_after_secs, .. } | Self::TooManyRefusals { retry_after_secs } = &self {
            let retry_after = [(header::RETRY_AFTER, retry_after_secs.to_string())];
            return (self.status(), retry_after, Json(self.body())).into_response();
        }
        (self.status(), Json(self.body())).into_response()
    }
}

/// The tier a 429 was answered for, put on the response for the metrics layer (tiers come from the
/// configuration, so they make a bounded label).
#[derive(Clone, Debug)]
pub struct RateLimitedTier(pub String);

/// An authentication or authorization refusal: the envelope, `type` the RFC 6750 error code, its
/// `WWW-Authenticate` challenges and, for `use_dpop_nonce`, the `DPoP-Nonce` to use.
fn auth_error_response(answer: &AuthErrorResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut body = json!({ "error": { "message": answer.description, "code": answer.status.to_string() } });
    if let Some(code) = answer.error {
        body["error"]["type"] = json!(code);
    }
    let mut response = (status, Json(body)).into_response();
    for challenge in &answer.www_authenticate {
        if let Ok(value) = HeaderValue::from_str(challenge) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
    }
    if let Some(value) = answer.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert(DPOP_NONCE, value);
    }
    response
}

/// RFC 9449 §8.1: the server nonce a DPoP proof must carry.
pub const DPOP_NONCE: &str = "dpop-nonce";

/// A rate-limit refusal in the envelope, `type` naming the case, with the rate-limit fields
/// (`Retry-After`, or `x-should-retry: false` when waiting cannot help).
fn rate_limited_response(error: &RateLimitError, status: StatusCode, mut body: Value) -> Response {
    let kind = match error {
        RateLimitError::Exceeded { .. } => "rate_limit_exceeded",
        RateLimitError::NeverFits { .. } => "request_exceeds_tier_limit",
        RateLimitError::Unavailable(_) => "rate_limiter_unavailable",
    };
    body["error"]["type"] = json!(kind);
    let mut response = (status, Json(body)).into_response();
    insert_headers(response.headers_mut(), llamagate_authz::ratelimit::headers::error_headers(error));
    let tier = match error {
        RateLimitError::Exceeded { status, .. } | RateLimitError::NeverFits { status, .. } => Some(&status.tier),
        RateLimitError::Unavailable(_) => None,
    };
    if let Some(tier) = tier {
        response.extensions_mut().insert(RateLimitedTier(tier.clone()));
    }
    response
}

/// Copies `(name, value)` pairs from authz onto a header map (the rate-limit fields of refusals and of
/// admitted answers); names are static and lower-case, values ASCII, so nothing is dropped in practice.
pub fn insert_headers(headers: &mut HeaderMap, fields: Vec<(&'static str, String)>) {
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::PromptTooLong { prompt_tokens, .. } => {
                Self::PromptTooLong { message: e.to_string(), prompt_tokens: prompt_tokens as u64 }
            }
            EngineError::InvalidRequest(_) => Self::BadRequest(e.to_string()),
            EngineError::Unavailable(_) => Self::Unavailable(e.to_string()),
            EngineError::Busy { retry_after_secs, .. } => Self::Busy { message: e.to_string(), retry_after_secs },
            // A template that raises (e.g. "roles must alternate") is the caller's conversation at fault.
            EngineError::Template(_) => Self::BadRequest(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use llamagate_authz::RateLimitStatus;
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

    #[test]
    fn engine_errors_map_to_the_documented_statuses() {
        let too_long = EngineError::PromptTooLong { prompt_tokens: 9, context_length: 8 };
        assert_eq!(ApiError::from(too_long).status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::from(EngineError::Unavailable("x".into())).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ApiError::from(EngineError::Inference("x".into())).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_full_engine_queue_is_a_503_with_retry_after() {
        let busy = EngineError::Busy { reason: "queue full (64 waiting)".into(), retry_after_secs: 3 };
        let error = ApiError::from(busy);
        let body = error.body();
        assert_eq!(body["error"]["code"], "503");
        assert_eq!(body["error"]["message"], "engine busy: queue full (64 waiting)");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let unavailable = ApiError::from(EngineError::Unavailable("x".into())).into_response();
        assert!(unavailable.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_content_policy_refusal_is_a_400_with_its_type_and_categories() {
        let error = ApiError::ContentPolicy { level: "basic_user".into(), categories: vec!["violence".into()] };
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let body = error.body();
        assert_eq!(body["error"]["type"], "content_policy_violation");
        assert_eq!(body["error"]["categories"], json!(["violence"]));
        assert!(body["error"]["message"].as_str().unwrap().contains("`basic_user` for violence"), "{body}");
    }

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let body = ApiError::Internal("secret path /x".into()).body();
        assert!(!body.to_string().contains("secret"));
        assert_eq!(body["error"]["code"], "500");
    }
}
