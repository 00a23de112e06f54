//! `GET /v1/inspect/routes`: the routes this server answers, read from the [`RouteCatalog`] of the same
//! table the router is built from (docs/reference/llama-stack-api.md §a.2 row 16).

use axum::extract::Query;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::backends::registry::PROVIDER_TYPE;
use crate::backends::shields::SAFETY_PROVIDER_TYPE;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::route_spec::{Api, RouteCatalog, RouteSpec};

/// The query string: which API level to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RoutesQuery {
    /// `v1`, `v1alpha`, `v1beta` or `deprecated`; absent lists every route that is not deprecated.
    pub api_filter: Option<String>,
}

/// The list body.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteList {
    /// One entry per route and method.
    pub data: Vec<RouteInfo>,
}

/// One route as Llama Stack reports it.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct RouteInfo {
    /// The path in Llama Stack's spelling (`{model_id:path}` for a tail capture).
    pub route: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The provider types behind the route; empty for the server's own introspection APIs.
    pub provider_types: Vec<&'static str>,
}

impl RouteInfo {
    fn new(route: &RouteSpec) -> Self {
        let provider_types = match route.api {
            Api::Inference => vec![PROVIDER_TYPE],
            Api::Safety => vec![SAFETY_PROVIDER_TYPE],
            Api::Introspection => Vec::new(),
        };
        Self { route: llama_stack_path(route.path), method: route.method.as_str().to_string(), provider_types }
    }
}

/// axum's `{*name}` tail capture is Starlette's `{name:path}`; clients compare against the latter.
fn llama_stack_path(axum_path: &str) -> String {
    match axum_path.split_once("{*") {
        Some((head, tail)) => format!("{head}{{{}:path}}", tail.trim_end_matches('}')),
        None => axum_path.to_string(),
    }
}

/// Lists the served routes, filtered by API level.
#[utoipa::path(get, path = "/v1/inspect/routes", operation_id = "list_routes", tag = "introspection", params(RoutesQuery),
    responses(
        (status = 200, description = "The served Llama Stack API routes", body = RouteList),
        (status = 400, description = "Unknown `api_filter`", body = ErrorEnvelope),
    ))]
pub async fn routes(
    Extension(catalog): Extension<RouteCatalog>,
    Query(query): Query<RoutesQuery>,
) -> Result<Json<RouteList>, ApiError> {
    Ok(Json(RouteList { data: list(&catalog, query.api_filter.as_deref())? }))
}

/// The routes of `catalog` under the API level `api_filter` names (every level when absent).
pub fn list(catalog: &RouteCatalog, api_filter: Option<&str>) -> Result<Vec<RouteInfo>, ApiError> {
    let prefixes: &[&str] = match api_filter {
        None => &["/v1/", "/v1alpha/", "/v1beta/"],
        Some("v1") => &["/v1/"],
        Some("v1alpha") => &["/v1alpha/"],
        Some("v1beta") => &["/v1beta/"],
        // No route here is deprecated yet.
        Some("deprecated") => return Ok(Vec::new()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "api_filter must be one of v1, v1alpha, v1beta, deprecated; got '{other}'"
            )));
        }
    };
    let listed = |path: &str| prefixes.iter().any(|prefix| path.starts_with(prefix));
    Ok(catalog.all().iter().filter(|r| listed(r.path)).map(RouteInfo::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_captures_use_the_llama_stack_spelling() {
        assert_eq!(llama_stack_path("/v1/models/{*model_id}"), "/v1/models/{model_id:path}");
        assert_eq!(llama_stack_path("/v1/providers/{provider_id}"), "/v1/providers/{provider_id}");
    }
}
