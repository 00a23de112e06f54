//! Llama Stack 0.7's admin API (`/v1alpha/admin/...`): the providers, routes, health and version
//! answers of the `v1` routes under the paths the admin clients call, for operators only (the route
//! table gives every one of them the operator scope). Each handler delegates to its `v1` twin, so the
//! two can never answer differently.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;

use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::route_spec::RouteCatalog;
use crate::routes::inspect::{RouteList, RoutesQuery};
use crate::routes::providers::{ProviderInfo, ProviderList};
use crate::routes::system::{HealthInfo, VersionInfo};
use crate::routes::{inspect, providers, system};
use crate::state::AppState;

/// Lists every provider (as `GET /v1/providers`).
#[utoipa::path(get, path = "/v1alpha/admin/providers", operation_id = "admin_list_providers", tag = "admin",
    responses((status = 200, description = "Every provider, credentials redacted", body = ProviderList)))]
pub async fn list_providers(state: State<AppState>) -> Json<ProviderList> {
    providers::list(state).await
}

/// Retrieves one provider (as `GET /v1/providers/{provider_id}`).
#[utoipa::path(get, path = "/v1alpha/admin/providers/{provider_id}", operation_id = "admin_retrieve_provider",
    tag = "admin",
    params(("provider_id" = String, Path, description = "The provider id")),
    responses(
        (status = 200, description = "The provider, credentials redacted", body = ProviderInfo),
        (status = 400, description = "No such provider", body = ErrorEnvelope),
    ))]
pub async fn retrieve_provider(state: State<AppState>, id: Path<String>) -> Result<Json<ProviderInfo>, ApiError> {
    providers::retrieve(state, id).await
}

/// Lists the served routes (as `GET /v1/inspect/routes`).
#[utoipa::path(get, path = "/v1alpha/admin/inspect/routes", operation_id = "admin_list_routes", tag = "admin",
    params(RoutesQuery),
    responses(
        (status = 200, description = "The served Llama Stack API routes", body = RouteList),
        (status = 400, description = "Unknown `api_filter`", body = ErrorEnvelope),
    ))]
pub async fn list_routes(
    catalog: Extension<RouteCatalog>,
    query: Query<RoutesQuery>,
) -> Result<Json<RouteList>, ApiError> {
    inspect::routes(catalog, query).await
}

/// Health (as `GET /v1/health`).
#[utoipa::path(get, path = "/v1alpha/admin/health", operation_id = "admin_health", tag = "admin",
    responses(
        (status = 200, description = "The server is up", body = HealthInfo),
        (status = 503, description = "The rate limiter's Redis is unreachable and the failure mode is closed",
            body = HealthInfo),
    ))]
pub async fn health(state: State<AppState>) -> (StatusCode, Json<HealthInfo>) {
    system::health(state).await
}

/// The API version (as `GET /v1/version`).
#[utoipa::path(get, path = "/v1alpha/admin/version", operation_id = "admin_version", tag = "admin",
    responses((status = 200, description = "The Llama Stack API version", body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    system::version().await
}
