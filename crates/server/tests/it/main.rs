//! The server's integration tests, one binary: each module starts the real `llamagate` binary (or a
//! real authorization server, Redis, …) and talks to it over HTTP like a user; `support` holds what
//! they share. One binary instead of one per file keeps the link step (the whole server and its
//! dependencies) to once per build.

mod support;

mod abuse;
mod api_choices;
mod api_errors;
mod api_generation;
mod api_introspection;
mod api_logprobs;
mod api_safety;
mod api_shapes;
mod api_structured_output;
mod api_tools;
// The audit and content-safety tests need scores they control, from the test guard double.
#[cfg(feature = "test-guard")]
mod audit_e2e;
mod cli_generate;
#[cfg(feature = "test-guard")]
mod content_safety;
mod dev_issuer;
mod edge;
mod identity_providers;
mod model_placement;
mod oauth_dpop;
mod oauth_dpop_replicas;
mod oauth_e2e;
mod oauth_introspection;
mod oauth_llama_stack_auth;
mod oauth_negative_header;
mod oauth_negative_token;
mod oauth_rotation;
mod openapi;
mod rate_limits;
mod rate_limits_redis;
mod remote_chain;
mod remote_faults;
mod remote_llama_stack;
mod remote_providers;
mod remote_proxy;
mod robustness;
