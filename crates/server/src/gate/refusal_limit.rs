//! [`RefusalLimit`]: a cheap limit, per peer address, on requests that authentication refuses.
//!
//! Checking a token costs something (parsing, a signature, perhaps a call to the authorization server),
//! and a peer that sends nothing but bad tokens is either broken or guessing. After
//! `max_auth_failures_per_minute_per_ip` refusals (burst included) its requests are answered 429 for a
//! short while without looking at their credentials at all. Counting uses `governor`'s keyed GCRA
//! limiter; the addresses sitting out their penalty live in a bounded cache, and the limiter forgets
//! quiet addresses as it goes, so a spread of addresses cannot grow either without bound.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::future::Cache;

/// How long a peer over its limit is answered 429 without a look at its credentials.
pub const PENALTY: Duration = Duration::from_secs(10);

/// Addresses sitting out a penalty at once, at most (the oldest are let go first).
const MAX_PENALIZED: u64 = 100_000;

/// Refusals counted between two clean-ups of the limiter's state.
const CLEANUP_EVERY: u32 = 4_096;

/// Per-address refusal counting and the penalty box.
pub struct RefusalLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    penalized: Cache<IpAddr, ()>,
    since_cleanup: AtomicU32,
}

impl std::fmt::Debug for RefusalLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalLimit").finish_non_exhaustive()
    }
}

impl RefusalLimit {
    /// At most `per_minute` refusals a minute per address (that many at once, too).
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            penalized: Cache::builder().max_capacity(MAX_PENALIZED).time_to_live(PENALTY).build(),
            since_cleanup: AtomicU32::new(0),
        }
    }

    /// Whether requests from `ip` are refused for now, unread.
    pub async fn is_penalized(&self, ip: IpAddr) -> bool {
        self.penalized.contains_key(&ip)
    }

    /// Counts one refused request from `ip`; past the limit the address sits out a [`PENALTY`].
    pub async fn refused(&self, ip: IpAddr) {
        if self.limiter.check_key(&ip).is_err() {
            if !self.penalized.contains_key(&ip) {
                tracing::warn!(peer = %ip, "too many refused requests from one address: refusing it unread for a while");
            }
            self.penalized.insert(ip, ()).await;
        }
        if self.since_cleanup.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_past_its_refusals_is_penalized_and_others_are_not() {
        let limit = RefusalLimit::new(NonZeroU32::new(5).unwrap());
        let (guesser, other): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..5 {
            limit.refused(guesser).await;
        }
        assert!(!limit.is_penalized(guesser).await, "the burst is allowed");
        limit.refused(guesser).await;
        assert!(limit.is_penalized(guesser).await);
        assert!(!limit.is_penalized(other).await);
    }
}
