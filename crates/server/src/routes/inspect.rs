//! `GET /v1/inspect/routes`: the routes this server answers, read from [`crate::app::ROUTES`], the
//! same table the router is built from (reference §a.2 row 16).

use axum::Json;
use axum::extract::Query;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::{Api, ApiRoute, ROUTES};
use crate::error::{ApiError, ErrorEnvelope};
use crate::registry::PROVIDER_TYPE;
use crate::shields::SAFETY_PROVIDER_TYPE;

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
    fn new(route: &ApiRoute) -> Self {
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
pub async fn routes(Query(query): Query<RoutesQuery>) -> Result<Json<RouteList>, ApiError> {
    Ok(Json(RouteList { data: list(query.api_filter.as_deref())? }))
}

fn list(api_filter: Option<&str>) -> Result<Vec<RouteInfo>, ApiError> {
    let prefix = match api_filter {
        None | Some("v1") => "/v1/",
        Some("v1alpha") => "/v1alpha/",
        Some("v1beta") => "/v1beta/",
        // No route here is deprecated yet.
        Some("deprecated") => return Ok(Vec::new()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "api_filter must be one of v1, v1alpha, v1beta, deprecated; got '{other}'"
            )));
        }
    };
    Ok(ROUTES.iter().filter(|r| r.path.starts_with(prefix)).map(RouteInfo::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_captures_use_the_llama_stack_spelling() {
        assert_eq!(llama_stack_path("/v1/models/{*model_id}"), "/v1/models/{model_id:path}");
        assert_eq!(llama_stack_path("/v1/providers/{provider_id}"), "/v1/providers/{provider_id}");
    }

    #[test]
    fn filters_select_by_api_level() {
        let all = list(None).unwrap();
        // Every API route; the `/.well-known/` documents (RFC 9728, and the dev issuer's RFC 8414
        // metadata and JWKS), the OpenAPI document and its page, and `/metrics` are not Llama Stack APIs
        // and are not listed.
        assert_eq!(all.len(), ROUTES.iter().filter(|r| r.path.starts_with("/v1/")).count());
        let others = ROUTES.iter().filter(|r| r.path.starts_with("/.well-known/") || r.path.starts_with("/docs"));
        assert_eq!(all.len(), ROUTES.len() - others.count() - 2, "all but those, /openapi.json and /metrics");
        assert_eq!(list(Some("v1")).unwrap(), all);
        assert!(list(Some("v1alpha")).unwrap().is_empty());
        assert!(list(Some("deprecated")).unwrap().is_empty());
        assert!(list(Some("v2")).is_err());
        let chat = all.iter().find(|r| r.route == "/v1/chat/completions").unwrap();
        assert_eq!((chat.method.as_str(), chat.provider_types.as_slice()), ("POST", [PROVIDER_TYPE].as_slice()));
    }
}
