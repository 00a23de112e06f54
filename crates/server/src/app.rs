//! The request path, top to bottom: which routes exist, which are public, and the layers every
//! request passes through before a handler runs.
//!
//! Every route is one row of [`ROUTES`]; the router is built from that table and
//! `GET /v1/inspect/routes` reports it, so the two cannot drift apart.
//!
//! Layer order (outermost first): tracing span → panic guard → body-size limit → request counter →
//! audit outcome → authentication → audit request → handler. Authentication wraps the whole router, fallbacks included, and lets through only the
//! exact paths of the public rows of [`ROUTES`]: every other path, unknown ones too, needs a valid
//! token (deny by default). Unknown paths and wrong methods are answered here, in the same error
//! envelope as everything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::audit;
use crate::auth::{self, AuthState};
use crate::error::ApiError;
use crate::metrics;
use crate::registry::ModelRegistry;
use crate::routes::{chat, completions, docs, inspect, models, moderations, providers, safety, shields, system, usage};
use crate::shields::ShieldRegistry;

/// What handlers share: the served models and the resource server. Cheap to clone (`Arc`s).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The models, by id.
    pub registry: Arc<ModelRegistry>,
    /// Authentication and model permissions; `None` only when `oauth_config.enable_auth` is false.
    pub auth: Option<Arc<AuthState>>,
    /// The development issuer's public documents; `Some` only under `serve --dev`.
    pub dev_issuer: Option<Arc<crate::dev_issuer::Published>>,
    /// Per-tier rate limits; `Some` only when `enable_rate_limiting` and authentication are both on.
    pub limits: Option<Arc<crate::admission::RateLimits>>,
    /// The Llama Guard shields, each on one of the served models.
    pub shields: Arc<ShieldRegistry>,
    /// Prometheus counters (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Content safety on chat and completions; `Some` only with `enforce_content_safety` and a shield.
    pub safety: Option<Arc<crate::safety_gate::SafetyGate>>,
}

/// Whether a route needs credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served without credentials: Llama Stack's health and version (reference §a.2), the RFC 9728
    /// metadata that tells clients where to get a token, and (under `serve --dev` only) the development
    /// issuer's RFC 8414 metadata and public keys.
    Public,
    /// Everything that reveals or uses a model or the server's setup.
    Protected,
}

/// The Llama Stack API a route belongs to; decides which provider types `inspect/routes` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Served by the inference provider (models, chat, completions).
    Inference,
    /// Served by the safety provider (shields, run-shield, moderations).
    Safety,
    /// About the server itself (health, version, routes, providers, the API documentation); no provider
    /// behind it.
    Introspection,
}

/// One route: what `inspect/routes` reports and how the router serves it.
pub struct ApiRoute {
    /// The HTTP method.
    pub method: Method,
    /// The axum path (`{*tail}` for ids that may contain `/`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Which API it belongs to.
    pub api: Api,
    /// Wraps the handler for this method; taking the filter keeps the method in one place.
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// Every route the app serves. `{*model_id}`: ids may contain `/` (see routes::models).
pub static ROUTES: &[ApiRoute] = &[
    ApiRoute {
        method: Method::GET,
        path: "/v1/health",
        access: Access::Public,
        api: Api::Introspection,
        handler: |m| on(m, system::health),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/version",
        access: Access::Public,
        api: Api::Introspection,
        handler: |m| on(m, system::version),
    },
    ApiRoute {
        method: Method::GET,
        path: "/.well-known/oauth-protected-resource",
        access: Access::Public,
        api: Api::Introspection,
        handler: |m| on(m, system::protected_resource_metadata),
    },
    ApiRoute {
        method: Method::GET,
        path: "/.well-known/oauth-authorization-server",
        access: Access::Public,
        api: Api::Introspection,
        handler: |m| on(m, system::dev_issuer_metadata),
    },
    ApiRoute {
        method: Method::GET,
        path: "/.well-known/jwks.json",
        access: Access::Public,
        api: Api::Introspection,
        handler: |m| on(m, system::dev_issuer_jwks),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/inspect/routes",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, inspect::routes),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/providers",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, providers::list),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/providers/{provider_id}",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, providers::retrieve),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/models",
        access: Access::Protected,
        api: Api::Inference,
        handler: |m| on(m, models::list),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/models/{*model_id}",
        access: Access::Protected,
        api: Api::Inference,
        handler: |m| on(m, models::retrieve),
    },
    ApiRoute {
        method: Method::POST,
        path: "/v1/chat/completions",
        access: Access::Protected,
        api: Api::Inference,
        handler: |m| on(m, chat::create),
    },
    ApiRoute {
        method: Method::POST,
        path: "/v1/completions",
        access: Access::Protected,
        api: Api::Inference,
        handler: |m| on(m, completions::create),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/shields",
        access: Access::Protected,
        api: Api::Safety,
        handler: |m| on(m, shields::list),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/shields/{*shield_id}",
        access: Access::Protected,
        api: Api::Safety,
        handler: |m| on(m, shields::retrieve),
    },
    ApiRoute {
        method: Method::POST,
        path: "/v1/safety/run-shield",
        access: Access::Protected,
        api: Api::Safety,
        handler: |m| on(m, safety::run_shield),
    },
    ApiRoute {
        method: Method::POST,
        path: "/v1/moderations",
        access: Access::Protected,
        api: Api::Safety,
        handler: |m| on(m, moderations::create),
    },
    ApiRoute {
        method: Method::GET,
        path: "/v1/usage",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, usage::show),
    },
    ApiRoute {
        method: Method::GET,
        path: "/metrics",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, metrics::render),
    },
    // The OpenAPI document and its Swagger UI page (compiled in, works offline). Protected like the API
    // they describe.
    ApiRoute {
        method: Method::GET,
        path: "/openapi.json",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, docs::document),
    },
    ApiRoute {
        method: Method::GET,
        path: "/docs",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, docs::redirect),
    },
    ApiRoute {
        method: Method::GET,
        path: "/docs/",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, docs::page),
    },
    ApiRoute {
        method: Method::GET,
        path: "/docs/{*file}",
        access: Access::Protected,
        api: Api::Introspection,
        handler: |m| on(m, docs::asset),
    },
];

/// The routes of [`ROUTES`] with this access, as a router.
fn routes_with(access: Access) -> Router<AppState> {
    ROUTES.iter().filter(|r| r.access == access).fold(Router::new(), |router, r| {
        let filter = MethodFilter::try_from(r.method.clone()).expect("ROUTES holds only standard methods");
        router.route(r.path, (r.handler)(filter))
    })
}

/// Builds the whole HTTP application.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let public = routes_with(Access::Public);
    let protected = routes_with(Access::Protected);

    let mut app = public
        .merge(protected)
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    if let Some(auth_state) = state.auth.clone() {
        // Over the whole router, fallbacks included: an unknown path without a token is a 401, not a
        // 404 that would reveal which paths exist. `auth::authenticate` passes the public paths.
        // Audit (when on) wraps authentication from both sides: `record_request` runs after a token
        // is accepted and before any handler; `record_outcome` sees every answer, refusals included.
        let audit = auth_state.audit_trail().cloned();
        if let Some(log) = audit.clone() {
            app = app.layer(from_fn_with_state(log, audit::record_request));
        }
        app = app.layer(from_fn_with_state(auth_state, auth::authenticate));
        if let Some(log) = audit {
            app = app.layer(from_fn_with_state(log, audit::record_outcome));
        }
    }
    // Counts every answer, refusals by the layers above included.
    app = app.layer(from_fn_with_state(state.metrics.clone(), metrics::count_requests));
    app.layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(CatchPanicLayer::custom(panic_response))
            // Enforced by the JSON extractor, which turns an oversize body into our 413.
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
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
                metrics: Arc::new(crate::metrics::Metrics::new(None)),
                safety: None,
            },
            1024,
        );
        for route in ROUTES {
            if route.path.starts_with("/.well-known/") {
                continue; // 404 by design when auth is off
            }
            let path = route
                .path
                .replace("{*model_id}", "some/model")
                .replace("{provider_id}", "llamagate")
                .replace("{*shield_id}", "some/shield")
                .replace("{*file}", "swagger-ui.css");
            let request = Request::builder().method(route.method.clone()).uri(&path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            // The docs page and its assets are not JSON; the router's own 404 always is.
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", route.method);
            let router_404 = status == StatusCode::NOT_FOUND && body["error"]["message"] == "Not Found";
            assert!(!router_404, "{} {path} is listed but not routed", route.method);
        }
    }
}
