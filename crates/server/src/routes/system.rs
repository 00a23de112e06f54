//! `GET /v1/health` and `GET /v1/version`: the two public routes, answered without touching a model.

use axum::Json;
use serde_json::{Value, json};

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
