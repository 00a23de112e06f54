//! The Redis backend: every check-and-reserve is one Lua script (`gcra.lua`), so concurrent
//! requests on any number of replicas see one bucket and no read-modify-write race exists.
//!
//! Keys are `<prefix>:rl:{<caller hash>}:req` and `…:tok`; the braces are a Redis Cluster hash tag
//! that puts a caller's two keys in one slot, which a multi-key script needs. Each key expires when
//! its bucket would be full again, so idle callers cost no memory. The clock is Redis's `TIME`, one
//! clock for all replicas. Every call has a hard timeout: an unreachable Redis must turn into the
//! configured failure mode quickly, not into hung requests.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use crate::ratelimit::config::TierLimits;
use crate::ratelimit::gcra::{Bucket, Decision};
use crate::ratelimit::status::RateLimitError;
use crate::ratelimit::tier::RateKey;

/// What the script does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Reserve,
    /// Takes tokens only, for a request already admitted.
    Extend,
    Peek,
    Refund,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Extend => "extend",
            Self::Peek => "peek",
            Self::Refund => "refund",
        }
    }
}

/// A connection (re-established on failure) and the script.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    script: Script,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a lazy connection: nothing is dialled until the first call, so a server can start
    /// while Redis is down (and then answers according to the failure mode). Needs a Tokio runtime.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, RateLimitError> {
        let client = Client::open(url).map_err(|e| RateLimitError::Unavailable(format!("redis_url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RateLimitError::Unavailable(format!("redis: {e}")))?;
        Ok(Self { connection, script: Script::new(include_str!("gcra.lua")), prefix: prefix.to_string(), timeout })
    }

    /// Runs the script for `key`; any failure (refused, timed out, script error) is `Unavailable`.
    pub(crate) async fn run(
        &self,
        op: Op,
        key: &RateKey,
        limits: &TierLimits,
        tokens: u64,
    ) -> Result<Decision, RateLimitError> {
        let (req, tok) = (Bucket::requests(limits), Bucket::tokens(limits));
        let base = format!("{}:rl:{{{}}}", self.prefix, key.as_str());
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("{base}:req"))
            .key(format!("{base}:tok"))
            .arg(op.as_str())
            .arg(req.interval_us())
            .arg(req.window_us)
            .arg(tok.interval_us())
            .arg(tokens);
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<(u8, i64, i64, i64)>(&mut connection);
        let (allowed, used_req, used_tok, wait) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RateLimitError::Unavailable(format!("redis did not answer within {:?}", self.timeout)))?
            .map_err(|e| RateLimitError::Unavailable(format!("redis: {e}")))?;
        let (used_req, used_tok) = (used_req as f64, used_tok as f64);
        Ok(if allowed == 1 {
            Decision::allowed(used_req, used_tok)
        } else {
            Decision::denied(used_req, used_tok, wait as f64)
        })
    }

    /// `PING` within the timeout: what health reports.
    pub async fn ping(&self) -> Result<(), RateLimitError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RateLimitError::Unavailable(format!("redis: {e}"))),
            Err(_) => Err(RateLimitError::Unavailable(format!("redis did not answer within {:?}", self.timeout))),
        }
    }
}
