//! [`ApiError`]: every way a request can fail, mapped to HTTP in exactly this one place.
//!
//! Bodies use Llama Stack's error envelope, `{"error":{"message":...}}` (reference §a.3), which both
//! SDKs turn into their typed errors (`BadRequestError`, `NotFoundError`, …). Internal details are
//! logged, never sent: a 500 says only that something went wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use llamagate_authz::AuthErrorResponse;
use llamagate_engine::EngineError;
use serde_json::{Value, json};

/// A request failure with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter is malformed, out of range, or asks for something unsupported.
    #[error("{0}")]
    BadRequest(String),
    /// The requested model is not served here.
    #[error("Model '{0}' not found. Use 'client.models.list()' to list available Models.")]
    ModelNotFound(String),
    /// The requested provider is not configured; Llama Stack answers this with 400, not 404.
    #[error("Provider {0} not found")]
    ProviderNotFound(String),
    /// No route matches the path.
    #[error("Not Found")]
    RouteNotFound,
    /// The route exists but not with this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// The body is larger than `server.max_body_bytes`.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The engine is shutting down or its queue is full; retrying later can succeed.
    #[error("{0}")]
    Unavailable(String),
    /// Authentication or authorization refused the request (401, 400, 403 or 503), with its
    /// `WWW-Authenticate` challenges.
    #[error("{}", .0.description)]
    Auth(AuthErrorResponse),
    /// A bug or resource problem on our side; the detail goes to the log only.
    #[error("Internal server error: An unexpected error occurred.")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::ProviderNotFound(_) => StatusCode::BAD_REQUEST,
            Self::ModelNotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(answer) => StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED),
        }
    }

    /// The envelope body. `code` (the status as a string) is what a mid-stream error event carries,
    /// and is harmless on ordinary responses.
    pub fn body(&self) -> Value {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        json!({ "error": { "message": self.to_string(), "code": self.status().as_u16().to_string() } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Auth(answer) = &self {
            return crate::auth::auth_error_response(answer);
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::PromptTooLong { .. } | EngineError::InvalidRequest(_) => Self::BadRequest(e.to_string()),
            EngineError::Unavailable(_) => Self::Unavailable(e.to_string()),
            // A template that raises (e.g. "roles must alternate") is the caller's conversation at fault.
            EngineError::Template(_) => Self::BadRequest(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_the_documented_statuses() {
        let too_long = EngineError::PromptTooLong { prompt_tokens: 9, context_length: 8 };
        assert_eq!(ApiError::from(too_long).status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::from(EngineError::Unavailable("x".into())).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ApiError::from(EngineError::Inference("x".into())).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let body = ApiError::Internal("secret path /x".into()).body();
        assert!(!body.to_string().contains("secret"));
        assert_eq!(body["error"]["code"], "500");
    }
}
