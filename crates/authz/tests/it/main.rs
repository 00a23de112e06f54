//! The crate's one integration-test binary.
//!
//! The Redis backend against a real `redis-server` started on a free loopback port: the same
//! reserve/settle rules as in process and the failure modes once Redis is gone (atomicity under
//! concurrency is checked beside the limiter, `ratelimit/limiter_tests.rs`). `scripts/test.sh` installs
//! redis-server; without it these tests fail and say so.

use std::time::Duration;

use llamagate_authz::ratelimit::{FailureMode, RedisStore, TierLimits};
use llamagate_authz::{RateKey, RateLimitError, RateLimiter, Tier};
use llamagate_testkit::RedisServer;

fn limiter(redis: &RedisServer, mode: FailureMode) -> RateLimiter {
    let store = RedisStore::connect(&redis.url(), "test", Duration::from_millis(500)).expect("client");
    RateLimiter::redis(store, mode)
}

fn tier(requests: u64, tokens: u64) -> Tier {
    // An hour-long window: the buckets do not visibly refill while a test runs.
    Tier {
        name: "t".into(),
        limits: TierLimits { requests, tokens, window_seconds: 3600, priority: 0, default_max_tokens: None },
    }
}

#[tokio::test]
async fn reserve_settle_and_never_fit_behave_as_in_process() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, FailureMode::Closed);
    let (key, tier) = (RateKey::new("alice", "app"), tier(3, 1_000));
    let first = limiter.reserve(&key, &tier, 600).await.expect("fits");
    assert_eq!(first.status().expect("metered").tokens.remaining, 400);
    assert!(matches!(limiter.reserve(&key, &tier, 600).await, Err(RateLimitError::Exceeded { .. })));
    assert_eq!(first.settle(100).await, 500);
    let usage = limiter.usage(&key, &tier).await.expect("usage");
    assert_eq!((usage.tokens.remaining, usage.requests.remaining), (900, 2));
    let mut dropped = limiter.reserve(&key, &tier, 500).await.expect("fits after the refund");
    dropped.record_usage(50);
    drop(dropped);
    assert!(matches!(limiter.reserve(&key, &tier, 1_001).await, Err(RateLimitError::NeverFits { .. })));
    let _last = limiter.reserve(&key, &tier, 1).await.expect("the third request");
    match limiter.reserve(&key, &tier, 1).await {
        Err(RateLimitError::Exceeded { status, retry_after }) => {
            assert_eq!(status.requests.remaining, 0);
            assert!(retry_after > Duration::from_secs(1_000), "{retry_after:?}");
        }
        other => panic!("expected Exceeded, got {other:?}"),
    }
    // The drop's refund runs in the background; it lands eventually.
    for _ in 0..100 {
        if limiter.usage(&key, &tier).await.expect("usage").tokens.remaining >= 850 - 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the dropped reservation was never refunded");
}

#[tokio::test]
async fn extending_an_admitted_request_takes_tokens_only() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, FailureMode::Closed);
    let (key, tier) = (RateKey::new("alice", "app"), tier(3, 1_000));
    let mut admitted = limiter.reserve(&key, &tier, 0).await.expect("a request slot");
    admitted.extend(700).await.expect("fits");
    let status = admitted.status().expect("metered");
    assert_eq!((status.requests.remaining, status.tokens.remaining), (2, 300));
    let mut second = limiter.reserve(&key, &tier, 0).await.expect("a second slot");
    assert!(matches!(second.extend(400).await, Err(RateLimitError::Exceeded { .. })));
    drop(second);
    assert_eq!(admitted.settle(700).await, 0);
    let usage = limiter.usage(&key, &tier).await.expect("usage");
    assert_eq!((usage.requests.remaining, usage.tokens.remaining), (1, 300), "two requests, 700 tokens");
}

#[tokio::test]
async fn an_unreachable_redis_fails_closed_or_open_as_configured() {
    let redis = RedisServer::start();
    let (closed, open) = (limiter(&redis, FailureMode::Closed), limiter(&redis, FailureMode::Open));
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    assert!(closed.health().await.reachable);
    assert!(closed.reserve(&key, &tier, 1).await.is_ok());
    redis.kill();
    assert!(matches!(closed.reserve(&key, &tier, 1).await, Err(RateLimitError::Unavailable(_))));
    let health = closed.health().await;
    assert!(!health.reachable && health.error.is_some(), "{health:?}");
    let admitted = open.reserve(&key, &tier, 1).await.expect("fail-open admits");
    assert!(admitted.status().is_none(), "unmetered");
}
