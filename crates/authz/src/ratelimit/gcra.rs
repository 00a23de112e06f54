//! GCRA arithmetic shared by both backends (the Redis Lua script repeats it line for line).
//!
//! A bucket of `limit` units per `window` is one number, the theoretical arrival time (TAT): each
//! unit moves it forward by `interval = window / limit`, and `TAT - now` is how much of the window
//! is in use. `n` units fit when the TAT after them is at most one window ahead of now, so a fresh
//! caller may spend the whole budget at once and it then refills continuously. A refund moves the
//! TAT back (never before now). Times are microseconds as `f64`, exactly what Lua has.

use std::time::Duration;

use crate::ratelimit::config::TierLimits;
use crate::ratelimit::status::{Quota, RateLimitStatus};

/// Float slack, in microseconds, so `limit` units of `window / limit` fit exactly in `window`.
const EPSILON_US: f64 = 1e-3;

/// One dimension (requests or tokens) of a tier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub limit: u64,
    pub window_us: f64,
}

impl Bucket {
    pub fn requests(limits: &TierLimits) -> Self {
        Self { limit: limits.requests, window_us: limits.window_seconds as f64 * 1e6 }
    }

    pub fn tokens(limits: &TierLimits) -> Self {
        Self { limit: limits.tokens, window_us: limits.window_seconds as f64 * 1e6 }
    }

    pub fn interval_us(&self) -> f64 {
        self.window_us / self.limit as f64
    }

    /// The TAT after admitting `n` units, or how long until they would fit.
    pub fn admit(&self, tat: f64, now: f64, n: u64) -> Result<f64, f64> {
        let next = tat.max(now) + n as f64 * self.interval_us();
        let over = next - now - self.window_us;
        if over <= EPSILON_US { Ok(next) } else { Err(over) }
    }

    /// The TAT after handing `n` units back.
    pub fn refund(&self, tat: f64, now: f64, n: u64) -> f64 {
        (tat - n as f64 * self.interval_us()).max(now)
    }

    /// Limit, remaining units and time until full, from the part of the window in use.
    pub fn quota(&self, used_us: f64) -> Quota {
        let used_us = used_us.clamp(0.0, self.window_us);
        let free = ((self.window_us - used_us) / self.interval_us() + EPSILON_US).floor();
        Quota {
            limit: self.limit,
            remaining: (free.max(0.0) as u64).min(self.limit),
            reset: Duration::from_micros(used_us.ceil() as u64),
        }
    }
}

/// The status headers describe: both dimensions of one tier, from the parts of their windows in use.
pub(crate) fn status(tier: &str, limits: &TierLimits, used_requests_us: f64, used_tokens_us: f64) -> RateLimitStatus {
    RateLimitStatus {
        tier: tier.to_string(),
        window_seconds: limits.window_seconds,
        requests: Bucket::requests(limits).quota(used_requests_us),
        tokens: Bucket::tokens(limits).quota(used_tokens_us),
    }
}

/// A backend's answer, as parts of the window in use (microseconds) so both backends share the
/// reporting arithmetic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub used_requests_us: f64,
    pub used_tokens_us: f64,
    pub wait_us: f64,
}

impl Decision {
    pub(crate) fn allowed(used_requests_us: f64, used_tokens_us: f64) -> Self {
        Self { allowed: true, used_requests_us, used_tokens_us, wait_us: 0.0 }
    }

    pub(crate) fn denied(used_requests_us: f64, used_tokens_us: f64, wait_us: f64) -> Self {
        Self { allowed: false, used_requests_us, used_tokens_us, wait_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: f64 = 60e6;

    #[test]
    fn the_whole_budget_is_the_burst_and_it_refills_continuously() {
        let bucket = Bucket { limit: 10, window_us: MINUTE };
        let mut tat = 0.0;
        for _ in 0..10 {
            tat = bucket.admit(tat, 0.0, 1).expect("within the burst");
        }
        let wait = bucket.admit(tat, 0.0, 1).expect_err("the 11th");
        assert!((wait - 6e6).abs() < 1.0, "{wait}");
        assert_eq!(bucket.quota(tat).remaining, 0);
        // One interval later exactly one more fits.
        assert!(bucket.admit(tat, 6e6, 1).is_ok());
        assert_eq!(bucket.quota(tat - 6e6).remaining, 1);
    }

    #[test]
    fn refunds_move_the_tat_back_but_never_before_now() {
        let bucket = Bucket { limit: 1_000, window_us: MINUTE };
        let tat = bucket.admit(0.0, 0.0, 900).expect("fits");
        assert!(bucket.admit(tat, 0.0, 200).is_err());
        let tat = bucket.refund(tat, 0.0, 850);
        assert_eq!(bucket.quota(tat).remaining, 950);
        assert_eq!(bucket.refund(tat, 0.0, 10_000), 0.0);
        assert!(bucket.admit(0.0, 0.0, 1_001).is_err(), "more than the burst never fits");
    }

    #[test]
    fn quota_reports_reset_as_time_until_full() {
        let bucket = Bucket { limit: 1_000, window_us: MINUTE };
        let q = bucket.quota(30e6);
        assert_eq!((q.limit, q.remaining, q.reset), (1_000, 500, Duration::from_secs(30)));
        assert_eq!(bucket.quota(-5.0).remaining, 1_000);
    }
}
