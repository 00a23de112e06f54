//! A wall clock in whole Unix seconds that tests can drive.
//!
//! Every time-based rule in this crate (`exp`/`nbf`/`iat`, DPoP `iat` windows, the JWKS TTL and its
//! refetch throttle, introspection cache lifetimes) reads the time through [`Clock`], so tests can
//! prove a 30 s throttle or a 300 s TTL without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of "now" in Unix seconds: the system clock in production, a manual one in tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

/// Handle that moves a manual [`Clock`]; kept apart so production code cannot move time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock, used by the server.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until its [`ManualClock`] moves it.
    pub fn manual(start: u64) -> (Self, ManualClock) {
        let now = Arc::new(AtomicU64::new(start));
        (Self { manual: Some(now.clone()) }, ManualClock { now })
    }

    /// Current time in Unix seconds. A system clock before 1970 reads as 0, which fails every
    /// `exp` check rather than accepting tokens.
    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `secs`.
    pub fn set(&self, secs: u64) {
        self.now.store(secs, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual(1_000);
        assert_eq!(clock.now(), 1_000);
        hand.advance(30);
        assert_eq!(clock.now(), 1_030);
        hand.set(5);
        assert_eq!(clock.now(), 5);
        assert!(Clock::system().now() > 1_700_000_000);
    }
}
