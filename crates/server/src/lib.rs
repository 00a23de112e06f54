//! # llamagate-server: the gate in front of the backends
//!
//! **Owns** the HTTP side of llamagate: the Llama Stack API routes, the order of the layers every request
//! passes (authentication, audit, metrics, limits), the request pipeline that takes an authorized
//! request to a backend and back, the command line and the configuration file.
//!
//! **Must not know** how tokens are validated or limits counted (that is `llamagate_authz`), nor how
//! a model computes (that is `llamagate_engine`): it moves HTTP into their types and their answers back
//! into HTTP.
//!
//! Folders, in the order a request meets them:
//! - [`cli`] — `llamagate serve | generate | token | audit`: start-up, wiring, shutdown;
//! - [`http`] — the router and its layer chain ([`http::router`], the page to read first), the one
//!   place errors become HTTP answers ([`http::error`]), JSON bodies, server-sent events, OpenAPI;
//! - [`gate`] — what runs before a model: authentication and the [`gate::caller::Caller`] it
//!   computes once per request, rate limits, content safety, audit, metrics, settlement;
//! - [`routes`] — one module per API area: parse the body, call the pipeline or a registry, shape
//!   the answer;
//! - [`pipeline`] — the path of one generation after parsing, as one function;
//! - [`backends`] — what serves the models and shields ([`backends::registry::Backend`]);
//! - [`config`], [`state`], [`dev_issuer`] — the stack config, what handlers share, the development
//!   token issuer of `serve --dev`.
//!
//! `docs/architecture.md` walks the request path with links into these modules.

pub mod allocator;
pub mod backends;
pub mod cli;
pub mod config;
pub mod dev_issuer;
pub mod gate;
pub mod http;
pub mod pipeline;
pub mod routes;
pub mod state;
