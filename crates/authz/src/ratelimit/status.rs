//! What the limiter reports: a caller's [`RateLimitStatus`] (one [`Quota`] per dimension) and, when it
//! refuses, a [`RateLimitError`]. Headers, the usage endpoint and both backends speak these types.

use std::time::Duration;

use serde::Serialize;

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
