//! HTTP in and out: the listener with its connection bounds ([`listener`]), the router with its layer chain ([`router`], where the request path starts), the
//! route table's plain data ([`route_spec`]), the one mapping of errors to answers ([`error`]), JSON
//! bodies ([`json_body`]), server-sent events ([`sse`]) and the OpenAPI document ([`openapi`]).

pub mod error;
pub mod json_body;
pub mod listener;
pub mod openapi;
pub mod route_spec;
pub mod router;
pub mod sse;
