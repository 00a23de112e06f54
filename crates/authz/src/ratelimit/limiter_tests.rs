//! [`RateLimiter`] reserve/settle against the in-process store with a hand-moved clock (no sleeping).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ratelimit::memory::ManualTime;

fn tier(requests: u64, tokens: u64) -> Tier {
    Tier { name: "t".into(), limits: TierLimits::per_minute(requests, tokens) }
}

fn limiter() -> (RateLimiter, ManualTime) {
    let (store, time) = MemoryStore::manual();
    (RateLimiter::in_memory(store), time)
}

#[tokio::test]
async fn exactly_the_request_limit_is_admitted_then_it_refills() {
    let (limiter, time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    for i in 0..10 {
        let r = limiter.reserve(&key, &tier, 1).await.expect("within the limit");
        assert_eq!(r.status().expect("metered").requests.remaining, 9 - i);
        assert_eq!(r.settle(1).await, 0);
    }
    match limiter.reserve(&key, &tier, 1).await {
        Err(RateLimitError::Exceeded { status, retry_after }) => {
            assert_eq!(status.requests.remaining, 0);
            assert_eq!(retry_after, Duration::from_secs(6));
        }
        other => panic!("expected Exceeded, got {other:?}"),
    }
    // Another caller is unaffected.
    assert!(limiter.reserve(&RateKey::new("bob", "app"), &tier, 1).await.is_ok());
    time.advance(Duration::from_secs(6));
    assert!(limiter.reserve(&key, &tier, 1).await.is_ok());
    assert!(limiter.reserve(&key, &tier, 1).await.is_err());
}

#[tokio::test]
async fn settling_refunds_the_unused_part() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(100, 1_000));
    let first = limiter.reserve(&key, &tier, 600).await.expect("fits");
    assert_eq!(first.status().expect("metered").tokens.remaining, 400);
    assert!(matches!(limiter.reserve(&key, &tier, 600).await, Err(RateLimitError::Exceeded { .. })));
    assert_eq!(first.settle(50).await, 550);
    assert_eq!(limiter.usage(&key, &tier).await.expect("usage").tokens.remaining, 950);
    assert!(limiter.reserve(&key, &tier, 600).await.is_ok(), "the refund made room");
}

#[tokio::test]
async fn a_dropped_reservation_charges_only_what_was_recorded() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(100, 1_000));
    let mut cancelled = limiter.reserve(&key, &tier, 500).await.expect("fits");
    cancelled.record_usage(120);
    drop(cancelled);
    assert_eq!(limiter.usage(&key, &tier).await.expect("usage").tokens.remaining, 880);
    drop(limiter.reserve(&key, &tier, 500).await.expect("fits"));
    let usage = limiter.usage(&key, &tier).await.expect("usage");
    assert_eq!((usage.tokens.remaining, usage.requests.remaining), (880, 98), "requests are never refunded");
}

#[tokio::test]
async fn more_than_the_burst_can_never_fit() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    match limiter.reserve(&key, &tier, 1_001).await {
        Err(RateLimitError::NeverFits { needed, status }) => {
            assert_eq!((needed, status.tokens.limit, status.requests.remaining), (1_001, 1_000, 10));
        }
        other => panic!("expected NeverFits, got {other:?}"),
    }
    assert!(limiter.reserve(&key, &tier, 1_000).await.is_ok(), "exactly the burst fits");
}

#[tokio::test]
async fn a_request_refused_on_tokens_spends_no_request() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    let _held = limiter.reserve(&key, &tier, 900).await.expect("fits");
    assert!(limiter.reserve(&key, &tier, 200).await.is_err());
    assert_eq!(limiter.usage(&key, &tier).await.expect("usage").requests.remaining, 9);
}

/// How many of 200 concurrent reservations of 10 tokens each, spread over `replicas`, a tier of 50
/// requests admits.
async fn admitted_of_two_hundred(replicas: &[Arc<RateLimiter>]) -> usize {
    // An hour-long window: the bucket does not visibly refill while the reservations run.
    let tier = Tier {
        name: "t".into(),
        limits: TierLimits {
            requests: 50,
            tokens: 1_000_000,
            window_seconds: 3600,
            priority: 0,
            default_max_tokens: None,
        },
    };
    let key = RateKey::new("alice", "app");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (limiter, key, tier) = (replicas[i % replicas.len()].clone(), key.clone(), tier.clone());
            tokio::spawn(async move { limiter.reserve(&key, &tier, 10).await.map(|r| r.settle(10)).is_ok() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.expect("task"));
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_admit_exactly_the_limit() {
    let (limiter, _time) = limiter();
    assert_eq!(admitted_of_two_hundred(&[Arc::new(limiter)]).await, 50);
}

/// The same against a real `redis-server`, with two limiters standing in for two replicas with their
/// own connections: the Lua script decides atomically, so they share the limit exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_one_redis_admit_exactly_the_limit() {
    let redis = llamagate_testkit::RedisServer::start();
    let replica = || {
        let store = RedisStore::connect(&redis.url(), "test", Duration::from_millis(500)).expect("client");
        Arc::new(RateLimiter::redis(store, FailureMode::Closed))
    };
    assert_eq!(admitted_of_two_hundred(&[replica(), replica()]).await, 50);
}

#[tokio::test]
async fn unmetered_reservations_report_nothing() {
    let r = Reservation::unmetered();
    assert!(r.status().is_none());
    assert_eq!(r.settle(10).await, 0);
}

#[tokio::test]
async fn extending_takes_tokens_but_no_second_request() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    let mut admitted = limiter.reserve(&key, &tier, 0).await.expect("a request slot");
    admitted.extend(300).await.expect("the counted tokens fit");
    assert_eq!(admitted.reserved(), 300);
    let status = admitted.status().expect("metered");
    assert_eq!((status.requests.remaining, status.tokens.remaining), (9, 700), "one request, 300 tokens");
    assert_eq!(admitted.settle(100).await, 200);
    let usage = limiter.usage(&key, &tier).await.expect("usage");
    assert_eq!((usage.requests.remaining, usage.tokens.remaining), (9, 900));
}

#[tokio::test]
async fn a_refused_extension_keeps_the_request_spent_and_charges_what_was_recorded() {
    let (limiter, _time) = limiter();
    let (key, tier) = (RateKey::new("alice", "app"), tier(10, 1_000));
    let _other = limiter.reserve(&key, &tier, 800).await.expect("fits");
    let mut admitted = limiter.reserve(&key, &tier, 0).await.expect("a request slot");
    assert!(matches!(admitted.extend(300).await, Err(RateLimitError::Exceeded { .. })));
    assert!(matches!(admitted.extend(1_001).await, Err(RateLimitError::NeverFits { .. })));
    assert_eq!(admitted.reserved(), 0, "nothing was added");
    drop(admitted);
    let usage = limiter.usage(&key, &tier).await.expect("usage");
    assert_eq!((usage.requests.remaining, usage.tokens.remaining), (8, 200), "both requests stay spent");
}
