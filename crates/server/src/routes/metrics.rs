//! `GET /metrics`: the server's Prometheus counters ([`crate::gate::metrics::Metrics`]) as OpenMetrics
//! text. Protected like every other non-public route (a scraper sends a bearer token).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::state::AppState;

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "introspection",
    responses((status = 200, description = "Prometheus / OpenMetrics text exposition", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(|_| ApiError::Internal("metrics could not be rendered".into()))?;
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
