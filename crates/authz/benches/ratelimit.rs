//! The cost of one rate-limit decision: in process, and in Redis on loopback (one Lua script call).
//!
//! `cargo bench -p llamagate-authz --bench ratelimit` (starts its own `redis-server` on a free port;
//! the Redis cases are skipped with a message when redis-server is not installed). "decision" is
//! one reserve that is charged in full (no refund call); "reserve+settle" adds the refund a request
//! with unused tokens costs.

use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use llamagate_authz::ratelimit::{FailureMode, MemoryStore, RedisStore, TierLimits};
use llamagate_authz::{RateKey, RateLimiter, Tier};

/// Large enough that no iteration is ever refused, so every sample measures an admitting decision.
fn roomy_tier() -> Tier {
    Tier {
        name: "bench".into(),
        limits: TierLimits {
            requests: 1 << 40,
            tokens: 1 << 50,
            window_seconds: 60,
            priority: 0,
            default_max_tokens: None,
        },
    }
}

fn bench_limiter(c: &mut Criterion, name: &str, limiter: &RateLimiter, runtime: &tokio::runtime::Runtime) {
    let (tier, key) = (roomy_tier(), RateKey::new("bench-user", "bench-client"));
    let mut group = c.benchmark_group(name);
    group.bench_function("decision", |b| {
        b.to_async(runtime).iter(|| async {
            let mut reservation = limiter.reserve(&key, &tier, 100).await.expect("admitted");
            reservation.record_usage(100);
        })
    });
    group.bench_function("reserve+settle", |b| {
        b.to_async(runtime).iter(|| async {
            let reservation = limiter.reserve(&key, &tier, 100).await.expect("admitted");
            reservation.settle(40).await
        })
    });
    // Many callers: the in-process map grows and the Redis keys spread.
    let keys: Vec<RateKey> = (0..10_000).map(|i| RateKey::new(&format!("user-{i}"), "bench-client")).collect();
    let mut next = 0;
    group.bench_function("decision, 10k callers", |b| {
        b.to_async(runtime).iter(|| {
            next = (next + 1) % keys.len();
            let key = &keys[next];
            let tier = &tier;
            async move {
                let mut reservation = limiter.reserve(key, tier, 100).await.expect("admitted");
                reservation.record_usage(100);
            }
        })
    });
    group.finish();
}

fn limiter_decision(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    bench_limiter(c, "memory", &RateLimiter::in_memory(MemoryStore::default()), &runtime);

    if Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("redis-server not installed: skipping the Redis cases (scripts/test.sh installs it)");
        return;
    }
    let redis = llamagate_testkit::RedisServer::start();
    let limiter = runtime.block_on(async {
        let store = RedisStore::connect(&redis.url(), "bench", Duration::from_secs(2)).expect("redis client");
        RateLimiter::redis(store, FailureMode::Closed)
    });
    bench_limiter(c, "redis-loopback", &limiter, &runtime);
}

criterion_group!(benches, limiter_decision);
criterion_main!(benches);
