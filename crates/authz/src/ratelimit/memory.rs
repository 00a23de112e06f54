//! The in-process backend: one pair of TATs per key behind a mutex.
//!
//! Why not `governor`: its GCRA state cannot be read without spending a cell (the usage endpoint
//! and the headers need "remaining"), cannot be moved back (refunds are the point of reserve/settle)
//! and checks one quota at a time, while a reservation must take a request *and* its tokens
//! atomically or neither. Those three are the whole algorithm, so the arithmetic is ours
//! (`gcra`, the same as the Redis script) and the store is a map. The critical section is a
//! few float operations; entries whose buckets have refilled completely are swept as the map grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::ratelimit::config::TierLimits;
use crate::ratelimit::gcra::{Bucket, Decision};
use crate::ratelimit::tier::RateKey;

/// A map is swept of full buckets when it grows past this many keys (then past twice its live size).
const FIRST_SWEEP: usize = 4_096;

/// Where "now" comes from: a monotonic clock, or a hand-moved one in tests.
#[derive(Clone, Debug)]
enum Time {
    Monotonic(Instant),
    Manual(Arc<AtomicU64>),
}

/// Moves a [`MemoryStore`]'s manual clock (tests and benchmarks).
#[derive(Clone, Debug)]
pub struct ManualTime(Arc<AtomicU64>);

impl ManualTime {
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_micros() as u64, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<RateKey, (f64, f64)>,
    sweep_at: usize,
}

/// Buckets of this process.
#[derive(Debug)]
pub struct MemoryStore {
    time: Time,
    buckets: Mutex<Buckets>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_time(Time::Monotonic(Instant::now()))
    }
}

impl MemoryStore {
    /// A store whose time moves only through the returned handle.
    pub fn manual() -> (Self, ManualTime) {
        let now = Arc::new(AtomicU64::new(0));
        (Self::with_time(Time::Manual(now.clone())), ManualTime(now))
    }

    fn with_time(time: Time) -> Self {
        Self { time, buckets: Mutex::new(Buckets { map: HashMap::new(), sweep_at: FIRST_SWEEP }) }
    }

    fn now_us(&self) -> f64 {
        match &self.time {
            Time::Monotonic(origin) => origin.elapsed().as_micros() as f64,
            Time::Manual(now) => now.load(Ordering::SeqCst) as f64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // A panic while holding the lock cannot leave the floats half-written; keep serving.
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `requests` requests (1, or 0 to add tokens to an admitted request) and `tokens` tokens if
    /// both fit; `peek` only reads.
    pub(crate) fn reserve(
        &self,
        key: &RateKey,
        limits: &TierLimits,
        requests: u64,
        tokens: u64,
        peek: bool,
    ) -> Decision {
        let (req, tok) = (Bucket::requests(limits), Bucket::tokens(limits));
        let now = self.now_us();
        let mut buckets = self.lock();
        let (req_tat, tok_tat) = buckets.map.get(key).copied().unwrap_or((now, now));
        if peek {
            return Decision::allowed(req_tat - now, tok_tat - now);
        }
        match (req.admit(req_tat, now, requests), tok.admit(tok_tat, now, tokens)) {
            (Ok(r), Ok(t)) => {
                buckets.map.insert(key.clone(), (r, t));
                if buckets.map.len() >= buckets.sweep_at {
                    buckets.map.retain(|_, (r, t)| r.max(*t) > now);
                    buckets.sweep_at = FIRST_SWEEP.max(buckets.map.len() * 2);
                }
                Decision::allowed(r - now, t - now)
            }
            (r, t) => {
                Decision::denied(req_tat - now, tok_tat - now, r.err().unwrap_or(0.0).max(t.err().unwrap_or(0.0)))
            }
        }
    }

    /// Hands `tokens` back to the key's token bucket.
    pub(crate) fn refund(&self, key: &RateKey, limits: &TierLimits, tokens: u64) {
        let bucket = Bucket::tokens(limits);
        let now = self.now_us();
        if let Some((_, tok_tat)) = self.lock().map.get_mut(key) {
            *tok_tat = bucket.refund(*tok_tat, now, tokens);
        }
    }
}
