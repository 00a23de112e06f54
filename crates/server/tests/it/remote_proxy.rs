//! Remote providers under real faults: llama.cpp's real `llama-server` behind a fault-injecting proxy
//! (`support::proxy`), `llamagate serve --dev` in front. The answers are the real server's; the proxy
//! delays them, refuses with 429/503 itself, resets the connection mid-stream or puts garbage bytes into
//! the stream. Retries happen only before the first byte; a broken answer ends cleanly (Llama Stack
//! envelope or SSE error event), is charged what the client received, and is audited.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::proxy::{FaultProxy, ProxyFault};
use crate::support::remote::{Gate, LlamaServer, REMOTE_SCOPE, UPSTREAM_KEY, yaml_list};
use crate::support::sse_events;

/// One `llama-cpp-server` provider over `base_urls` serving `remote/smollm2`, a 1,000-token tier, and
/// `extra` lines in its `config:`.
fn yaml(base_urls: &[&str], extra: &str) -> String {
    let urls = yaml_list(base_urls);
    format!(
        r#"server:
  host: 127.0.0.1
  port: 0
providers:
  inference:
    - provider_id: llamacpp
      provider_type: remote::llama-cpp-server
      config:
        base_url: [{urls}]
        api_key: ${{env.LLAMACPP_API_KEY:=}}
        read_timeout_seconds: 20
        max_retries: 2
{extra}registered_resources:
  models:
    - model_id: remote/smollm2
      provider_id: llamacpp
      provider_model_id: smollm2
      required_scope: {REMOTE_SCOPE}
oauth_config:
  enable_auth: false
  rate_limits:
    backend: memory
    tiers:
      metered: {{requests: 100, tokens: 1000, window_seconds: 3600}}
    scope_tiers:
      metered_access: metered
"#
    )
}

const QUESTION: &str = "Count from one to twenty: one, two,";

fn chat(stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": "remote/smollm2",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

/// The reservation's estimate for [`chat`]'s prompt: a token per byte plus 8 per message and 8 more.
fn prompt_estimate() -> u64 {
    ("user".len() + QUESTION.len() + 16) as u64
}

/// The budget refills at most a token or two while a test runs.
const REFILL_SLACK: u64 = 3;

async fn post(gate: &Gate, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(gate.url("/v1/chat/completions")).bearer_auth(token).json(body).send().await.unwrap()
}

async fn spent(gate: &Gate, token: &str) -> u64 {
    let usage: Value = reqwest::Client::new()
        .get(gate.url("/v1/usage"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    1000 - usage["tokens"]["remaining"].as_u64().unwrap_or_else(|| panic!("{usage}"))
}

#[tokio::test]
async fn a_delay_within_the_read_timeout_is_waited_for_and_429_503_are_retried_onto_the_real_server() {
    let upstream = LlamaServer::start().await;
    let proxy = FaultProxy::start(&upstream.base_url).await;
    let gate = Gate::start(&yaml(&[&proxy.base_url], ""));
    let token = gate.token("alice", &[REMOTE_SCOPE]);

    proxy.push(&[ProxyFault::Delay(Duration::from_millis(1500))]);
    let response = post(&gate, &token, &chat(false, 8)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap_or_default().is_empty(), "{body}");
    assert_eq!(proxy.requests(), 1, "a slow answer is not retried");
    // The non-streamed request went upstream non-streamed.
    assert_eq!(proxy.forwarded()[0]["stream"], json!(false), "{:?}", proxy.forwarded());

    let before = upstream.prompt_tokens_total().await;
    proxy.push(&[ProxyFault::Status(503), ProxyFault::Status(429)]);
    let response = post(&gate, &token, &chat(true, 8)).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())), "{events:?}");
    assert_eq!(proxy.requests(), 4, "the 503, the 429, then the real server");
    assert_eq!(proxy.forwarded().len(), 2, "only the third try reached llama-server");
    assert_eq!(proxy.forwarded()[1]["stream"], json!(true));
    assert!(upstream.prompt_tokens_total().await > before, "llama-server served it");
    let operator = gate.token("ops", &["llamagate_operator"]);
    let metrics = reqwest::Client::new().get(gate.url("/metrics")).bearer_auth(&operator).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains(r#"llamagate_provider_retries_total{provider="llamacpp"} 2"#), "{metrics}");
}

#[tokio::test]
async fn a_reset_mid_stream_ends_cleanly_is_charged_what_arrived_and_is_audited() {
    let upstream = LlamaServer::start().await;
    let proxy = FaultProxy::start(&upstream.base_url).await;
    let gate = Gate::start(&yaml(&[&proxy.base_url], ""));
    let token = gate.token("carol", &[REMOTE_SCOPE, "metered_access"]);

    // Streamed: some chunks, then the connection breaks.
    proxy.push(&[ProxyFault::ResetAfter(1500)]);
    let response = post(&gate, &token, &chat(true, 64)).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    let pieces = events.iter().filter(|e| e["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()));
    let pieces = pieces.count() as u64;
    assert!(pieces >= 1, "some text arrived before the reset: {events:?}");
    let last = events.last().unwrap();
    let message = last["error"]["message"].as_str().unwrap_or_else(|| panic!("an SSE error event last: {events:?}"));
    assert!(message.contains("provider `llamacpp`"), "{message}");
    assert!(!message.contains("127.0.0.1") && !events.contains(&Value::String("[DONE]".into())), "{events:?}");
    assert_eq!(proxy.requests(), 1, "not retried once the answer started");
    // Charged the prompt's estimate and the pieces the client received, not the 64 reserved.
    let charged = spent(&gate, &token).await;
    let expected = prompt_estimate() + pieces;
    assert!((expected - REFILL_SLACK..=expected).contains(&charged), "charged {charged}, received {pieces} pieces");

    // Not streamed: the body breaks off; a 502 in the Llama Stack envelope naming the provider only.
    proxy.push(&[ProxyFault::ResetAfter(10)]);
    let response = post(&gate, &token, &chat(false, 8)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 502, "{body} {}", proxy.requests());
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(message, "inference failed: provider `llamacpp`: the provider's connection broke off", "{body}");
    assert_eq!(proxy.requests(), 2);

    // Both have a closing audit record naming the provider and what happened.
    let records = gate.audit().await;
    let closing: Vec<&Value> =
        records.iter().filter(|r| r["event"] == "inference_response" && r["model"] == "remote/smollm2").collect();
    assert_eq!(closing.len(), 2, "{records:#?}");
    for record in &closing {
        assert_eq!(record["provider"], "llamacpp", "{record}");
        assert!(record["reason"].as_str().unwrap_or_default().contains("connection broke off"), "{record}");
    }
    assert_eq!(closing[0]["completion_tokens"].as_u64(), Some(pieces), "{}", closing[0]);
    assert_eq!(closing[1]["status"], 502, "{}", closing[1]);
    assert!(!gate.log().contains(UPSTREAM_KEY) && !gate.audit_text().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn garbage_in_the_stream_is_a_clean_error_and_not_retried() {
    let upstream = LlamaServer::start().await;
    let proxy = FaultProxy::start(&upstream.base_url).await;
    let gate = Gate::start(&yaml(&[&proxy.base_url], ""));
    let token = gate.token("dave", &[REMOTE_SCOPE]);
    proxy.push(&[ProxyFault::GarbageAfter(400), ProxyFault::GarbageAfter(1)]);
    let response = post(&gate, &token, &chat(true, 32)).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    let message = events.last().and_then(|e| e["error"]["message"].as_str()).unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(message, "provider `llamacpp`: the provider sent a malformed stream", "{events:?}");
    assert_eq!(proxy.requests(), 1, "not retried after the first byte");
    // A whole answer with garbage in it: 502, not retried either.
    let response = post(&gate, &token, &chat(false, 8)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with("provider `llamacpp`: the provider sent a malformed answer"), "{body}");
    assert_eq!(proxy.requests(), 2);
    // The fault was the proxy's: the next request is answered.
    assert_eq!(post(&gate, &token, &chat(false, 8)).await.status(), 200);
}

#[tokio::test]
async fn a_pool_with_a_failing_proxy_routes_to_the_healthy_server_once_the_breaker_trips() {
    let upstream = LlamaServer::start().await;
    let proxy = FaultProxy::start(&upstream.base_url).await;
    proxy.fail_all(Some(503));
    // The failing proxy first: round-robin starts there.
    // No probes: this is about the breaker that requests trip (probes: the next test).
    let extra = "        breaker_failures: 1\n        breaker_cooldown_seconds: 600\n        health_check_interval_seconds: 0\n";
    let gate = Gate::start(&yaml(&[&proxy.base_url, &upstream.base_url], extra));
    let token = gate.token("erin", &[REMOTE_SCOPE]);
    for i in 0..4 {
        let response = post(&gate, &token, &chat(i % 2 == 1, 4)).await;
        assert_eq!(response.status(), 200, "request {i}");
        let _ = response.bytes().await.unwrap();
    }
    assert_eq!(proxy.requests(), 1, "one 503, then the breaker keeps the proxy out");
    let operator = gate.token("ops", &["llamagate_operator"]);
    let info: Value = reqwest::Client::new()
        .get(gate.url("/v1/providers/llamacpp"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["health"]["upstreams"][0]["breaker"], "open", "{info}");
    assert_eq!(info["health"]["upstreams"][1]["breaker"], "closed", "{info}");
}

/// Active health checks: probes (`GET /models`, every 0.2 s here) open the breaker of an upstream that
/// fails them before any caller's request meets it, show it in `/v1/health` and `/v1/providers`, and
/// close it again once the upstream answers.
#[tokio::test]
async fn health_probes_take_a_failing_upstream_out_before_a_caller_meets_it_and_bring_it_back() {
    let upstream = LlamaServer::start().await;
    let proxy = FaultProxy::start(&upstream.base_url).await;
    let extra = "        health_check_interval_seconds: 0.2\n        breaker_failures: 5\n";
    let gate = Gate::start(&yaml(&[&proxy.base_url, &upstream.base_url], extra));
    let token = gate.token("frank", &[REMOTE_SCOPE]);
    let operator = gate.token("ops", &["llamagate_operator"]);
    let client = reqwest::Client::new();
    let upstream_state = || async {
        let info: Value = client
            .get(gate.url("/v1/providers/llamacpp"))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        info
    };
    // Waits (up to 30 s) until the proxy's upstream shows `breaker` and `probe`.
    let wait_for = |breaker: &'static str, probe: &'static str| async move {
        for _ in 0..300 {
            let info = upstream_state().await;
            let first = &info["health"]["upstreams"][0];
            if first["breaker"] == breaker && first["health_check"] == probe {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("upstream 0 never became {breaker}/{probe}: {}", upstream_state().await);
    };
    let info = wait_for("closed", "passing").await;
    assert_eq!(info["config"]["health_check_interval_seconds"], 0.2, "{info}");
    assert!(proxy.probes() >= 1);

    // The proxy fails everything: the probes open its breaker with no request sent.
    proxy.fail_all(Some(503));
    let info = wait_for("open", "failing").await;
    assert_eq!(info["health"]["status"], "Degraded", "{info}");
    assert_eq!(info["health"]["upstreams"][1]["health_check"], "passing", "{info}");
    let health: Value = client.get(gate.url("/v1/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["providers"], json!([{"provider_id": "llamacpp", "status": "Degraded"}]), "{health}");
    let before = proxy.requests();
    for i in 0..4 {
        let response = post(&gate, &token, &chat(i % 2 == 0, 4)).await;
        assert_eq!(response.status(), 200, "request {i}");
        let _ = response.bytes().await.unwrap();
    }
    assert_eq!(proxy.requests(), before, "no caller's request went to the failing upstream");
    assert!(gate.log().contains("upstream health check failed; circuit opened"), "{}", gate.log());

    // It recovers: the next passing probe closes the breaker and requests reach it again.
    proxy.fail_all(None);
    wait_for("closed", "passing").await;
    assert!(gate.log().contains("upstream health check passed; circuit closed"));
    for i in 0..4 {
        let response = post(&gate, &token, &chat(false, 4)).await;
        assert_eq!(response.status(), 200, "request {i}");
    }
    assert!(proxy.requests() > before, "the recovered upstream serves again");
}
