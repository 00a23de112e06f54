//! What a route is, as data: its method, path, who may call it and which API it belongs to. The
//! router's table ([`crate::http::router::ROUTES`]) pairs each [`RouteSpec`] with its handler; the
//! handlers that describe the server (`inspect/routes`, the OpenAPI document) and the authentication
//! layer (which paths are public) read the specs through a [`RouteCatalog`], so none of them needs the
//! router.

use std::sync::Arc;

use axum::http::Method;

/// Whether a route needs credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served without credentials: Llama Stack's health and version
    /// (docs/reference/llama-stack-api.md §a.2), the RFC 9728 metadata that tells clients where to get a
    /// token, and (under `serve --dev` only) the development issuer's RFC 8414 metadata and public keys.
    Public,
    /// A caller's own use of the API: models it may use, generations, shields, its usage.
    Protected,
    /// What describes the whole deployment (every model, provider, route and counter): needs a token
    /// with the operator scope (`server.operator_scope`) besides.
    Operator,
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

/// One route, without its handler.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// The HTTP method.
    pub method: Method,
    /// The axum path (`{*tail}` for ids that may contain `/`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Which API it belongs to.
    pub api: Api,
}

/// Every route the server serves, in table order; shared with the handlers that report them.
#[derive(Clone, Debug)]
pub struct RouteCatalog(Arc<[RouteSpec]>);

impl RouteCatalog {
    /// The catalog of these specs.
    pub fn new(specs: impl IntoIterator<Item = RouteSpec>) -> Self {
        Self(specs.into_iter().collect())
    }

    /// Every route.
    pub fn all(&self) -> &[RouteSpec] {
        &self.0
    }

    /// The exact paths served without credentials. Anything else (other routes, unknown paths, other
    /// spellings of public paths) needs a token.
    pub fn public_paths(&self) -> Vec<&'static str> {
        self.paths(Access::Public)
    }

    /// The route templates that need the operator scope.
    pub fn operator_paths(&self) -> Vec<&'static str> {
        self.paths(Access::Operator)
    }

    fn paths(&self, access: Access) -> Vec<&'static str> {
        self.0.iter().filter(|r| r.access == access).map(|r| r.path).collect()
    }
}
