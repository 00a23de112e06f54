//! `GET /v1/usage`: the caller's own tier, limits and remaining budget, read without spending any.
//!
//! Not part of Llama Stack; it answers the question a client has after a 429 ("what is my budget
//! and when is it back?") without sending a request that costs one. It shows only the caller's
//! own buckets (keyed by the token's subject and client), never anyone else's.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::gate::caller::Caller;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// The body of `GET /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageInfo {
    /// Whether requests are metered at all (off when `enable_rate_limiting` or authentication is off).
    pub rate_limiting: bool,
    /// The caller's tier and buckets; absent when rate limiting is off.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub status: Option<llamagate_authz::RateLimitStatus>,
}

/// The caller's tier, limits and remaining budget. `reset` fields are seconds until the bucket is full.
#[utoipa::path(get, path = "/v1/usage", operation_id = "usage", tag = "introspection",
    responses(
        (status = 200, description = "The caller's tier, limits and remaining budget", body = UsageInfo,
            example = json!({"rate_limiting": true, "tier": "free", "window_seconds": 60,
                "requests": {"limit": 10, "remaining": 7, "reset": 18},
                "tokens": {"limit": 1000, "remaining": 640, "reset": 22}})),
        (status = 503, description = "The rate limiter's Redis is unreachable", body = ErrorEnvelope),
    ))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> Result<Json<UsageInfo>, ApiError> {
    let (Some(limits), Some(identity)) = (state.limits.as_deref(), caller.identity()) else {
        return Ok(Json(UsageInfo { rate_limiting: false, status: None }));
    };
    let status = limits.usage(identity).await?;
    Ok(Json(UsageInfo { rate_limiting: true, status: Some(status) }))
}
