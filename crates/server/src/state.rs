//! [`AppState`]: what every handler shares, built once at start by `llamagate serve`.

use std::sync::Arc;

use llamagate_authz::SafetyPolicy;

use crate::backends::registry::ModelRegistry;
use crate::backends::shields::ShieldRegistry;
use crate::dev_issuer::Published;
use crate::gate::auth::AuthState;
use crate::gate::limits::RateLimits;
use crate::gate::metrics::Metrics;
use crate::gate::safety::SafetyGate;

/// What handlers share: the served models and the resource server. Cheap to clone (`Arc`s).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The models, by id.
    pub registry: Arc<ModelRegistry>,
    /// Authentication and model permissions; `None` only when `oauth_config.enable_auth` is false.
    pub auth: Option<Arc<AuthState>>,
    /// The development issuer's public documents; `Some` only under `serve --dev`.
    pub dev_issuer: Option<Arc<Published>>,
    /// Per-tier rate limits; `Some` only when `enable_rate_limiting` and authentication are both on.
    pub limits: Option<Arc<RateLimits>>,
    /// The Llama Guard shields, each on one of the served models.
    pub shields: Arc<ShieldRegistry>,
    /// Prometheus counters (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Content safety on chat and completions; `Some` only with `enforce_content_safety` and a shield.
    pub safety: Option<Arc<SafetyGate>>,
    /// The safety levels (`oauth_config.safety`): what `run-shield` and `moderations` decide a caller's
    /// scores with, whether or not chat is enforced.
    pub safety_levels: Arc<SafetyPolicy>,
}
