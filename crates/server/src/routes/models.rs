//! `GET /v1/models` and `GET /v1/models/{id}` (docs/reference/llama-stack-api.md §a.6).
//!
//! Ids may contain `/`. The TypeScript SDK sends them raw (`/v1/models/org/name`), the Python SDK
//! percent-encodes them as one segment (`/v1/models/org%2Fname`); the route captures the rest of the
//! path and axum percent-decodes it, so both spellings reach the same lookup.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::backends::registry::ServedModel;
use crate::gate::caller::Caller;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// The only model type served so far: text generation.
const MODEL_TYPE: &str = "llm";

/// The list body; the SDKs unwrap `.data`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list` (the OpenAI SDK's page type reads it).
    pub object: &'static str,
    /// One entry per served model.
    pub data: Vec<OpenAiModel>,
}

/// A list entry in OpenAI's shape, with Llama Stack's `custom_metadata` from which the Python SDK
/// derives `identifier`, `provider_id`, `model_type` and `provider_resource_id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModel {
    /// The served id.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// When the model was loaded (Unix seconds).
    pub created: u64,
    /// Always `llama_stack`, as the reference server reports.
    pub owned_by: &'static str,
    /// `model_type`, `provider_id`, `provider_resource_id`, plus the model's own metadata.
    pub custom_metadata: Value,
}

/// The native Llama Stack `Model` returned by retrieve.
#[derive(Debug, Serialize, ToSchema)]
pub struct NativeModel {
    /// The served id.
    pub identifier: String,
    /// Where the weights came from.
    pub provider_resource_id: String,
    /// This process.
    pub provider_id: String,
    /// Always `model`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Facts about the model (context length).
    pub metadata: Value,
    /// Always `llm`.
    pub model_type: &'static str,
    /// Not applicable; null.
    #[schema(required = true)]
    pub model_validation: Option<Value>,
}

fn metadata(model: &ServedModel) -> Value {
    match model.backend.context_length() {
        Some(context_length) => json!({ "context_length": context_length }),
        None => json!({}),
    }
}

/// Lists the served models the caller may use.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "models",
    responses((status = 200, description = "The served models the caller may use", body = ModelList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<ModelList> {
    let data = state
        .registry
        .all()
        .iter()
        .filter(|model| caller.may_see_model(&model.id))
        .map(|model| {
            let mut custom_metadata = metadata(model);
            custom_metadata["model_type"] = json!(MODEL_TYPE);
            custom_metadata["provider_id"] = json!(model.backend.provider_id());
            custom_metadata["provider_resource_id"] = json!(model.source);
            OpenAiModel {
                id: model.id.clone(),
                object: "model",
                created: model.created,
                owned_by: "llama_stack",
                custom_metadata,
            }
        })
        .collect();
    Json(ModelList { object: "list", data })
}

/// Retrieves one model by id (raw or percent-encoded); a model the caller may not use is answered
/// like an unknown one.
#[utoipa::path(get, path = "/v1/models/{model_id}", operation_id = "retrieve_model", tag = "models",
    params(("model_id" = String, Path, description = "The model id; may contain `/`, raw or percent-encoded as `%2F`")),
    responses(
        (status = 200, description = "The model in Llama Stack's native shape", body = NativeModel),
        (status = 404, description = "No such model, or not one the caller may use", body = ErrorEnvelope),
    ))]
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NativeModel>, ApiError> {
    if !caller.may_see_model(&id) {
        return Err(ApiError::ModelNotFound(id));
    }
    let model = state.registry.get(&id)?;
    Ok(Json(NativeModel {
        identifier: model.id.clone(),
        provider_resource_id: model.source.clone(),
        provider_id: model.backend.provider_id().to_string(),
        kind: "model",
        metadata: metadata(&model),
        model_type: MODEL_TYPE,
        model_validation: None,
    }))
}
