//! Tiers and rate limits end to end, in-process backend: the real binary under `serve --dev`, tokens
//! from `llamagate token`, budgets charged with the engine's real token counts.

use std::time::Duration;

use crate::support::dev;
use crate::support::limits::{BURST_TIER_YAML, MODEL_ID, burst, get, post, token, write_config};
use serde_json::json;

/// A short chat whose reply is cut at the first space or punctuation, so it uses far fewer tokens
/// than `max_tokens`.
fn short_chat(max_tokens: u64) -> serde_json::Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stop": [" ", "\n", ".", ","],
    })
}

#[tokio::test]
async fn a_free_token_gets_exactly_ten_requests_then_429_with_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "    backend: memory\n");
    let server = dev::start(dir.path(), 0);
    let token = token(dir.path(), &server, "free-user", &[]);
    let client = crate::support::limits::client();

    let usage = get(&client, &server, Some(&token), "/v1/usage").await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.body["tier"], "free");
    assert_eq!(usage.body["requests"], json!({"limit": 10, "remaining": 10, "reset": 0}));
    assert_eq!(usage.body["tokens"]["limit"], 1000);

    // Eleven at once: all reservations happen within moments (before any generation), long before
    // one request refills (6 s).
    let answers = crate::support::limits::burst(&client, &[&server], std::slice::from_ref(&token), 11).await;
    let (ok, refused): (Vec<_>, Vec<_>) = answers.iter().partition(|a| a.status == 200);
    assert_eq!((ok.len(), refused.len()), (10, 1), "{:?}", answers.iter().map(|a| &a.body).collect::<Vec<_>>());
    let mut remaining: Vec<u64> = ok.iter().map(|a| a.number("x-ratelimit-remaining-requests")).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<_>>(), "each admission saw its own count");
    for a in &ok {
        assert_eq!(a.number("x-ratelimit-limit-requests"), 10);
        assert_eq!(a.number("x-ratelimit-limit-tokens"), 1000);
        assert!(a.headers.get("retry-after").is_none());
        assert!(a.header("ratelimit-policy").starts_with("\"requests\";q=10;w=60"), "{}", a.header("ratelimit-policy"));
    }

    let refused = refused[0];
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["type"], "rate_limit_exceeded", "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("Rate limit reached"), "{}", refused.body);
    let retry_after = refused.number("retry-after");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(refused.number("retry-after-ms") > 0);
    assert_eq!(refused.number("x-ratelimit-limit-requests"), 10);
    assert_eq!(refused.number("x-ratelimit-remaining-requests"), 0);
    assert!(refused.header("x-ratelimit-reset-requests").ends_with('s'));
    assert_eq!(refused.number("x-ratelimit-limit-tokens"), 1000);
    assert!(refused.header("ratelimit").starts_with("\"requests\";r=0;t="), "{}", refused.header("ratelimit"));
    assert!(refused.headers.get("x-should-retry").is_none());

    // Another subject has its own budget.
    let other = crate::support::limits::token(dir.path(), &server, "someone-else", &[]);
    assert_eq!(post(&client, &server, &other, "/v1/chat/completions", &short_chat(1)).await.status, 200);
}

/// 1,000 tokens like the free tier, but per hour: the budget cannot visibly refill while the test
/// runs, however slow the machine, so every comparison below is about reservations and refunds only.
const METERED_TIER_YAML: &str = "    tiers:\n      metered: {requests: 100, tokens: 1000, window_seconds: 3600}\n    \
                                 scope_tiers:\n      metered_access: metered\n";

#[tokio::test]
async fn tokens_are_charged_at_their_real_count_and_the_rest_is_refunded() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &format!("    backend: memory\n{METERED_TIER_YAML}"));
    let server = dev::start(dir.path(), 0);
    let token = token(dir.path(), &server, "token-user", &["metered_access"]);
    let client = crate::support::limits::client();

    // 1. Reserve prompt + 600, use a handful: the unused part comes back.
    let first = post(&client, &server, &token, "/v1/chat/completions", &short_chat(600)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let (prompt, completion) = (
        first.body["usage"]["prompt_tokens"].as_u64().unwrap(),
        first.body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert!(completion < 600, "the reply was cut by a stop string");
    assert!(
        first.number("x-ratelimit-remaining-tokens") <= 1000 - (prompt + 600),
        "the reservation was prompt + max_tokens"
    );
    // Without the refund only about 400 - prompt tokens would be left, too few for the same request.
    let second = post(&client, &server, &token, "/v1/chat/completions", &short_chat(600)).await;
    assert_eq!(second.status, 200, "refund missing: {}", second.body);
    let usage = get(&client, &server, Some(&token), "/v1/usage").await.body;
    let spent = 2 * (prompt + completion);
    assert!(usage["tokens"]["remaining"].as_u64().unwrap() >= 1000 - spent, "{usage}");

    // 2. A stream holds its whole reservation while it runs: the limit bites on what is held.
    let counting = json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 500, "temperature": 0, "stream": true});
    let mut stream =
        client.post(server.url("/v1/completions")).bearer_auth(&token).json(&counting).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let held_remaining: u64 = stream.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
    stream.chunk().await.unwrap().expect("a first event");
    // A probe that fits only once the stream's reservation is refunded: it reserves its prompt plus
    // `needed`, 200 more than is left.
    let needed = held_remaining + 200;
    let probe = |max_tokens: u64| json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": max_tokens, "temperature": 0, "stop": [","]});
    let refused = post(&client, &server, &token, "/v1/completions", &probe(needed)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"]["type"], "rate_limit_exceeded");
    assert!(refused.number("x-ratelimit-remaining-tokens") < needed);

    // 3. Dropping the stream cancels it; it is charged its prompt and the tokens it produced, and the
    // rest of its 500 comes back, so the same request now fits.
    drop(stream);
    let mut refunded = false;
    for _ in 0..300 {
        let usage = get(&client, &server, Some(&token), "/v1/usage").await.body;
        if usage["tokens"]["remaining"].as_u64().unwrap() >= needed + 100 {
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refunded, "the cancelled stream's unused tokens were never refunded");
    let admitted = post(&client, &server, &token, "/v1/completions", &probe(needed)).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);

    // 4. More than the tier's whole budget can never fit: 429 that says so, no retry.
    let never = post(&client, &server, &token, "/v1/chat/completions", &short_chat(5_000)).await;
    assert_eq!(never.status, 429, "{}", never.body);
    assert_eq!(never.body["error"]["type"], "request_exceeds_tier_limit");
    assert!(never.body["error"]["message"].as_str().unwrap().contains("can never be admitted"), "{}", never.body);
    assert_eq!(never.header("x-should-retry"), "false");
    assert!(never.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn two_hundred_concurrent_requests_admit_exactly_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &format!("    backend: memory\n{BURST_TIER_YAML}"));
    let server = dev::start(dir.path(), 0);
    let token = token(dir.path(), &server, "busy-user", &["burst_access"]);
    let client = crate::support::limits::client();
    let answers = burst(&client, &[&server], std::slice::from_ref(&token), 200).await;
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    let odd: Vec<_> =
        answers.iter().filter(|a| a.status != 200 && a.status != 429).map(|a| (a.status, &a.body)).collect();
    assert!(odd.is_empty(), "only admissions and refusals: {odd:?}");
    assert_eq!(admitted, 50);
    let usage = get(&client, &server, Some(&token), "/v1/usage").await.body;
    assert_eq!((usage["tier"].as_str(), usage["requests"]["remaining"].as_u64()), (Some("burst"), Some(0)));
}

#[tokio::test]
async fn health_stays_plain_without_redis_and_usage_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "    backend: memory\n");
    let server = dev::start(dir.path(), 0);
    let client = crate::support::limits::client();
    let health = get(&client, &server, None, "/v1/health").await;
    assert_eq!((health.status, health.body.clone()), (200, json!({"status": "OK"})));
    assert_eq!(get(&client, &server, None, "/v1/usage").await.status, 401);
}

/// An SDK's first call usually names no `max_tokens`. Without a tier default it would reserve the
/// whole rest of the context (here over 900 tokens with the prompt), which the free tier's 1,000
/// tokens cannot hold next to anything else; with the free tier's default (256) it is answered.
#[tokio::test]
async fn a_free_tokens_first_call_without_max_tokens_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "    backend: memory\n");
    let server = dev::start(dir.path(), 0);
    let token = token(dir.path(), &server, "newcomer", &[]);
    let client = crate::support::limits::client();
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi!"}], "temperature": 0});
    let answer = post(&client, &server, &token, "/v1/chat/completions", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body["usage"]["completion_tokens"].as_u64().unwrap() <= 256, "{}", answer.body);
    // The second call fits too: the first was charged what it used, not the whole context.
    let again = post(&client, &server, &token, "/v1/chat/completions", &body).await;
    assert_eq!(again.status, 200, "{}", again.body);
}

#[tokio::test]
async fn a_request_is_admitted_before_its_prompt_is_tokenized_and_a_refused_long_prompt_is_charged() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "    backend: memory\n");
    let server = dev::start(dir.path(), 0);
    let token = token(dir.path(), &server, "free-user", &[]);
    let client = crate::support::limits::client();
    // Far longer than the model's context: refused with 400 once counted.
    let long = json!({"model": MODEL_ID, "prompt": "word ".repeat(20_000), "max_tokens": 1});

    let refused = post(&client, &server, &token, "/v1/completions", &long).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("context window"), "{}", refused.body);
    let usage = get(&client, &server, Some(&token), "/v1/usage").await.body;
    assert_eq!(usage["requests"]["remaining"], 9, "the refused prompt took a request: {usage}");
    assert!(usage["tokens"]["remaining"].as_u64().unwrap() < 100, "and the tokens it was counted at: {usage}");

    // Spend the rest of the request budget (these are refused for tokens, and still take a request).
    for _ in 0..9 {
        let answer = post(&client, &server, &token, "/v1/chat/completions", &short_chat(1)).await;
        assert_eq!(answer.status, 429, "{}", answer.body);
    }
    // Now the same long prompt is refused for the request limit, before anything counts its tokens.
    let refused = post(&client, &server, &token, "/v1/completions", &long).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(refused.number("x-ratelimit-remaining-requests"), 0);
}
