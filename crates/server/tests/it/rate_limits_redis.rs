//! Rate limits across replicas: two `llamagate serve --dev` processes pointed at one real
//! `redis-server` (started here on a free port) enforce one shared limit; killing Redis makes the
//! fail-closed replica refuse with 503 and report it in health, while a fail-open replica admits
//! unmetered and reports the outage too.

use crate::support::dev;
use crate::support::limits::{BURST_TIER_YAML, RedisServer, burst, get, post, tiny_completion, token, write_config};
use serde_json::json;

#[tokio::test]
async fn two_processes_share_one_limit_and_a_dead_redis_is_visible_in_health() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A generous timeout: 200 debug-build requests verifying tokens on a busy 2-core machine can keep
    // the runtime from polling a Redis answer for a while; a refused connection fails at once anyway.
    let yaml =
        format!("    backend: redis\n    redis_url: {}\n    redis_timeout_ms: 5000\n{BURST_TIER_YAML}", redis.url());
    write_config(dir.path(), &yaml);
    let closed = dev::start(dir.path(), 0);
    let open = dev::start_with_env(dir.path(), 0, &[("LLAMA_STACK_OAUTH_RATE_LIMITS_ON_BACKEND_FAILURE", "open")]);
    let client = crate::support::limits::client();

    let health = get(&client, &closed, None, "/v1/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        health.body,
        json!({"status": "OK", "rate_limiter": {"backend": "redis", "reachable": true, "failure_mode": "closed"}})
    );

    // One subject, a token for each replica (each is its own dev issuer), 200 requests at once spread
    // over both: exactly the tier's 50 are admitted in all.
    let servers = [&closed, &open];
    let tokens: Vec<String> = servers.iter().map(|s| token(dir.path(), s, "shared-user", &["burst_access"])).collect();
    let answers = burst(&client, &servers, &tokens, 200).await;
    let odd: Vec<_> =
        answers.iter().filter(|a| a.status != 200 && a.status != 429).map(|a| (a.status, &a.body)).collect();
    assert!(odd.is_empty(), "only admissions and refusals: {odd:?}");
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 50);
    for (server, token) in servers.iter().zip(&tokens) {
        let usage = get(&client, server, Some(token), "/v1/usage").await;
        assert_eq!(usage.body["requests"]["remaining"], 0, "{}", usage.body);
    }

    redis.kill();
    // The public health answer is reused for up to a second, so the outage shows within one.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let health = get(&client, &closed, None, "/v1/health").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body["rate_limiter"].get("error").is_none(), "no internal error text in public: {}", health.body);
    assert_eq!(health.body["status"], "Error");
    assert_eq!(health.body["rate_limiter"]["reachable"], false);
    assert_eq!(health.body["rate_limiter"]["failure_mode"], "closed");
    let fresh = token(dir.path(), &closed, "fresh-user", &[]);
    let refused = post(&client, &closed, &fresh, "/v1/completions", &tiny_completion()).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error"]["type"], "rate_limiter_unavailable");
    assert_eq!(get(&client, &closed, Some(&fresh), "/v1/usage").await.status, 503);

    let health = get(&client, &open, None, "/v1/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        (health.body["status"].as_str(), health.body["rate_limiter"]["reachable"].as_bool()),
        (Some("OK"), Some(false))
    );
    let fresh = token(dir.path(), &open, "fresh-user", &[]);
    let admitted = post(&client, &open, &fresh, "/v1/completions", &tiny_completion()).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert!(admitted.headers.get("x-ratelimit-limit-requests").is_none(), "admitted unmetered");
}
