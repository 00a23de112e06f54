//! The OpenAPI 3.1 document, generated from the code: each handler's `#[utoipa::path]` annotation
//! and each wire type's `ToSchema` derive, so the document describes the structs the server actually
//! serializes.
//!
//! What a handler annotation cannot know is read from the [`RouteCatalog`] of the table the router and
//! the authentication layer are built from: public rows get an empty `security` list, protected rows the
//! bearer requirement and the 401/403/503 answers of the authentication layer (appended to the
//! handler's own description where it documents the same status). The server's integration tests
//! (`tests/it/openapi.rs`) check that the document lists exactly the rows of the table, and that the
//! copies committed under `openapi/` are current. Regenerate those with
//! `UPDATE_OPENAPI=1 cargo test -p llamagate-server --test it openapi`.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::http::error::{ErrorDetail, ErrorEnvelope};
use crate::http::route_spec::{Access, RouteCatalog};
use crate::routes::{
    admin, chat, completions, docs, inspect, metrics, models, moderations, providers, safety, shields, system, usage,
};

/// The name of the bearer-token security scheme in the document (also spelled out in `#[openapi(security)]`,
/// which takes only a literal).
pub const BEARER: &str = "bearer";

/// The answers of the authentication layer on every protected route (design.md, "The path of one chat
/// completion", step 2), each a named response in `components.responses`.
const AUTH_RESPONSES: [(&str, &str, &str); 3] = [
    (
        "401",
        "Unauthorized",
        "Missing, malformed, expired or revoked access token (with a `WWW-Authenticate` challenge)",
    ),
    ("403", "Forbidden", "The token lacks the scope this request needs (`insufficient_scope`)"),
    ("503", "IdentityUnavailable", "The authorization server's keys cannot be fetched and none are cached"),
];

/// The document's root: every annotated handler and the schemas no handler names directly.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "llamagate",
        description = "Llama-family models behind the Llama Stack HTTP API (0.7.x), with an OAuth 2.1 \
            resource server in front: every route except `/v1/health`, `/v1/version` and \
            `/.well-known/oauth-protected-resource` needs a bearer access token. Where to get one is \
            in the RFC 9728 metadata at `/.well-known/oauth-protected-resource`.",
        license(name = "MIT")
    ),
    paths(
        system::health,
        system::version,
        system::protected_resource_metadata,
        system::dev_issuer_metadata,
        system::dev_issuer_jwks,
        inspect::routes,
        providers::list,
        providers::retrieve,
        admin::list_providers,
        admin::retrieve_provider,
        admin::list_routes,
        admin::health,
        admin::version,
        models::list,
        models::retrieve,
        chat::create,
        completions::create,
        shields::list,
        shields::retrieve,
        safety::run_shield,
        moderations::create,
        usage::show,
        metrics::render,
        docs::document,
        docs::redirect,
        docs::page,
        docs::asset,
    ),
    components(schemas(ErrorEnvelope, ErrorDetail)),
    security(("bearer" = [])),
    tags(
        (name = "inference", description = "Chat and text completions, plain or streamed"),
        (name = "models", description = "The served models"),
        (name = "safety", description = "Llama Guard shields and moderation"),
        (name = "introspection", description = "Health, version, routes and providers"),
        (name = "admin", description = "Llama Stack's admin API (`/v1alpha/admin`): operators only"),
        (name = "oauth", description = "Discovery documents for OAuth clients"),
        (name = "documentation", description = "This document and its interactive page"),
    )
)]
pub struct ApiDoc;

/// The document, as served at `GET /openapi.json`, for the routes of `catalog`.
pub fn document(catalog: &RouteCatalog) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    AccessFromRouteTable(catalog).modify(&mut document);
    document
}

/// The OpenAPI spelling of an axum path: `{*name}` tail captures are plain `{name}` parameters.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// Fills in security from the route table: the bearer scheme, and per operation whether it applies.
struct AccessFromRouteTable<'a>(&'a RouteCatalog);

impl Modify for AccessFromRouteTable<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An OAuth 2.1 access token (RFC 6750), a JWT or an opaque token checked by introspection; \
                 DPoP-bound tokens also need a `DPoP` proof header.",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
        for (_, name, description) in AUTH_RESPONSES {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build();
            let response = ResponseBuilder::new().description(description).content("application/json", content);
            components.responses.insert(name.to_string(), response.into());
        }

        for route in self.0.all() {
            let Some(operation) =
                openapi.paths.paths.get_mut(&openapi_path(route.path)).and_then(|item| operation(item, &route.method))
            else {
                continue; // an undocumented row; the `every_route_is_documented` test names it
            };
            match route.access {
                // An empty list overrides the document-wide bearer requirement.
                Access::Public => operation.security = Some(Vec::new()),
                Access::Protected | Access::Operator => {
                    for (status, name, description) in AUTH_RESPONSES {
                        let responses = &mut operation.responses.responses;
                        match responses.get_mut(status) {
                            // The handler documents its own answer with this status (a full engine
                            // queue, an unreachable Redis): keep it and add the layer's reason to it.
                            Some(RefOr::T(own)) => {
                                let (first, rest) = description.split_at(1);
                                own.description = format!("{}; or {}{rest}", own.description, first.to_lowercase());
                            }
                            _ => {
                                responses.insert(status.to_string(), RefOr::Ref(Ref::from_response_name(name)));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The operation of `item` for `method`, if documented.
fn operation<'a>(item: &'a mut PathItem, method: &axum::http::Method) -> Option<&'a mut Operation> {
    use axum::http::Method;
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        _ => None,
    }
}
