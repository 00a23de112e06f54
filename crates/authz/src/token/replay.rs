//! [`ReplayStore`]: the DPoP proof ids (`jti`, with the key's thumbprint) seen within the window in
//! which a proof could still be accepted — every one of them, for all of that window.
//!
//! A cache that evicts under pressure would forget a live id once enough other proofs arrive, and the
//! replay after that would pass. This store never forgets an id before it expires: when it is full it
//! refuses new proofs (503, "try again"), which an honest client survives and a replay cannot use.
//! Memory is bounded by its capacity: with every id kept for the same window, expiries arrive in the
//! order the ids did, so a queue finds the expired ones at its front.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Bytes of an id kept: a SHA-256 prefix, as collision-resistant (2^64 work) as an id can need.
pub const ID_BYTES: usize = 16;

/// What [`ReplayStore::remember`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The id is new and now remembered.
    First,
    /// The id was seen within its window: a replay.
    Again,
    /// The store is full of live ids; nothing was remembered.
    Full,
}

/// Proof ids seen within the last `window` seconds, at most `capacity` of them.
#[derive(Debug)]
pub struct ReplayStore {
    capacity: usize,
    window: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ids: HashSet<[u8; ID_BYTES]>,
    /// (expiry, id), oldest first.
    order: VecDeque<(u64, [u8; ID_BYTES])>,
}

impl ReplayStore {
    /// Remembers ids for `window` seconds, at most `capacity` at once.
    pub fn new(capacity: usize, window: u64) -> Self {
        Self { capacity, window, state: Mutex::default() }
    }

    /// Records `id` seen at `now` (Unix seconds).
    pub fn remember(&self, id: [u8; ID_BYTES], now: u64) -> Seen {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(expiry, old)) = state.order.front() {
            if expiry > now {
                break;
            }
            state.order.pop_front();
            state.ids.remove(&old);
        }
        if state.ids.contains(&id) {
            return Seen::Again;
        }
        if state.ids.len() >= self.capacity {
            return Seen::Full;
        }
        state.ids.insert(id);
        state.order.push_back((now + self.window, id));
        Seen::First
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ids.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; ID_BYTES] {
        let mut id = [0; ID_BYTES];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn a_live_id_is_never_forgotten_however_many_others_come() {
        let store = ReplayStore::new(1_000, 120);
        assert_eq!(store.remember(id(0), 1_000), Seen::First);
        let mut full = 0;
        for n in 1..5_000 {
            full += usize::from(store.remember(id(n), 1_000) == Seen::Full);
        }
        assert_eq!(full, 5_000 - 1_000, "past the capacity new proofs are refused, not old ids dropped");
        assert_eq!(store.remember(id(0), 1_050), Seen::Again);
        assert_eq!(store.len(), 1_000);
    }

    /// Issue 19's acceptance at the store: a replay is still refused after a million other proofs.
    #[test]
    fn a_replay_is_refused_after_a_million_other_ids() {
        let store = ReplayStore::new(2_000_000, 121);
        assert_eq!(store.remember(id(u64::MAX), 1_000), Seen::First);
        let started = std::time::Instant::now();
        for n in 0..1_000_000 {
            assert_eq!(store.remember(id(n), 1_000 + n / 10_000), Seen::First);
        }
        eprintln!("1,000,000 ids recorded in {:?}", started.elapsed());
        assert_eq!(store.remember(id(u64::MAX), 1_100), Seen::Again);
        assert_eq!(store.len(), 1_000_001);
    }

    #[test]
    fn ids_expire_after_their_window_and_free_their_place() {
        let store = ReplayStore::new(2, 120);
        assert_eq!(store.remember(id(1), 0), Seen::First);
        assert_eq!(store.remember(id(2), 60), Seen::First);
        assert_eq!(store.remember(id(3), 119), Seen::Full);
        assert_eq!(store.remember(id(1), 119), Seen::Again);
        assert_eq!(store.remember(id(3), 120), Seen::First, "id 1 expired at 120");
        assert_eq!(store.remember(id(1), 121), Seen::Full);
        assert_eq!(store.remember(id(1), 180), Seen::First, "id 2 expired at 180");
    }
}
