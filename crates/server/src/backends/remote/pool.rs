//! [`Pool`]: the base URLs of one remote provider, each with its count of outstanding requests and a
//! circuit breaker.
//!
//! **Balancing**: a request goes to the upstream with the fewest requests in flight (a stream counts
//! until it ends), ties broken round-robin — the least-outstanding rule keeps a slow replica from
//! collecting a queue while a fast one idles, without any load report from the upstreams.
//!
//! **Breaker**, per upstream: `breaker_failures` failures in a row (connect errors, timeouts, 5xx) open
//! it; while open the upstream gets no requests; after `breaker_cooldown` one trial request is let
//! through (half-open) — its success closes the breaker, its failure opens it for another cooldown.
//! A 429 or a 4xx is not a failure: the upstream answered.
//!
//! **Health checks** ([`Pool::probed`], sent by [`super::health`]): a failed probe opens the breaker at
//! once and keeps it open — no trial request — until a probe passes, which closes it. A dead upstream is
//! thus skipped before a caller pays for finding out, and comes back without a caller paying the trial.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One provider's upstreams.
#[derive(Debug)]
pub struct Pool {
    upstreams: Vec<Upstream>,
    /// Where the round-robin tie-break starts next.
    next: AtomicUsize,
    failures_to_open: u32,
    cooldown: Duration,
}

#[derive(Debug)]
struct Upstream {
    base_url: String,
    outstanding: AtomicUsize,
    breaker: Mutex<Breaker>,
}

#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    /// Set while open: no requests until then.
    open_until: Option<Instant>,
    /// A half-open trial request is in flight: the others keep away until it answers.
    trial: bool,
    /// What the last health probe said.
    probe: Probe,
}

/// The last health probe's answer for one upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Probe {
    /// Not probed (health checks off, or none answered yet).
    #[default]
    Unknown,
    /// It answered.
    Passing,
    /// It did not (connect error, timeout, 5xx): its breaker stays open until a probe passes.
    Failing,
}

impl Probe {
    /// The state as `/v1/providers` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Passing => "passing",
            Self::Failing => "failing",
        }
    }
}

/// What one upstream's breaker says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Open, cooldown over: the next request is a trial.
    HalfOpen,
    /// Open: no requests.
    Open,
}

impl BreakerState {
    /// The state as `/v1/providers` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            _ if self.probe == Probe::Failing => BreakerState::Open,
            None => BreakerState::Closed,
            Some(until) if now >= until && !self.trial => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }
}

/// A request's hold on one upstream: counted as outstanding until dropped. Report how it went with
/// [`Lease::succeeded`] or [`Lease::failed`]; a lease dropped without either (a client that went away)
/// leaves the breaker as it was, but ends a half-open trial so another can run.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

/// A snapshot of one upstream, for `/v1/providers` and `/v1/health`.
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    /// Its position in `base_url` (the URL itself is the operator's business).
    pub index: usize,
    /// Its breaker.
    pub breaker: BreakerState,
    /// Requests in flight on it.
    pub outstanding: usize,
    /// Failures in a row so far.
    pub failures_in_a_row: u32,
    /// The last health probe's answer.
    pub probe: Probe,
}

impl Pool {
    /// A pool over `base_urls` (at least one).
    pub fn new(base_urls: &[String], failures_to_open: u32, cooldown: Duration) -> Arc<Self> {
        let upstreams = base_urls
            .iter()
            .map(|url| Upstream {
                base_url: url.clone(),
                outstanding: AtomicUsize::new(0),
                breaker: Mutex::new(Breaker::default()),
            })
            .collect();
        Arc::new(Self { upstreams, next: AtomicUsize::new(0), failures_to_open: failures_to_open.max(1), cooldown })
    }

    /// Takes the upstream with the fewest outstanding requests among those whose breaker lets a request
    /// through; `None` while every breaker is open.
    pub fn acquire(self: &Arc<Self>) -> Option<Lease> {
        let now = Instant::now();
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, usize, BreakerState)> = None;
        for offset in 0..n {
            let index = (start + offset) % n;
            let upstream = &self.upstreams[index];
            let state = lock(&upstream.breaker).state(now);
            if state == BreakerState::Open {
                continue;
            }
            let outstanding = upstream.outstanding.load(Ordering::Relaxed);
            // A half-open upstream is tried only when no closed one is free of work: a trial should not
            // take traffic the healthy upstreams can serve at once.
            let rank = outstanding + usize::from(state == BreakerState::HalfOpen) * n;
            if best.is_none_or(|(_, best_rank, _)| rank < best_rank) {
                best = Some((index, rank, state));
            }
        }
        let (index, _, state) = best?;
        let upstream = &self.upstreams[index];
        if state == BreakerState::HalfOpen {
            let mut breaker = lock(&upstream.breaker);
            // Another request may have taken the trial since the look above.
            if breaker.state(Instant::now()) != BreakerState::HalfOpen {
                return None;
            }
            breaker.trial = true;
        }
        upstream.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Lease { pool: self.clone(), index })
    }

    /// When the soonest open breaker lets a trial through (for `Retry-After` when none is available).
    pub fn next_trial_in(&self) -> Duration {
        let now = Instant::now();
        self.upstreams
            .iter()
            .filter_map(|u| lock(&u.breaker).open_until)
            .map(|until| until.saturating_duration_since(now))
            .min()
            .unwrap_or_default()
    }

    /// The pool's state in one word: `OK` while every breaker is closed (or half-open: about to be
    /// tried), `Error` while all are open, `Degraded` between.
    pub fn health(&self) -> &'static str {
        let states = self.status();
        let open = states.iter().filter(|u| u.breaker == BreakerState::Open).count();
        match open {
            0 => "OK",
            n if n == states.len() => "Error",
            _ => "Degraded",
        }
    }

    /// The upstreams' roots, in order, for the health probes.
    pub fn base_urls(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|u| u.base_url.as_str())
    }

    /// Takes a health probe's answer for upstream `index`: a failing one opens its breaker until a
    /// probe passes; a passing one closes a breaker it finds open.
    pub fn probed(&self, index: usize, passing: bool) {
        let Some(upstream) = self.upstreams.get(index) else { return };
        let mut breaker = lock(&upstream.breaker);
        let was = breaker.state(Instant::now());
        if passing {
            if was != BreakerState::Closed {
                tracing::info!(upstream = index, "upstream health check passed; circuit closed");
                *breaker = Breaker::default();
            }
            breaker.probe = Probe::Passing;
        } else {
            if breaker.probe != Probe::Failing {
                tracing::warn!(upstream = index, "upstream health check failed; circuit opened");
            }
            breaker.probe = Probe::Failing;
            breaker.open_until = Some(Instant::now() + self.cooldown);
        }
    }

    /// Every upstream's state, in `base_url` order.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        let now = Instant::now();
        self.upstreams
            .iter()
            .enumerate()
            .map(|(index, u)| {
                let breaker = lock(&u.breaker);
                UpstreamStatus {
                    index,
                    breaker: breaker.state(now),
                    outstanding: u.outstanding.load(Ordering::Relaxed),
                    failures_in_a_row: breaker.failures_in_a_row,
                    probe: breaker.probe,
                }
            })
            .collect()
    }
}

impl Lease {
    /// The upstream's OpenAI-compatible root.
    pub fn base_url(&self) -> &str {
        &self.upstream().base_url
    }

    /// The upstream's position in the pool (what logs and status name it by).
    pub fn index(&self) -> usize {
        self.index
    }

    fn upstream(&self) -> &Upstream {
        &self.pool.upstreams[self.index]
    }

    /// The upstream answered: its breaker closes (what the probes said stays until the next one).
    pub fn succeeded(&self) {
        let mut breaker = lock(&self.upstream().breaker);
        *breaker = Breaker { probe: breaker.probe, ..Breaker::default() };
    }

    /// The upstream failed (connect error, timeout, 5xx, a broken stream): one more failure in a row,
    /// and the breaker opens at the threshold — at once when this was the half-open trial.
    pub fn failed(&self) {
        let mut breaker = lock(&self.upstream().breaker);
        breaker.failures_in_a_row = breaker.failures_in_a_row.saturating_add(1);
        let was_trial = std::mem::replace(&mut breaker.trial, false);
        if was_trial || breaker.failures_in_a_row >= self.pool.failures_to_open {
            if breaker.open_until.is_none() || was_trial {
                tracing::warn!(upstream = self.index, failures = breaker.failures_in_a_row, "upstream circuit opened");
            }
            breaker.open_until = Some(Instant::now() + self.pool.cooldown);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstream().outstanding.fetch_sub(1, Ordering::Relaxed);
        lock(&self.upstream().breaker).trial = false;
    }
}

fn lock(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    // A poisoned lock only means a thread panicked mid-update; the counts are still usable.
    breaker.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, failures: u32, cooldown_ms: u64) -> Arc<Pool> {
        let urls: Vec<String> = (0..n).map(|i| format!("http://127.0.0.1:{}/v1", 9000 + i)).collect();
        Pool::new(&urls, failures, Duration::from_millis(cooldown_ms))
    }

    #[test]
    fn requests_go_to_the_upstream_with_the_fewest_outstanding() {
        let pool = pool(3, 3, 1000);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        let c = pool.acquire().unwrap();
        let mut held: Vec<usize> = [&a, &b, &c].iter().map(|l| l.index()).collect();
        held.sort();
        assert_eq!(held, [0, 1, 2], "one each before any gets a second");
        let free = b.index();
        drop(b);
        assert_eq!(pool.acquire().unwrap().index(), free);
    }

    #[test]
    fn failures_open_the_breaker_and_a_trial_closes_it() {
        let pool = pool(2, 2, 30);
        let fail_first = |pool: &Arc<Pool>| {
            loop {
                let lease = pool.acquire().unwrap();
                if lease.index() == 0 {
                    lease.failed();
                    break;
                }
            }
        };
        fail_first(&pool);
        assert_eq!(pool.status()[0].breaker, BreakerState::Closed, "one failure is not enough");
        fail_first(&pool);
        assert_eq!(pool.status()[0].breaker, BreakerState::Open);
        for _ in 0..5 {
            assert_eq!(pool.acquire().unwrap().index(), 1, "an open upstream gets nothing");
        }
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(pool.status()[0].breaker, BreakerState::HalfOpen);
        // The healthy upstream is busy: the trial goes to the half-open one, and only one trial at a time.
        let busy = pool.acquire().unwrap();
        assert_eq!(busy.index(), 1);
        let _busy2 = pool.acquire().unwrap();
        let trial = pool.acquire().unwrap();
        assert_eq!(trial.index(), 0);
        assert_eq!(pool.status()[0].breaker, BreakerState::Open, "no second trial while one runs");
        trial.succeeded();
        drop(trial);
        assert_eq!(pool.status()[0].breaker, BreakerState::Closed);
    }

    #[test]
    fn a_failing_probe_keeps_the_upstream_out_until_a_probe_passes() {
        let pool = pool(2, 3, 10);
        pool.probed(0, false);
        assert_eq!((pool.status()[0].breaker, pool.status()[0].probe), (BreakerState::Open, Probe::Failing));
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..4 {
            assert_eq!(pool.acquire().unwrap().index(), 1, "no trial past the cooldown while the probe fails");
        }
        assert_eq!(pool.health(), "Degraded");
        pool.probed(0, true);
        assert_eq!((pool.status()[0].breaker, pool.status()[0].probe), (BreakerState::Closed, Probe::Passing));
        let leases: Vec<Lease> = (0..2).map(|_| pool.acquire().unwrap()).collect();
        assert!(leases.iter().any(|l| l.index() == 0), "back in the pool");
        // A passing probe also closes a breaker that requests opened.
        for lease in &leases {
            if lease.index() == 1 {
                for _ in 0..3 {
                    lease.failed();
                }
            }
        }
        assert_eq!(pool.status()[1].breaker, BreakerState::Open);
        pool.probed(1, true);
        assert_eq!(pool.status()[1].breaker, BreakerState::Closed);
    }

    #[test]
    fn a_failed_trial_reopens_at_once_and_a_pool_of_open_breakers_has_nothing() {
        let pool = pool(1, 1, 20);
        pool.acquire().unwrap().failed();
        assert!(pool.acquire().is_none());
        assert!(pool.next_trial_in() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        let trial = pool.acquire().unwrap();
        trial.failed();
        drop(trial);
        assert!(pool.acquire().is_none(), "the failed trial opened the breaker again");
    }
}
