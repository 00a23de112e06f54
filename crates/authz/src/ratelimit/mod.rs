//! Per-tier rate limits with reserve/settle semantics, in process or in Redis.
//!
//! Each caller ([`RateKey`]) has two GCRA buckets sized by its [`Tier`]: requests and tokens per
//! window. Before generation the server calls [`RateLimiter::reserve`] with one request and
//! `prompt_tokens + max_tokens` — the most the generation can use — so concurrent requests can never
//! overspend. When generation ends, [`Reservation::settle`] charges the real `prompt + completion`
//! count and hands the unused part back; a reservation dropped without settling charges what was
//! recorded with [`Reservation::record_usage`] (nothing, by default) and refunds the rest, so
//! cancelled streams and failed requests pay only for what they used. Requests are never refunded.
//!
//! A reservation larger than the tier's whole token budget can never be admitted, however long the
//! caller waits: it is refused as [`RateLimitError::NeverFits`], which the server answers with a
//! 429 saying so and `x-should-retry: false` instead of an endless retry loop.
//!
//! Backends: [`MemoryStore`] (one process) and [`RedisStore`] (one atomic Lua script per decision,
//! shared by replicas). When Redis cannot be reached the configured [`FailureMode`] decides:
//! `closed` (default) refuses with [`RateLimitError::Unavailable`], `open` admits unmetered.

pub mod config;
mod gcra;
pub mod headers;
pub mod memory;
pub mod redis;
pub mod tier;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use config::{Backend, FailureMode, RateLimitConfig, TierLimits};
pub use memory::{ManualTime, MemoryStore};
pub use redis::RedisStore;

use crate::ratelimit::tier::{RateKey, Tier};

/// One dimension's state, as the headers and the usage endpoint report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Units per window.
    pub limit: u64,
    /// Units that can be spent right now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    #[serde(serialize_with = "as_seconds")]
    pub reset: Duration,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A caller's limits and what is left of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimitStatus {
    /// The tier name.
    pub tier: String,
    /// The window both limits are counted over.
    pub window_seconds: u64,
    /// The request bucket.
    pub requests: Quota,
    /// The token bucket.
    pub tokens: Quota,
}

/// Why a reservation was refused.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The budget is spent for now; `retry_after` is when this reservation would fit.
    #[error(
        "Rate limit reached for tier '{}': {} of {} requests and {} of {} tokens left per {} s. Retry in {} s.",
        status.tier, status.requests.remaining, status.requests.limit, status.tokens.remaining,
        status.tokens.limit, status.window_seconds, retry_after.as_secs().max(1)
    )]
    Exceeded {
        /// The caller's state at refusal.
        status: RateLimitStatus,
        /// When the refused reservation would fit.
        retry_after: Duration,
    },
    /// The reservation exceeds the tier's whole token budget: retrying can never help.
    #[error(
        "This request needs up to {needed} tokens (prompt + max_tokens) but tier '{}' allows at most {} tokens \
         per {} s, so it can never be admitted. Lower max_tokens or shorten the prompt.",
        status.tier, status.tokens.limit, status.window_seconds
    )]
    NeverFits {
        /// Tokens the request would reserve.
        needed: u64,
        /// The caller's state.
        status: RateLimitStatus,
    },
    /// The backend (Redis) cannot be reached and the failure mode is `closed`.
    #[error("Rate limiting is temporarily unavailable: {0}")]
    Unavailable(String),
}

/// A backend's answer, as parts of the window in use (microseconds) so both backends share the
/// reporting arithmetic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decision {
    allowed: bool,
    used_requests_us: f64,
    used_tokens_us: f64,
    wait_us: f64,
}

impl Decision {
    pub(crate) fn allowed(used_requests_us: f64, used_tokens_us: f64) -> Self {
        Self { allowed: true, used_requests_us, used_tokens_us, wait_us: 0.0 }
    }

    pub(crate) fn denied(used_requests_us: f64, used_tokens_us: f64, wait_us: f64) -> Self {
        Self { allowed: false, used_requests_us, used_tokens_us, wait_us }
    }
}

/// Where buckets live; cheap to clone so reservations can refund on their own.
#[derive(Clone, Debug)]
enum Store {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

/// Health of the backend, for `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendHealth {
    /// `memory` or `redis`.
    pub backend: Backend,
    /// Whether the backend answers.
    pub reachable: bool,
    /// What happens while it does not.
    pub failure_mode: FailureMode,
    /// The error, when unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The limiter: tiers plus a store plus a failure mode. Shared by every request.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    store: Store,
    failure_mode: FailureMode,
}

impl RateLimiter {
    /// From a validated config. The Redis connection is lazy (see [`RedisStore::connect`]); call
    /// inside a Tokio runtime.
    pub fn from_config(cfg: &RateLimitConfig) -> Result<Self, RateLimitError> {
        let store = match cfg.backend {
            Backend::Memory => Store::Memory(Arc::new(MemoryStore::default())),
            Backend::Redis => Store::Redis(RedisStore::connect(
                cfg.redis_url.as_deref().unwrap_or_default(),
                &cfg.redis_key_prefix,
                Duration::from_millis(cfg.redis_timeout_ms),
            )?),
        };
        Ok(Self { store, failure_mode: cfg.on_backend_failure })
    }

    /// An in-process limiter over this store (tests, benchmarks).
    pub fn in_memory(store: MemoryStore) -> Self {
        Self { store: Store::Memory(Arc::new(store)), failure_mode: FailureMode::Closed }
    }

    /// A Redis limiter (tests, benchmarks).
    pub fn redis(store: RedisStore, failure_mode: FailureMode) -> Self {
        Self { store: Store::Redis(store), failure_mode }
    }

    /// Reserves one request and `tokens` tokens for `key` in `tier`, or says why not.
    pub async fn reserve(&self, key: &RateKey, tier: &Tier, tokens: u64) -> Result<Reservation, RateLimitError> {
        let limits = &tier.limits;
        if tokens > limits.tokens {
            // Decided by the tier alone, so it holds even while the backend is down.
            let status = self.usage(key, tier).await.unwrap_or_else(|_| gcra::status(&tier.name, limits, 0.0, 0.0));
            return Err(RateLimitError::NeverFits { needed: tokens, status });
        }
        let decision = match &self.store {
            Store::Memory(store) => Ok(store.reserve(key, limits, tokens, false)),
            Store::Redis(store) => store.run(redis::Op::Reserve, key, limits, tokens).await,
        };
        let decision = match (decision, self.failure_mode) {
            (Ok(decision), _) => decision,
            (Err(e), FailureMode::Open) => {
                tracing::warn!(error = %e, "rate-limit backend unavailable; admitting unmetered (fail-open)");
                return Ok(Reservation::unmetered());
            }
            (Err(e), FailureMode::Closed) => return Err(e),
        };
        let status = gcra::status(&tier.name, limits, decision.used_requests_us, decision.used_tokens_us);
        if !decision.allowed {
            let retry_after = Duration::from_micros(decision.wait_us.ceil() as u64);
            return Err(RateLimitError::Exceeded { status, retry_after });
        }
        Ok(Reservation {
            pending: Some(Pending { store: self.store.clone(), key: key.clone(), limits: *limits, reserved: tokens }),
            used: 0,
            status: Some(status),
        })
    }

    /// The caller's limits and remaining budget, spending nothing.
    pub async fn usage(&self, key: &RateKey, tier: &Tier) -> Result<RateLimitStatus, RateLimitError> {
        let decision = match &self.store {
            Store::Memory(store) => store.reserve(key, &tier.limits, 0, true),
            Store::Redis(store) => store.run(redis::Op::Peek, key, &tier.limits, 0).await?,
        };
        Ok(gcra::status(&tier.name, &tier.limits, decision.used_requests_us, decision.used_tokens_us))
    }

    /// Whether the backend answers (always, in process).
    pub async fn health(&self) -> BackendHealth {
        let (backend, result) = match &self.store {
            Store::Memory(_) => (Backend::Memory, Ok(())),
            Store::Redis(store) => (Backend::Redis, store.ping().await),
        };
        BackendHealth {
            backend,
            reachable: result.is_ok(),
            failure_mode: self.failure_mode,
            error: result.err().map(|e| e.to_string()),
        }
    }
}

/// What a reservation must undo.
#[derive(Debug)]
struct Pending {
    store: Store,
    key: RateKey,
    limits: TierLimits,
    reserved: u64,
}

impl Pending {
    async fn refund(&self, tokens: u64) {
        match &self.store {
            Store::Memory(store) => store.refund(&self.key, &self.limits, tokens),
            Store::Redis(store) => {
                if let Err(e) = store.run(redis::Op::Refund, &self.key, &self.limits, tokens).await {
                    tracing::warn!(error = %e, tokens, "rate-limit refund lost");
                }
            }
        }
    }
}

/// Budget taken for one request; settle it with the real token count.
#[derive(Debug)]
#[must_use = "dropping a reservation refunds all tokens not recorded as used"]
pub struct Reservation {
    pending: Option<Pending>,
    used: u64,
    status: Option<RateLimitStatus>,
}

impl Reservation {
    /// A reservation that tracks nothing: rate limiting off, or the backend down in fail-open mode.
    pub fn unmetered() -> Self {
        Self { pending: None, used: 0, status: None }
    }

    /// The caller's state right after reserving (for the success headers); `None` when unmetered.
    pub fn status(&self) -> Option<&RateLimitStatus> {
        self.status.as_ref()
    }

    /// Tokens reserved.
    pub fn reserved(&self) -> u64 {
        self.pending.as_ref().map_or(0, |p| p.reserved)
    }

    /// Records how many tokens have been used so far: what a drop without settling charges.
    pub fn record_usage(&mut self, tokens: u64) {
        self.used = tokens;
    }

    /// Charges `actual_tokens` and refunds the rest of the reservation; returns the refund. Usage
    /// above the reservation (which the engine's cap prevents) is not charged extra.
    pub async fn settle(mut self, actual_tokens: u64) -> u64 {
        let Some(pending) = self.pending.take() else { return 0 };
        let refund = pending.reserved.saturating_sub(actual_tokens);
        if refund > 0 {
            pending.refund(refund).await;
        }
        refund
    }
}

impl Drop for Reservation {
    /// Settles with the recorded usage. In process that is immediate; for Redis the refund runs on
    /// the current Tokio runtime (there is none only at shutdown, when the key simply expires).
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else { return };
        let refund = pending.reserved.saturating_sub(self.used);
        if refund == 0 {
            return;
        }
        match &pending.store {
            Store::Memory(store) => store.refund(&pending.key, &pending.limits, refund),
            Store::Redis(_) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { pending.refund(refund).await });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
