//! `GET /openapi.json` and the interactive documentation at `/docs/`.
//!
//! The page is Swagger UI, compiled into the binary (`utoipa-swagger-ui` with its `vendored` feature),
//! so it works with no internet access: nothing is fetched from a CDN. The crate ships its own axum
//! router, but that would register paths outside [`crate::http::router::ROUTES`]; these handlers call its file
//! server instead, so the docs are ordinary rows of the table and authentication treats them like any
//! other protected route.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use utoipa_swagger_ui::Config;

use crate::http::error::{ApiError, ErrorEnvelope};

/// Where the page loads the document from; the path of the `/openapi.json` row of the route table.
const DOCUMENT_PATH: &str = "/openapi.json";

/// Swagger UI's settings, rendered into its `swagger-initializer.js`.
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| Arc::new(Config::new([DOCUMENT_PATH])));

/// The OpenAPI 3.1 document of this server, generated from the code (see [`crate::http::openapi`]).
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi_document", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document(Extension(document): Extension<Arc<utoipa::openapi::OpenApi>>) -> Json<utoipa::openapi::OpenApi> {
    Json(document.as_ref().clone())
}

/// `/docs` without the slash: the page's assets are relative (`./swagger-ui.css`), so they only
/// resolve under `/docs/`.
#[utoipa::path(get, path = "/docs", operation_id = "docs_redirect", tag = "documentation",
    responses((status = 308, description = "Redirect to `/docs/`")))]
pub async fn redirect() -> Redirect {
    Redirect::permanent("/docs/")
}

/// The Swagger UI page.
#[utoipa::path(get, path = "/docs/", operation_id = "docs_page", tag = "documentation",
    responses((status = 200, description = "The interactive documentation page", content_type = "text/html")))]
pub async fn page() -> Result<Response, ApiError> {
    swagger_file("")
}

/// One of the page's scripts or stylesheets.
#[utoipa::path(get, path = "/docs/{file}", operation_id = "docs_asset", tag = "documentation",
    params(("file" = String, Path, description = "A Swagger UI asset, such as `swagger-ui.css`")),
    responses(
        (status = 200, description = "The asset"),
        (status = 404, description = "No such asset", body = ErrorEnvelope),
    ))]
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    swagger_file(&file)
}

fn swagger_file(tail: &str) -> Result<Response, ApiError> {
    let file = utoipa_swagger_ui::serve(tail, SWAGGER_CONFIG.clone())
        .map_err(|e| ApiError::Internal(format!("Swagger UI file {tail:?}: {e}")))?
        .ok_or(ApiError::RouteNotFound)?;
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, file.content_type)], file.bytes.into_owned()).into_response();
    if file.gzpipped {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
