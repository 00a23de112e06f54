//! Everything a request passes before and after a model runs: the bounds at the edge ([`edge`]),
//! authentication and the [`caller::Caller`]
//! it computes once ([`auth`], [`caller`]), the audit trail ([`audit`], with the per-request
//! [`audit_notes`]), request and token counters ([`metrics`]), tier limits ([`limits`]), content safety
//! ([`safety`]) and the settlement that charges the real token counts to all three ([`settlement`]).
//! Policy itself (token rules, tiers, safety levels) lives in `llamagate_authz`; this folder wires it to
//! HTTP requests.

pub mod audit;
pub mod audit_notes;
pub mod auth;
pub mod caller;
pub mod edge;
pub mod limits;
pub mod metrics;
pub mod refusal_limit;
pub mod safety;
pub mod settlement;
