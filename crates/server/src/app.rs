//! The request path, top to bottom: which routes exist, which are public, and the layers every
//! request passes through before a handler runs.
//!
//! Layer order (outermost first): tracing span → panic guard → body-size limit → [authentication,
//! on protected routes only, once authz is wired] → handler. Unknown paths and wrong methods are
//! answered here, in the same error envelope as everything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::registry::ModelRegistry;
use crate::routes::{chat, completions, models, system};

/// What handlers share: the served models. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The models, by id.
    pub registry: Arc<ModelRegistry>,
}

/// Builds the whole HTTP application.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    // Public: Llama Stack serves health and version without credentials (reference §a.2).
    let public = Router::new().route("/v1/health", get(system::health)).route("/v1/version", get(system::version));

    // Protected: everything that reveals or uses a model. The authentication layer will be added
    // here as `.route_layer(...)`, so it runs only for these routes and before any handler.
    let protected = Router::new()
        .route("/v1/models", get(models::list))
        // `{*model_id}`: ids may contain `/` (see routes::models).
        .route("/v1/models/{*model_id}", get(models::retrieve))
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create));

    public
        .merge(protected)
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
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
