//! [`RateLimiter`]: reserve before generation, settle after, against the configured store.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::ratelimit::config::{Backend, FailureMode, RateLimitConfig, TierLimits};
use crate::ratelimit::gcra;
use crate::ratelimit::memory::MemoryStore;
use crate::ratelimit::redis::{Op, RedisStore};
use crate::ratelimit::status::{RateLimitError, RateLimitStatus};
use crate::ratelimit::tier::{RateKey, Tier};

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
            Store::Memory(store) => Ok(store.reserve(key, limits, 1, tokens, false)),
            Store::Redis(store) => store.run(Op::Reserve, key, limits, tokens).await,
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
            pending: Some(Pending {
                store: self.store.clone(),
                key: key.clone(),
                tier: tier.name.clone(),
                limits: *limits,
                failure_mode: self.failure_mode,
                reserved: tokens,
            }),
            used: 0,
            status: Some(status),
        })
    }

    /// The caller's limits and remaining budget, spending nothing.
    pub async fn usage(&self, key: &RateKey, tier: &Tier) -> Result<RateLimitStatus, RateLimitError> {
        let decision = match &self.store {
            Store::Memory(store) => store.reserve(key, &tier.limits, 1, 0, true),
            Store::Redis(store) => store.run(Op::Peek, key, &tier.limits, 0).await?,
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
    tier: String,
    limits: TierLimits,
    failure_mode: FailureMode,
    reserved: u64,
}

impl Pending {
    async fn refund(&self, tokens: u64) {
        match &self.store {
            Store::Memory(store) => store.refund(&self.key, &self.limits, tokens),
            Store::Redis(store) => {
                if let Err(e) = store.run(Op::Refund, &self.key, &self.limits, tokens).await {
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

    /// Adds `tokens` to an admitted request's reservation without taking another request: the server
    /// admits a request (one request slot) before it does any work for it, and reserves the tokens once
    /// it has counted them. Refused like [`RateLimiter::reserve`]; the request slot stays spent, since
    /// the work of counting was done. Unmetered reservations (and a backend down in fail-open mode)
    /// take nothing.
    pub async fn extend(&mut self, tokens: u64) -> Result<(), RateLimitError> {
        let Some(pending) = self.pending.as_mut() else { return Ok(()) };
        let limits = pending.limits;
        if pending.reserved + tokens > limits.tokens {
            let status = gcra::status(&pending.tier, &limits, 0.0, 0.0);
            return Err(RateLimitError::NeverFits { needed: pending.reserved + tokens, status });
        }
        let decision = match &pending.store {
            Store::Memory(store) => Ok(store.reserve(&pending.key, &limits, 0, tokens, false)),
            Store::Redis(store) => store.run(Op::Extend, &pending.key, &limits, tokens).await,
        };
        let decision = match (decision, pending.failure_mode) {
            (Ok(decision), _) => decision,
            (Err(e), FailureMode::Open) => {
                tracing::warn!(error = %e, "rate-limit backend unavailable; extending unmetered (fail-open)");
                return Ok(());
            }
            (Err(e), FailureMode::Closed) => return Err(e),
        };
        let status = gcra::status(&pending.tier, &limits, decision.used_requests_us, decision.used_tokens_us);
        if !decision.allowed {
            let retry_after = Duration::from_micros(decision.wait_us.ceil() as u64);
            return Err(RateLimitError::Exceeded { status, retry_after });
        }
        pending.reserved += tokens;
        // The request count stays the one seen at admission (each request's headers say where it
        // stood); the token count is the one seen now.
        self.status = Some(match self.status.take() {
            Some(admitted) => RateLimitStatus { requests: admitted.requests, ..status },
            None => status,
        });
        Ok(())
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
#[path = "limiter_tests.rs"]
mod tests;
