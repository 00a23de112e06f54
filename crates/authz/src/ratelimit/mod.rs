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
mod limiter;
pub mod memory;
pub mod redis;
mod status;
pub mod tier;

pub use config::{Backend, BudgetKey, FailureMode, RateLimitConfig, TierLimits};
pub use limiter::{BackendHealth, RateLimiter, Reservation};
pub use memory::{ManualTime, MemoryStore};
pub use redis::RedisStore;
pub use status::{Quota, RateLimitError, RateLimitStatus};
pub use tier::{RateKey, Tier, Tiers};
