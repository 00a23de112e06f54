//! `GET /v1/providers` and `GET /v1/providers/{provider_id}` (docs/reference/llama-stack-api.md §a.2 rows 17–18).
//!
//! llamagate has the inline inference engine in this process, whose config lists the served models and
//! where they were loaded from (credentials redacted); each remote inference provider, whose config
//! says how many upstreams it has and which models it serves, and whose health reports each upstream's
//! circuit breaker and requests in flight (never a URL or a key: these routes are for operators, but
//! their answers end up in dashboards); and, when shields are configured, the inline Llama Guard safety
//! provider, whose config lists the shields and their guard models.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::backends::registry::{ModelRegistry, PROVIDER_ID, PROVIDER_TYPE};
use crate::backends::remote::ProviderRuntime;
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
    pub provider_id: String,
    /// `inline::` (in this process) or `remote::` plus the implementation.
    pub provider_type: &'static str,
    /// Its settings, credentials redacted.
    pub config: Value,
    /// A free-form health report.
    pub health: Value,
}

fn inference_provider(registry: &ModelRegistry) -> ProviderInfo {
    let models: Vec<Value> = registry
        .all()
        .iter()
        .filter(|m| m.backend.local().is_some())
        .map(|m| json!({ "model_id": m.id, "source": m.source }))
        .collect();
    let mut config = json!({ "models": models });
    redact_secrets(&mut config);
    ProviderInfo {
        api: "inference",
        provider_id: PROVIDER_ID.to_string(),
        provider_type: PROVIDER_TYPE,
        config,
        // The models are loaded before the server listens, so a serving process is a healthy one.
        health: json!({ "status": "OK" }),
    }
}

/// A remote provider: its settings (no URL, no key) and each upstream's state. `OK` while every upstream's
/// breaker is closed, `Degraded` while some are open, `Error` while all are.
fn remote_provider(registry: &ModelRegistry, provider: &ProviderRuntime) -> ProviderInfo {
    let config = &provider.config;
    let models: Vec<Value> = registry
        .all()
        .iter()
        .filter(|m| m.backend.provider_id() == config.provider_id && m.backend.local().is_none())
        .map(|m| json!({ "model_id": m.id, "provider_model_id": m.source }))
        .collect();
    let upstreams: Vec<Value> = provider
        .pool
        .status()
        .iter()
        .map(|u| {
            json!({
                "upstream": u.index,
                "breaker": u.breaker.as_str(),
                "outstanding": u.outstanding,
                "failures_in_a_row": u.failures_in_a_row,
                "health_check": u.probe.as_str(),
            })
        })
        .collect();
    let status = provider.pool.health();
    ProviderInfo {
        api: "inference",
        provider_id: config.provider_id.clone(),
        provider_type: config.provider_type.as_str(),
        config: json!({
            "upstreams": config.base_urls.len(),
            "api_key": if config.api_key.is_some() { "********" } else { "" },
            "connect_timeout_seconds": config.connect_timeout.as_secs_f64(),
            "read_timeout_seconds": config.read_timeout.as_secs_f64(),
            "max_retries": config.max_retries,
            "breaker_failures": config.breaker_failures,
            "breaker_cooldown_seconds": config.breaker_cooldown.as_secs_f64(),
            "health_check_interval_seconds": config.health_check_interval.map_or(0.0, |i| i.as_secs_f64()),
            "max_tokens": config.default_max_tokens,
            "models": models,
        }),
        health: json!({ "status": status, "upstreams": upstreams }),
    }
}

/// Every provider: the engine here, the remote ones by id, then safety.
fn all_providers(state: &AppState) -> Vec<ProviderInfo> {
    let mut data = vec![inference_provider(&state.registry)];
    data.extend(state.registry.providers().iter().map(|p| remote_provider(&state.registry, p)));
    data.extend(safety_provider(&state.shields));
    data
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
        provider_id: SAFETY_PROVIDER_ID.to_string(),
        provider_type: SAFETY_PROVIDER_TYPE,
        config: json!({ "shields": list }),
        health: json!({ "status": "OK" }),
    })
}

/// Lists every provider.
#[utoipa::path(get, path = "/v1/providers", operation_id = "list_providers", tag = "introspection",
    responses((status = 200, description = "Every provider, credentials redacted", body = ProviderList)))]
pub async fn list(State(state): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList { data: all_providers(&state) })
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
    all_providers(&state)
        .into_iter()
        .find(|p| p.provider_id == provider_id)
        .map(Json)
        .ok_or(ApiError::ProviderNotFound(provider_id))
}
