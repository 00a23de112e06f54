//! The cost of recording one DPoP proof id: in process, and in Redis on loopback (one `SET NX PX`).
//!
//! `cargo bench -p llamagate-authz --bench dpop_replay` (starts its own `redis-server` on a free port;
//! the Redis cases are skipped with a message when redis-server is not installed).
//!
//! - `memory/record`: [`ReplayStore::remember`] in steady state (ids expire as fast as they arrive,
//!   about 200,000 live);
//! - `redis-loopback/record`: [`RedisReplayStore::remember`], one request at a time: the latency a
//!   DPoP request pays;
//! - `redis-loopback/record, 64 in flight`: the same with 64 requests in flight on one connection, as
//!   a busy replica has them; the time per id is the inverse of the throughput.

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llamagate_authz::token::replay::{ID_BYTES, ReplayStore};
use llamagate_authz::token::replay_redis::RedisReplayStore;

/// Requests in flight in the throughput case.
const IN_FLIGHT: u64 = 64;

fn id(n: u64) -> [u8; ID_BYTES] {
    let mut id = [0; ID_BYTES];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

fn replay(c: &mut Criterion) {
    let store = ReplayStore::new(1_000_000, 2);
    let mut n = 0u64;
    c.benchmark_group("memory").bench_function("record", |b| {
        b.iter(|| {
            n += 1;
            store.remember(id(n), n / 100_000)
        })
    });

    if Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("redis-server not installed: skipping the Redis cases (scripts/test.sh installs it)");
        return;
    }
    let redis = llamagate_testkit::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let store = runtime.block_on(async {
        RedisReplayStore::connect(&redis.url(), "bench", Duration::from_secs(2)).expect("redis client")
    });
    let ttl = Duration::from_secs(10);
    let mut group = c.benchmark_group("redis-loopback");
    let mut n = 0u64;
    group.bench_function("record", |b| {
        b.to_async(&runtime).iter(|| {
            n += 1;
            let (store, id) = (&store, id(n));
            async move { store.remember(id, ttl).await.expect("recorded") }
        })
    });
    let mut base = 1u64 << 40;
    group.bench_function("record, 64 in flight", |b| {
        b.iter_custom(|iters| {
            let first = base;
            base += iters;
            runtime.block_on(async {
                let started = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for lane in 0..IN_FLIGHT {
                    let store = store.clone();
                    tasks.spawn(async move {
                        for n in (lane..iters).step_by(IN_FLIGHT as usize) {
                            store.remember(id(first + n), ttl).await.expect("recorded");
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("task");
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
