//! The public routes, answered without touching a model: `GET /v1/health`, `GET /v1/version` and the
//! RFC 9728 protected resource metadata; under `serve --dev`, the development issuer's metadata and keys.

use axum::Json;
use axum::extract::State;
use llamagate_authz::ProtectedResourceMetadata;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ApiError;

/// The Llama Stack version we are compatible with. The Python SDK compares major.minor of its own
/// version with the server's (reference §b.2), so this must stay 0.7.x while we speak the 0.7 API.
pub const LLAMA_STACK_VERSION: &str = "0.7.3";

/// Liveness: the process is up and routing.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "OK" }))
}

/// The API version this server speaks.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": LLAMA_STACK_VERSION }))
}

/// `GET /.well-known/oauth-protected-resource` (RFC 9728): where to get tokens for this server.
/// Without authentication there is nothing to describe, so the route answers 404.
pub async fn protected_resource_metadata(
    State(state): State<AppState>,
) -> Result<Json<ProtectedResourceMetadata>, ApiError> {
    let auth = state.auth.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(auth.metadata().clone()))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414), served only by `serve --dev`: the
/// development issuer is the server itself.
pub async fn dev_issuer_metadata(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let dev = state.dev_issuer.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(dev.metadata.clone()))
}

/// `GET /.well-known/jwks.json`, served only by `serve --dev`: the development issuer's public key.
pub async fn dev_issuer_jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let dev = state.dev_issuer.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(Json(dev.jwks.clone()))
}
