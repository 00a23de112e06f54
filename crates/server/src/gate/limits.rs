//! Tier limits: the rate-limit step of the request path (docs/architecture.md, steps "reserve" and
//! "settle"), wired around the engine.
//!
//! Before any work is done for a generation (rendering, tokenizing), [`Admission::open`] takes one
//! request from the caller's tier, so a caller over its request limit costs a lookup and nothing more.
//! Once the prompt is tokenized and the engine has capped `max_tokens` to the context
//! ([`Submission`]; a remote model's prompt is estimated), [`Admission::reserve_generation`] adds `prompt_tokens + n × max_tokens` (each prompt once, each of its `n` choices' `max_tokens`); a
//! prompt refused as too long is charged the tokens it was counted at ([`Admission::charge_refused`]).
//! Either step refuses with 429 (503 while a fail-closed Redis is unreachable).
//! The pipeline's [`crate::gate::settlement::Settlement`] then owns the admission: the rate-limit headers
//! go onto the response, and the engine's real `prompt + completion` count is charged when generation
//! ends. If the response is dropped first (client gone, stream cancelled, engine failure) the admission
//! is dropped with it and charges the prompt plus the tokens streamed so far; the rest is refunded.
//!
//! Rate limiting applies only when `enable_rate_limiting` is on **and** authentication is on: the
//! buckets are keyed by the token's subject and client, and without authentication there is no
//! trustworthy identity to key on (an IP address is not one behind a load balancer), so an open
//! development server is unlimited and says so at start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llamagate_authz::ratelimit::BackendHealth;
use llamagate_authz::{OAuthConfig, RateLimitStatus, RateLimiter, Reservation};

use crate::backends::registry::Submission;
use crate::gate::caller::{Caller, Identity};
use crate::http::error::ApiError;

/// The limiter; built once at start. The caller's tier comes with the [`Caller`].
#[derive(Debug)]
pub struct RateLimits {
    limiter: RateLimiter,
    /// The backend's last health answer and when it was taken: the public `/v1/health` asks at most
    /// once per [`HEALTH_TTL`], however often it is called.
    health: tokio::sync::Mutex<Option<(Instant, BackendHealth)>>,
}

/// How long a backend health answer is reused.
const HEALTH_TTL: Duration = Duration::from_secs(1);

impl RateLimits {
    /// `Some` when `oauth_config` turns rate limiting on (and authentication is on). Must run inside
    /// the Tokio runtime (the Redis connection is created there).
    pub fn from_config(cfg: &OAuthConfig) -> anyhow::Result<Option<Arc<Self>>> {
        if !cfg.enable_auth {
            if cfg.enable_rate_limiting {
                tracing::warn!("rate limiting is off: it needs authentication (limits are per token subject)");
            }
            return Ok(None);
        }
        if !cfg.enable_rate_limiting {
            return Ok(None);
        }
        let limits = &cfg.rate_limits;
        let limiter = RateLimiter::from_config(limits).map_err(|e| anyhow::anyhow!("oauth_config.rate_limits: {e}"))?;
        tracing::info!(backend = ?limits.backend, on_backend_failure = ?limits.on_backend_failure, "rate limiting enabled");
        Ok(Some(Arc::new(Self { limiter, health: tokio::sync::Mutex::new(None) })))
    }

    /// The caller's limits and remaining budget (`GET /v1/usage`).
    pub async fn usage(&self, caller: &Identity) -> Result<RateLimitStatus, ApiError> {
        self.limiter.usage(&caller.rate_key, &caller.tier).await.map_err(ApiError::RateLimited)
    }

    /// Whether the backend answers (`GET /v1/health`), asked at most once per [`HEALTH_TTL`]; callers
    /// that come while it is being asked wait for that answer.
    pub async fn health(&self) -> BackendHealth {
        let mut cached = self.health.lock().await;
        if let Some((taken, health)) = cached.as_ref().filter(|(taken, _)| taken.elapsed() < HEALTH_TTL) {
            tracing::trace!(age_ms = taken.elapsed().as_millis() as u64, "rate-limit backend health reused");
            return health.clone();
        }
        let health = self.limiter.health().await;
        *cached = Some((Instant::now(), health.clone()));
        health
    }
}

/// One admitted generation's budget: settled with the real count, or charged on drop.
#[derive(Debug)]
pub struct Admission {
    reservation: Reservation,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Admission {
    /// Takes one request (and no tokens yet) for the caller, or refuses: the cheap check that runs
    /// before the prompt is rendered and tokenized.
    pub async fn open(limits: Option<&RateLimits>, caller: &Caller) -> Result<Self, ApiError> {
        Self::reserve_tokens(limits, caller, 0, 0).await
    }

    /// Adds the counted `prompt_tokens + n × max_tokens` of each of `requests` (the prompts of one
    /// request, each answered with `n` choices that share its prefill) to the admitted request, or refuses
    /// (the request slot stays spent: the counting was work done for the caller).
    pub async fn reserve_generation(
        &mut self,
        caller: &Caller,
        requests: &[Submission],
        n: usize,
    ) -> Result<(), ApiError> {
        let prompt: u64 = requests.iter().map(|r| r.prompt_tokens() as u64).sum();
        let generation: u64 = requests.iter().map(|r| r.max_tokens() as u64 * n as u64).sum();
        self.extend(caller, prompt + generation).await?;
        self.prompt_tokens = prompt;
        Ok(())
    }

    /// Charges a prompt that was tokenized and then refused (longer than the model's context): the
    /// caller made the server count `prompt_tokens` tokens. As much of it as the budget still holds is
    /// charged; the refusal the caller gets is the original one either way.
    pub async fn charge_refused(mut self, caller: &Caller, prompt_tokens: u64) {
        let left = self.status().map_or(0, |status| status.tokens.remaining);
        let charge = prompt_tokens.min(left);
        if charge > 0 && self.extend(caller, charge).await.is_ok() {
            self.reservation.record_usage(charge);
        }
    }

    async fn extend(&mut self, caller: &Caller, tokens: u64) -> Result<(), ApiError> {
        self.reservation.extend(tokens).await.map_err(|e| {
            if let Some(Identity { principal, tier, .. }) = caller.identity() {
                tracing::info!(sub = %principal.subject, tier = %tier.name, tokens, reason = %e, "rate limited");
            }
            ApiError::RateLimited(e)
        })
    }

    /// Reserves `1 request + prompt_tokens + max_tokens` for work that is not a generation (a shield
    /// reads a prompt and generates nothing: `max_tokens` 0), or refuses.
    async fn reserve_tokens(
        limits: Option<&RateLimits>,
        caller: &Caller,
        prompt_tokens: u64,
        max_tokens: u64,
    ) -> Result<Self, ApiError> {
        let reservation = match (limits, caller.identity()) {
            (Some(limits), Some(Identity { principal, tier, rate_key })) => {
                let tokens = prompt_tokens + max_tokens;
                limits.limiter.reserve(rate_key, tier, tokens).await.map_err(|e| {
                    tracing::info!(sub = %principal.subject, tier = %tier.name, tokens, reason = %e, "rate limited");
                    ApiError::RateLimited(e)
                })?
            }
            _ => Reservation::unmetered(),
        };
        Ok(Self { reservation, prompt_tokens, completion_tokens: 0 })
    }

    /// Runs `work` (a shield's scoring, say) on this admitted request, charged the `prompt_tokens` it
    /// reads: refused with 429 before any of it when the caller's tier has no budget left.
    pub async fn metered<T>(
        mut self,
        caller: &Caller,
        prompt_tokens: u64,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.extend(caller, prompt_tokens).await?;
        self.prompt_tokens = prompt_tokens;
        self.started();
        let result = work.await;
        self.settle(prompt_tokens).await;
        result
    }

    /// The engine accepted the request: from now on a drop charges at least the prompt.
    pub fn started(&mut self) {
        self.reservation.record_usage(self.prompt_tokens);
    }

    /// One more token was generated (streaming), so a drop charges it too.
    pub fn generated_token(&mut self) {
        self.completion_tokens += 1;
        self.reservation.record_usage(self.prompt_tokens + self.completion_tokens);
    }

    /// The caller's budget as of admission (none when unmetered), for the response's rate-limit fields.
    pub fn status(&self) -> Option<&RateLimitStatus> {
        self.reservation.status()
    }

    /// Charges `actual` tokens and refunds the rest of the reservation.
    pub async fn settle(self, actual: u64) {
        let reserved = self.reservation.reserved();
        let refunded = self.reservation.settle(actual).await;
        if reserved > 0 {
            tracing::debug!(reserved, actual, refunded, "rate-limit reservation settled");
        }
    }
}
