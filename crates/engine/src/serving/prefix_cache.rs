//! Prompts the scheduler prefilled recently, kept so that a new request starting with the same tokens
//! (the chat template's system prompt, the earlier turns of a conversation) copies their keys and values
//! instead of computing them again. With many short chat requests the prompts are most of the work: at
//! 8 concurrent streams the engine spent more time on prompt tokens than on generated ones.
//!
//! A copy is exact: position `i`'s keys and values depend only on tokens `0..=i`. Entries are copies,
//! never shared with running sequences, and their memory is bounded separately from the KV budget.
//! Each entry belongs to a scope ([`crate::GenerationRequest::prefix_scope`]) and serves only requests
//! of that scope: a reused prompt answers measurably sooner, so sharing entries across tenants would
//! let one learn from timing what another asked.

use std::collections::VecDeque;

use crate::llama::model::KvCache;

/// Shortest prefix worth copying: below this, computing the tokens is as cheap as finding them.
const MIN_REUSE: usize = 8;

/// Recently prefilled prompts and their caches, least recently used first.
pub(crate) struct PrefixCache {
    entries: VecDeque<Entry>,
    /// The most positions all entries together may hold (0 turns the cache off).
    max_positions: usize,
    held: usize,
}

struct Entry {
    scope: u64,
    tokens: Vec<u32>,
    cache: KvCache,
    /// Positions its memory holds (whole cache pages), what counts against `max_positions`.
    positions: usize,
}

impl PrefixCache {
    /// A cache holding at most `max_positions` positions in all.
    pub fn new(max_positions: usize) -> Self {
        Self { entries: VecDeque::new(), max_positions, held: 0 }
    }

    /// Remembers `prompt` for requests of `scope`; `cache` holds its keys and values (at least its first
    /// `prompt.len()` positions). Device caches, prompts shorter than [`MIN_REUSE`] and prompts larger
    /// than the whole cache are not kept.
    pub fn insert(&mut self, scope: u64, prompt: &[u32], cache: &KvCache) {
        if prompt.len() < MIN_REUSE || prompt.len() > self.max_positions {
            return;
        }
        // An entry this prompt extends (or repeats) is covered by the new one.
        if let Some(at) = self.entries.iter().position(|e| e.scope == scope && prompt.starts_with(&e.tokens)) {
            let old = self.entries.remove(at).map_or(0, |e| e.positions);
            self.held -= old;
        }
        let Some(copy) = cache.copy_prefix(prompt.len(), prompt.len()) else { return };
        let positions = copy.allocated_positions();
        self.held += positions;
        self.entries.push_back(Entry { scope, tokens: prompt.to_vec(), cache: copy, positions });
        while self.held > self.max_positions {
            let Some(evicted) = self.entries.pop_front() else { break };
            self.held -= evicted.positions;
        }
    }

    /// The longest remembered start of `prompt` in `scope` that leaves at least two tokens to compute: how many
    /// positions, and a new cache of `capacity` positions holding them. `None` when no entry shares at
    /// least [`MIN_REUSE`] tokens. Two, not one: the last prompt token's logits start generation, and a
    /// step of two or more tokens sums attention in the order a fresh prefill does (llama.cpp's multi-token
    /// order), so a reused prompt gives the same logits as a fresh one.
    pub fn lookup(&mut self, scope: u64, prompt: &[u32], capacity: usize) -> Option<(usize, KvCache)> {
        let (at, shared) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.scope == scope)
            .map(|(i, e)| (i, e.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count()))
            .max_by_key(|&(_, shared)| shared)?;
        let reuse = shared.min(prompt.len().saturating_sub(2));
        if reuse < MIN_REUSE {
            return None;
        }
        let entry = self.entries.remove(at)?;
        let cache = entry.cache.copy_prefix(reuse, capacity);
        self.entries.push_back(entry);
        Some((reuse, cache?))
    }
}
