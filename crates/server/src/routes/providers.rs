//! `GET /v1/providers` and `GET /v1/providers/{provider_id}` (docs/reference/llama-stack-api.md §a.2 rows 17–18).
//!
//! llamagate has the inline inference engine in this process, whose config lists the served models and
//! where they were loaded from (credentials redacted), and, when shields are configured, the inline
//! Llama Guard safety provider, whose config lists the shields and their guard models.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::backends::registry::{ModelRegistry, PROVIDER_ID, PROVIDER_TYPE};
use crate::backends::shields::{SAFETY_PROVIDER_ID, SAFETY_PROVIDER_TYPE, ShieldRegistry};
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::routes::redact::redact_secrets;
use crate::state::AppState;

/// The list body; the SDKs unwrap `.data`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    /// Every provider.
    pub data: Vec<ProviderInfo>,
}

/// One provider, in Llama Stack's `ProviderInfo` shape.
#[derive(Debug, Serialize, ToSchema)]
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

/// The safety provider, when any shield is configured.
fn safety_provider(shields: &ShieldRegistry) -> Option<ProviderInfo> {
    if shields.all().is_empty() {
        return None;
    }
    let list: Vec<Value> = shields
        .all()
        .iter()
        .map(|s| {
            let categories: Vec<&str> = s.guard.categories().iter().map(|c| c.code).collect();
            json!({ "shield_id": s.id, "model": s.model.id, "categories": categories })
        })
        .collect();
    Some(ProviderInfo {
        api: "safety",
        provider_id: SAFETY_PROVIDER_ID,
        provider_type: SAFETY_PROVIDER_TYPE,
        config: json!({ "shields": list }),
        health: json!({ "status": "OK" }),
    })
}

/// Lists every provider.
#[utoipa::path(get, path = "/v1/providers", operation_id = "list_providers", tag = "introspection",
    responses((status = 200, description = "Every provider, credentials redacted", body = ProviderList)))]
pub async fn list(State(state): State<AppState>) -> Json<ProviderList> {
    let mut data = vec![inference_provider(&state.registry)];
    data.extend(safety_provider(&state.shields));
    Json(ProviderList { data })
}

/// Retrieves one provider; an unknown id is a 400, as Llama Stack answers it.
#[utoipa::path(get, path = "/v1/providers/{provider_id}", operation_id = "retrieve_provider", tag = "introspection",
    params(("provider_id" = String, Path, description = "The provider id")),
    responses(
        (status = 200, description = "The provider, credentials redacted", body = ProviderInfo),
        (status = 400, description = "No such provider (Llama Stack answers 400, not 404)", body = ErrorEnvelope),
    ))]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
) -> Result<Json<ProviderInfo>, ApiError> {
    match provider_id.as_str() {
        PROVIDER_ID => Ok(Json(inference_provider(&state.registry))),
        SAFETY_PROVIDER_ID => safety_provider(&state.shields).map(Json).ok_or(ApiError::ProviderNotFound(provider_id)),
        _ => Err(ApiError::ProviderNotFound(provider_id)),
    }
}
