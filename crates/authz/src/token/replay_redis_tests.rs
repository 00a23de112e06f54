//! The Redis replay store against a real `redis-server` (testkit): two connections play two replicas.

use std::time::{Duration, Instant};

use llamagate_testkit::RedisServer;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

fn id(n: u64) -> [u8; ID_BYTES] {
    let mut id = [0; ID_BYTES];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

fn replica(redis: &RedisServer) -> RedisReplayStore {
    RedisReplayStore::connect(&redis.url(), "test", TIMEOUT).expect("connect")
}

#[tokio::test]
async fn an_id_seen_by_one_replica_is_a_replay_on_another_until_it_expires() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis), replica(&redis));
    let ttl = Duration::from_millis(300);
    assert_eq!(a.remember(id(1), ttl).await, Ok(Seen::First));
    assert_eq!(b.remember(id(1), ttl).await, Ok(Seen::Again), "the other replica sees it");
    assert_eq!(a.remember(id(1), ttl).await, Ok(Seen::Again));
    assert_eq!(b.remember(id(2), ttl).await, Ok(Seen::First));

    // One short, namespaced key per id, expiring on its own.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connection");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await.expect("keys");
    keys.sort();
    assert_eq!(keys, ["test:dpop:AAAAAAAAAAEAAAAAAAAAAA", "test:dpop:AAAAAAAAAAIAAAAAAAAAAA"]);
    let ttl_ms: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut connection).await.expect("pttl");
    assert!((1..=300).contains(&ttl_ms), "{ttl_ms}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.remember(id(1), ttl).await, Ok(Seen::First), "expired with the proof's lifetime");
}

/// Issue 19's acceptance through Redis: a replay is refused on either replica after a million other
/// proofs. The first 50,000 go through [`RedisReplayStore::remember`] from 128 concurrent callers on
/// two replicas (as many requests in flight would; this measures the store's rate, about 30,000/s in
/// a debug build on 2 shared cores, so a million that way would take 35-40 s of CI time, and 10 s
/// even pipelined from the test). The other 950,000 are written by a server-side script under the
/// store's namespace with the same `SET NX PX` and lifetime (22 hex digits where the store writes 22
/// base64url characters), so Redis holds a million live ids when the replay is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_refused_after_a_million_other_proofs() {
    const THROUGH_STORE: u64 = 50_000;
    const OTHERS: u64 = 1_000_000;
    const CALLERS: u64 = 128;
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis), replica(&redis));
    let ttl = Duration::from_secs(120);
    assert_eq!(a.remember(id(u64::MAX), ttl).await, Ok(Seen::First));

    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let store = if caller % 2 == 0 { a.clone() } else { b.clone() };
        callers.spawn(async move {
            for n in (caller..THROUGH_STORE).step_by(CALLERS as usize) {
                assert_eq!(store.remember(id(n), ttl).await, Ok(Seen::First), "id {n}");
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("caller");
    }
    let elapsed = started.elapsed();
    let rate = THROUGH_STORE as f64 / elapsed.as_secs_f64();
    eprintln!("{THROUGH_STORE} proofs through the store in {elapsed:?} ({rate:.0}/s)");

    let started = Instant::now();
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connection");
    // Server-side, so the test does not spend its time encoding commands in a debug build.
    let fill = redis::Script::new(
        "for n = tonumber(ARGV[1]), tonumber(ARGV[2]) do \
           redis.call('SET', KEYS[1] .. string.format('%022x', n), 1, 'NX', 'PX', ARGV[3]) end",
    );
    for first in (THROUGH_STORE..OTHERS).step_by(10_000) {
        let last = (first + 10_000).min(OTHERS) - 1;
        let mut invocation = fill.prepare_invoke();
        invocation.key("test:dpop:").arg(first).arg(last).arg(ttl.as_millis() as u64);
        invocation.invoke_async::<()>(&mut connection).await.expect("fill");
    }
    eprintln!("{} more proof ids written in {:?}", OTHERS - THROUGH_STORE, started.elapsed());
    let live: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await.expect("dbsize");
    assert_eq!(live, OTHERS + 1);

    assert_eq!(b.remember(id(u64::MAX), ttl).await, Ok(Seen::Again));
    assert_eq!(a.remember(id(u64::MAX), ttl).await, Ok(Seen::Again));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_never_a_first_sighting() {
    let redis = RedisServer::start();
    let store = RedisReplayStore::connect(&redis.url(), "test", Duration::from_millis(500)).expect("connect");
    assert_eq!(store.remember(id(1), Duration::from_secs(60)).await, Ok(Seen::First));
    redis.kill();
    for n in [1, 2] {
        let started = Instant::now();
        let answer = store.remember(id(n), Duration::from_secs(60)).await;
        assert!(matches!(answer, Err(ReplayError::Unavailable(_))), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast: {:?}", started.elapsed());
    }
    assert!(RedisReplayStore::connect("http://not-redis", "test", TIMEOUT).is_err());
}
