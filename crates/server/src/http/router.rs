//! The request path starts here: which routes exist, which are public, and the layers every request
//! passes before a handler runs. Read [`router`] top to bottom; [`crate::pipeline`] continues the
//! story for generations.
//!
//! Every route is one row of [`ROUTES`]; the router is built from that table, and `GET
//! /v1/inspect/routes`, the OpenAPI document and the authentication layer's list of public paths are
//! all read from its [`RouteCatalog`], so none of them can drift from what is served.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::gate::{audit, auth, edge, metrics};
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::http::route_spec::Access::{Operator, Protected, Public};
use crate::http::route_spec::Api::{Inference, Introspection, Safety};
use crate::http::route_spec::{Access, Api, RouteCatalog, RouteSpec};
use crate::routes::{
    admin, chat, completions, docs, inspect, metrics as metrics_route, models, moderations, providers, safety, shields,
    system, usage,
};
use crate::state::AppState;

/// One row of the table: the route and the handler that serves it.
pub struct ApiRoute {
    /// Method, path, access and API.
    pub spec: RouteSpec,
    /// Wraps the handler for this method; taking the filter keeps the method in one place.
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

impl ApiRoute {
    const fn new(
        method: Method,
        path: &'static str,
        access: Access,
        api: Api,
        handler: fn(MethodFilter) -> MethodRouter<AppState>,
    ) -> Self {
        Self { spec: RouteSpec { method, path, access, api }, handler }
    }
}

/// Every route the app serves. `{*model_id}`: ids may contain `/` (see routes::models). What describes
/// the whole deployment — providers, routes, metrics, the OpenAPI document and its Swagger UI page
/// (compiled in, works offline) — is for operators.
pub static ROUTES: &[ApiRoute] = &[
    ApiRoute::new(Method::GET, "/v1/health", Public, Introspection, |m| on(m, system::health)),
    ApiRoute::new(Method::GET, "/v1/version", Public, Introspection, |m| on(m, system::version)),
    ApiRoute::new(Method::GET, "/.well-known/oauth-protected-resource", Public, Introspection, |m| {
        on(m, system::protected_resource_metadata)
    }),
    ApiRoute::new(Method::GET, "/.well-known/oauth-authorization-server", Public, Introspection, |m| {
        on(m, system::dev_issuer_metadata)
    }),
    ApiRoute::new(Method::GET, "/.well-known/jwks.json", Public, Introspection, |m| on(m, system::dev_issuer_jwks)),
    ApiRoute::new(Method::GET, "/v1/inspect/routes", Operator, Introspection, |m| on(m, inspect::routes)),
    ApiRoute::new(Method::GET, "/v1/providers", Operator, Introspection, |m| on(m, providers::list)),
    ApiRoute::new(Method::GET, "/v1/providers/{provider_id}", Operator, Introspection, |m| on(m, providers::retrieve)),
    // Llama Stack 0.7's admin API: the same answers under `/v1alpha/admin`, operators only.
    ApiRoute::new(Method::GET, "/v1alpha/admin/providers", Operator, Introspection, |m| on(m, admin::list_providers)),
    ApiRoute::new(Method::GET, "/v1alpha/admin/providers/{provider_id}", Operator, Introspection, |m| {
        on(m, admin::retrieve_provider)
    }),
    ApiRoute::new(Method::GET, "/v1alpha/admin/inspect/routes", Operator, Introspection, |m| on(m, admin::list_routes)),
    ApiRoute::new(Method::GET, "/v1alpha/admin/health", Operator, Introspection, |m| on(m, admin::health)),
    ApiRoute::new(Method::GET, "/v1alpha/admin/version", Operator, Introspection, |m| on(m, admin::version)),
    ApiRoute::new(Method::GET, "/v1/models", Protected, Inference, |m| on(m, models::list)),
    ApiRoute::new(Method::GET, "/v1/models/{*model_id}", Protected, Inference, |m| on(m, models::retrieve)),
    ApiRoute::new(Method::POST, "/v1/chat/completions", Protected, Inference, |m| on(m, chat::create)),
    ApiRoute::new(Method::POST, "/v1/completions", Protected, Inference, |m| on(m, completions::create)),
    ApiRoute::new(Method::GET, "/v1/shields", Protected, Safety, |m| on(m, shields::list)),
    ApiRoute::new(Method::GET, "/v1/shields/{*shield_id}", Protected, Safety, |m| on(m, shields::retrieve)),
    ApiRoute::new(Method::POST, "/v1/safety/run-shield", Protected, Safety, |m| on(m, safety::run_shield)),
    ApiRoute::new(Method::POST, "/v1/moderations", Protected, Safety, |m| on(m, moderations::create)),
    ApiRoute::new(Method::GET, "/v1/usage", Protected, Introspection, |m| on(m, usage::show)),
    ApiRoute::new(Method::GET, "/metrics", Operator, Introspection, |m| on(m, metrics_route::render)),
    ApiRoute::new(Method::GET, "/openapi.json", Operator, Introspection, |m| on(m, docs::document)),
    ApiRoute::new(Method::GET, "/docs", Operator, Introspection, |m| on(m, docs::redirect)),
    ApiRoute::new(Method::GET, "/docs/", Operator, Introspection, |m| on(m, docs::page)),
    ApiRoute::new(Method::GET, "/docs/{*file}", Operator, Introspection, |m| on(m, docs::asset)),
];

/// The specs of [`ROUTES`], for the handlers and layers that report or check them.
pub fn catalog() -> RouteCatalog {
    RouteCatalog::new(ROUTES.iter().map(|r| r.spec.clone()))
}

/// Builds the whole HTTP application. The layers, outermost first:
///
/// 1. the method guard: a method no route could use is a 501 before any state is touched;
/// 2. a tracing span per request;
/// 3. a panic guard (a panicking handler is a 500 in the envelope, and the process keeps serving);
/// 4. the body-size limit (enforced by the JSON extractor, which turns an oversize body into our 413);
/// 5. the request counter of `/metrics`, which sees every answer, refusals included;
/// 6. the audit outcome: a request id, the per-request audit notes, and the refusal and
///    `inference_response` records once the answer is known (when audit logging is on);
/// 7. authentication (when on): a valid token becomes the request's [`crate::gate::caller::Caller`];
///    anything else is answered here with its RFC 6750 challenge. It wraps the whole router, fallbacks
///    included, and lets through only the exact public paths, so an unknown path without a token is a
///    401, not a 404 that would reveal which paths exist (deny by default); operator routes also need
///    the operator scope (403 `insufficient_scope` without it);
/// 8. the audit request record, after a token is accepted and before any handler (when audit is on);
/// 9. the route catalog and the OpenAPI document, for the handlers that describe the server.
///
/// Unknown paths and wrong methods are answered by the fallbacks, in the same error envelope as
/// everything else.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let catalog = catalog();
    let document = Arc::new(openapi::document(&catalog));
    let auth = state.auth.clone();
    let audit_log = auth.as_ref().and_then(|auth| auth.audit_log().cloned());
    let layers = ServiceBuilder::new()
        .layer(from_fn(edge::refuse_unknown_methods))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn_with_state(state.metrics.clone(), metrics::count_requests))
        .option_layer(audit_log.clone().map(|log| from_fn_with_state(log, audit::record_outcome)))
        .option_layer(auth.map(|auth| from_fn_with_state(auth, auth::authenticate)))
        .option_layer(audit_log.map(|log| from_fn_with_state(log, audit::record_request)))
        .layer(Extension(catalog))
        .layer(Extension(document));
    ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            let filter = MethodFilter::try_from(route.spec.method.clone()).expect("ROUTES holds only standard methods");
            router.route(route.spec.path, (route.handler)(filter))
        })
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(layers)
        .with_state(state)
}

/// A panicking handler becomes a 500 in the envelope; the process keeps serving.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::backends::registry::ModelRegistry;
    use crate::gate::metrics::Metrics;

    /// Every row of the table is actually routed: the answer is never the router's own 404 or 405
    /// (a handler's 404, such as an unknown model, is fine).
    #[tokio::test]
    async fn every_listed_route_is_served() {
        let app = router(
            AppState {
                registry: Arc::new(ModelRegistry::default()),
                auth: None,
                dev_issuer: None,
                limits: None,
                shields: Default::default(),
                metrics: Arc::new(Metrics::new(None)),
                safety: None,
                safety_levels: Arc::new(
                    llamagate_authz::SafetyPolicy::new(Default::default(), "basic_user").expect("default levels"),
                ),
            },
            1024,
        );
        for route in ROUTES {
            let (method, path) = (&route.spec.method, route.spec.path);
            if path.starts_with("/.well-known/") {
                continue; // 404 by design when auth is off
            }
            let path = path
                .replace("{*model_id}", "some/model")
                .replace("{provider_id}", "llamagate")
                .replace("{*shield_id}", "some/shield")
                .replace("{*file}", "swagger-ui.css");
            let request = Request::builder().method(method.clone()).uri(&path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            // The docs page and its assets are not JSON; the router's own 404 always is.
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let router_404 = status == StatusCode::NOT_FOUND && body["error"]["message"] == "Not Found";
            assert!(!router_404, "{method} {path} is listed but not routed");
        }
    }

    #[test]
    fn only_exact_public_paths_are_public() {
        let public = catalog().public_paths();
        for path in ["/v1/health", "/v1/version", "/.well-known/oauth-protected-resource"] {
            assert!(public.contains(&path), "{path}");
        }
        for path in ["/v1/health/", "//v1/health", "/v1/models", "/nope", "/V1/health", "/v1/%68ealth"] {
            assert!(!public.contains(&path), "{path}");
        }
    }

    #[test]
    fn inspect_filters_select_by_api_level() {
        let catalog = catalog();
        let all = inspect::list(&catalog, None).unwrap();
        // Every API route; the `/.well-known/` documents (RFC 9728, and the dev issuer's RFC 8414
        // metadata and JWKS), the OpenAPI document and its page, and `/metrics` are not Llama Stack APIs
        // and are not listed.
        let v1 = inspect::list(&catalog, Some("v1")).unwrap();
        let v1alpha = inspect::list(&catalog, Some("v1alpha")).unwrap();
        assert_eq!(v1.len(), ROUTES.iter().filter(|r| r.spec.path.starts_with("/v1/")).count());
        assert_eq!(v1alpha.len(), 5, "the admin aliases");
        assert!(v1alpha.iter().all(|r| r.route.starts_with("/v1alpha/admin/")));
        let others =
            ROUTES.iter().filter(|r| r.spec.path.starts_with("/.well-known/") || r.spec.path.starts_with("/docs"));
        assert_eq!(all.len(), ROUTES.len() - others.count() - 2, "all but those, /openapi.json and /metrics");
        assert_eq!(all.len(), v1.len() + v1alpha.len());
        assert!(inspect::list(&catalog, Some("v1beta")).unwrap().is_empty());
        assert!(inspect::list(&catalog, Some("deprecated")).unwrap().is_empty());
        assert!(inspect::list(&catalog, Some("v2")).is_err());
        let chat = all.iter().find(|r| r.route == "/v1/chat/completions").unwrap();
        let provider_types = [crate::backends::registry::PROVIDER_TYPE];
        assert_eq!((chat.method.as_str(), chat.provider_types.as_slice()), ("POST", provider_types.as_slice()));
    }
}
