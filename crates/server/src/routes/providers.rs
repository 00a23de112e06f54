//! `GET /v1/providers` and `GET /v1/providers/{provider_id}` (reference §a.2 rows 17–18).
//!
//! llamagate has exactly one provider, the inline inference engine in this process; its config lists
//! the served models and where they were loaded from, with credentials redacted.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::ApiError;
use crate::redact::redact_secrets;
use crate::registry::{ModelRegistry, PROVIDER_ID, PROVIDER_TYPE};

/// The list body; the SDKs unwrap `.data`.
#[derive(Debug, Serialize)]
pub struct ProviderList {
    /// Every provider.
    pub data: Vec<ProviderInfo>,
}

/// One provider, in Llama Stack's `ProviderInfo` shape.
#[derive(Debug, Serialize)]
pub struct ProviderInfo {
    /// The API it serves.
    pub api: &'static str,
    /// Its id, as models report in `provider_id`.
    pub provider_id: &'static str,
    /// `inline::` (in this process) or `remote::` plus the implementation.
    pub provider_type: &'static str,
    /// Its settings, credentials redacted.
    pub config: Value,
    /// A free-form health report.
    pub health: Value,
}

fn inference_provider(registry: &ModelRegistry) -> ProviderInfo {
    let models: Vec<Value> = registry.all().iter().map(|m| json!({ "model_id": m.id, "source": m.source })).collect();
    let mut config = json!({ "models": models });
    redact_secrets(&mut config);
    ProviderInfo {
        api: "inference",
        provider_id: PROVIDER_ID,
        provider_type: PROVIDER_TYPE,
        config,
        // The models are loaded before the server listens, so a serving process is a healthy one.
        health: json!({ "status": "OK" }),
    }
}

/// Lists every provider.
pub async fn list(State(state): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList { data: vec![inference_provider(&state.registry)] })
}

/// Retrieves one provider; an unknown id is a 400, as Llama Stack answers it.
pub async fn retrieve(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
) -> Result<Json<ProviderInfo>, ApiError> {
    if provider_id != PROVIDER_ID {
        return Err(ApiError::ProviderNotFound(provider_id));
    }
    Ok(Json(inference_provider(&state.registry)))
}
