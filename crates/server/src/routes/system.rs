//! The public routes, answered without touching a model: `GET /v1/health`, `GET /v1/version` and the
//! RFC 9728 protected resource metadata; under `serve --dev`, the development issuer's metadata and keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use llamagate_authz::ProtectedResourceMetadata;
use llamagate_authz::ratelimit::{Backend, BackendHealth, FailureMode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// The Llama Stack version we are compatible with. The Python SDK compares major.minor of its own
/// version with the server's (docs/reference/llama-stack-api.md §b.2), so this must stay 0.7.x while we speak the 0.7 API.
pub const LLAMA_STACK_VERSION: &str = "0.7.3";

/// The body of `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthInfo {
    /// `OK` while the process serves; Llama Stack also defines `Error` and `Not Implemented`.
    #[schema(example = "OK")]
    pub status: &'static str,
    /// The rate limiter's Redis backend, when one is configured: whether it answers and what
    /// happens to requests while it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rate_limiter: Option<BackendHealth>,
    /// Each remote inference provider's state: `OK`, `Degraded` (some upstreams' circuit breakers are
    /// open) or `Error` (all are). Details, per upstream, are in `GET /v1/providers` (operator scope).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderHealth>,
}

/// One remote provider in `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealth {
    /// Its id.
    pub provider_id: String,
    /// `OK`, `Degraded` or `Error`.
    pub status: &'static str,
}

/// The body of `GET /v1/version`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    /// The Llama Stack API version spoken.
    #[schema(example = "0.7.3")]
    pub version: &'static str,
}

/// Liveness: the process is up and routing. With a Redis rate limiter that is unreachable in
/// fail-closed mode every inference request is refused, so health says `Error` with a 503 and load
/// balancers stop sending traffic; in fail-open mode it stays `OK` and reports the outage.
#[utoipa::path(get, path = "/v1/health", operation_id = "health", tag = "introspection",
    responses(
        (status = 200, description = "The server is up", body = HealthInfo),
        (status = 503, description = "The rate limiter's Redis is unreachable and the failure mode is closed",
            body = HealthInfo),
    ))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthInfo>) {
    let rate_limiter = match &state.limits {
        Some(limits) => Some(limits.health().await).filter(|h| h.backend == Backend::Redis),
        None => None,
    };
    // The route is public: whether Redis answers is the caller's business, why it does not is the
    // operator's (logged here).
    let rate_limiter = rate_limiter.map(|health| {
        if let Some(error) = &health.error {
            tracing::warn!(%error, "rate-limit backend unreachable");
        }
        BackendHealth { error: None, ..health }
    });
    let refusing = rate_limiter.as_ref().is_some_and(|h| !h.reachable && h.failure_mode == FailureMode::Closed);
    let (code, status) = if refusing { (StatusCode::SERVICE_UNAVAILABLE, "Error") } else { (StatusCode::OK, "OK") };
    // Liveness stays the process's: a provider that is down makes its own models fail, not this server.
    let providers = state
        .registry
        .providers()
        .iter()
        .map(|p| ProviderHealth { provider_id: p.config.provider_id.clone(), status: p.pool.health() })
        .collect();
    (code, Json(HealthInfo { status, rate_limiter, providers }))
}

/// The API version this server speaks.
#[utoipa::path(get, path = "/v1/version", operation_id = "version", tag = "introspection",
    responses((status = 200, description = "The Llama Stack API version", body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo { version: LLAMA_STACK_VERSION })
}

/// `GET /.well-known/oauth-protected-resource` (RFC 9728): where to get tokens for this server.
/// Without authentication there is nothing to describe, so the route answers 404.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", operation_id = "protected_resource_metadata", tag = "oauth",
    responses(
        (status = 200, description = "RFC 9728 protected resource metadata", body = Object),
        (status = 404, description = "Authentication is off", body = ErrorEnvelope),
    ))]
pub async fn protected_resource_metadata(
    State(state): State<AppState>,
) -> Result<Json<ProtectedResourceMetadata>, ApiError> {
    let auth = state.auth.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(auth.metadata().clone()))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414), served only by `serve --dev`: the
/// development issuer is the server itself.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", operation_id = "authorization_server_metadata", tag = "oauth",
    responses(
        (status = 200, description = "RFC 8414 metadata of the development issuer", body = Object),
        (status = 404, description = "Not started with `serve --dev`", body = ErrorEnvelope),
    ))]
pub async fn dev_issuer_metadata(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let dev = state.dev_issuer.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(dev.metadata.clone()))
}

/// `GET /.well-known/jwks.json`, served only by `serve --dev`: the development issuer's public key.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "oauth",
    responses(
        (status = 200, description = "The development issuer's public keys (RFC 7517)", body = Object),
        (status = 404, description = "Not started with `serve --dev`", body = ErrorEnvelope),
    ))]
pub async fn dev_issuer_jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let dev = state.dev_issuer.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(dev.jwks.clone()))
}
