//! `GET /v1/shields` and `GET /v1/shields/{id}` (docs/reference/llama-stack-api.md §a.2 rows 8–9, §a.6 Shield).
//!
//! Shields are resources guarded like models: with model permissions enforced, a caller without the
//! `model_safety` scope sees an empty list, and retrieving a shield it may not read is answered like an
//! unknown one — a 400 with Llama Stack's text, not a 404. Ids may contain `/` and arrive raw or
//! percent-encoded, as model ids do.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::backends::shields::{SAFETY_PROVIDER_ID, ServedShield};
use crate::gate::caller::Caller;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// The list body; the SDKs unwrap `.data`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShieldList {
    /// One entry per readable shield.
    pub data: Vec<Shield>,
}

/// Llama Stack's `Shield` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Shield {
    /// The shield id.
    pub identifier: String,
    /// The guard model's served id (what `POST /v1/moderations` takes as `model`).
    pub provider_resource_id: String,
    /// Always `llama-guard`.
    pub provider_id: &'static str,
    /// Always `shield`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// No per-shield parameters; `{}`.
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

impl From<&ServedShield> for Shield {
    fn from(shield: &ServedShield) -> Self {
        Self {
            identifier: shield.id.clone(),
            provider_resource_id: shield.model.id.clone(),
            provider_id: SAFETY_PROVIDER_ID,
            kind: "shield",
            params: Map::new(),
        }
    }
}

/// Lists the shields the caller may use.
#[utoipa::path(get, path = "/v1/shields", operation_id = "list_shields", tag = "safety",
    responses((status = 200, description = "The shields the caller may use", body = ShieldList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<ShieldList> {
    let data = if caller.may_see_shields() {
        state.shields.all().iter().map(|s| Shield::from(s.as_ref())).collect()
    } else {
        Vec::new()
    };
    Json(ShieldList { data })
}

/// Retrieves one shield (raw or percent-encoded id); unknown and unreadable shields are both 400.
#[utoipa::path(get, path = "/v1/shields/{shield_id}", operation_id = "retrieve_shield", tag = "safety",
    params(("shield_id" = String, Path, description = "The shield id; may contain `/`, raw or percent-encoded as `%2F`")),
    responses(
        (status = 200, description = "The shield", body = Shield),
        (status = 400, description = "No such shield, or not one the caller may use (Llama Stack answers 400)",
            body = ErrorEnvelope),
    ))]
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Shield>, ApiError> {
    let shield = state.shields.get(&id).filter(|_| caller.may_see_shields()).ok_or(ApiError::ShieldNotFound(id))?;
    Ok(Json(Shield::from(shield.as_ref())))
}
