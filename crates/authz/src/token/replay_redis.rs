//! [`RedisReplayStore`]: the DPoP proof ids, kept in Redis so every replica pointed at the same Redis
//! sees every proof. A proof used on one replica is then refused on all of them; with a store per
//! process a 3-replica deployment would accept each proof up to three times.
//!
//! One `SET <prefix>:dpop:<id> 1 NX PX <ms>` per proof: atomic, so two replicas racing with the same
//! proof cannot both win, and it expires on its own once the proof could no longer be accepted. The
//! key is a 16-byte hash of the key thumbprint and `jti` (base64url, 22 characters), so an attacker's
//! long `jti` cannot grow Redis's memory and the key is namespaced like the rate-limit keys
//! (`<prefix>:rl:…`). Memory is bounded by the proof rate times the proof lifetime.
//!
//! Any failure — Redis down, slow, out of memory — refuses the proof (503): a replay store that
//! cannot record must not accept. For the same reason Redis must not evict these keys: run it with
//! `maxmemory-policy noeviction` (the default), under which a full Redis refuses writes, which this
//! store turns into 503s, instead of forgetting live ids.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::token::replay::{ID_BYTES, Seen};

/// Why the Redis replay store could not answer; the proof is refused with 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The URL is unusable, Redis is unreachable or did not answer in time, or it refused the write.
    #[error("the DPoP replay store is unavailable: {0}")]
    Unavailable(String),
}

/// A lazy, self-healing connection to the Redis that holds the proof ids.
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// Prepares a connection to `url` (the rate limiter's `redis_url`, keys under the same `prefix`);
    /// nothing is dialled until the first proof, so a server starts while Redis is down and answers
    /// 503 to DPoP requests until it is back. Every call gives up after `timeout`. Needs a Tokio
    /// runtime.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, ReplayError> {
        let client = Client::open(url).map_err(|e| ReplayError::Unavailable(format!("redis_url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ReplayError::Unavailable(format!("redis: {e}")))?;
        Ok(Self { connection, prefix: prefix.to_string(), timeout })
    }

    /// Records `id` for `ttl` (at least a millisecond): [`Seen::First`] when no replica recorded it
    /// within its lifetime, [`Seen::Again`] when one did. Never [`Seen::Full`]: a full Redis is an
    /// error.
    pub async fn remember(&self, id: [u8; ID_BYTES], ttl: Duration) -> Result<Seen, ReplayError> {
        let key = self.key(id);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(1u8).arg("NX").arg("PX").arg(millis);
        let mut connection = self.connection.clone();
        let set = command.query_async::<Option<String>>(&mut connection);
        let answer = tokio::time::timeout(self.timeout, set)
            .await
            .map_err(|_| ReplayError::Unavailable(format!("redis did not answer within {:?}", self.timeout)))?
            .map_err(|e| ReplayError::Unavailable(format!("redis: {e}")))?;
        Ok(if answer.is_some() { Seen::First } else { Seen::Again })
    }

    /// `<prefix>:dpop:<base64url id>`.
    fn key(&self, id: [u8; ID_BYTES]) -> String {
        format!("{}:dpop:{}", self.prefix, URL_SAFE_NO_PAD.encode(id))
    }
}

#[cfg(test)]
#[path = "replay_redis_tests.rs"]
mod tests;
