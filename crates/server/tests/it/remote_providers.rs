//! Remote providers end to end: llama.cpp's real `llama-server` on the default model as the upstream,
//! `llamagate serve --dev` in front of it configured with a Llama Stack run-config, and a client with
//! development tokens. The same gate as for local models: scopes, tier budgets charged the upstream's
//! real `usage`, audit records naming the provider — and the upstream's key in none of the outputs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::remote::{Gate, LlamaServer, REMOTE_SCOPE, UPSTREAM_KEY, dead_base_url, run_yaml};
use crate::support::sse_events;

fn chat(model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn post(client: &reqwest::Client, gate: &Gate, token: &str, path: &str, body: &Value) -> reqwest::Response {
    client.post(gate.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

async fn tokens_remaining(client: &reqwest::Client, gate: &Gate, token: &str) -> u64 {
    let usage: Value = client.get(gate.url("/v1/usage")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    usage["tokens"]["remaining"].as_u64().unwrap_or_else(|| panic!("{usage}"))
}

/// A non-streamed request goes upstream non-streamed: the answer and the `usage` are llama-server's own
/// for the same request sent to it directly (greedy sampling, so the same text), and they are what is
/// charged and audited.
#[tokio::test]
async fn a_non_streamed_answer_is_the_upstreams_whole_answer_and_usage() {
    let upstream = LlamaServer::start().await;
    let gate = Gate::start(&run_yaml(&[&upstream.base_url], &[&dead_base_url()]));
    let token = gate.token("alice", &[REMOTE_SCOPE, "metered_access"]);
    let client = reqwest::Client::new();
    let mut direct_body = chat("smollm2", false);
    direct_body["seed"] = json!(1);
    let direct: Value = client
        .post(format!("{}/chat/completions", upstream.base_url))
        .bearer_auth(UPSTREAM_KEY)
        .json(&direct_body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut gated_body = chat("remote/smollm2", false);
    gated_body["seed"] = json!(1);
    let response = post(&client, &gate, &token, "/v1/chat/completions", &gated_body).await;
    assert_eq!(response.status(), 200);
    let gated: Value = response.json().await.unwrap();
    assert_eq!(
        gated["choices"][0]["message"]["content"], direct["choices"][0]["message"]["content"],
        "{gated}\n{direct}"
    );
    assert_eq!(gated["choices"][0]["finish_reason"], direct["choices"][0]["finish_reason"]);
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(gated["usage"][field], direct["usage"][field], "{field}: {gated}\n{direct}");
    }
    let total = direct["usage"]["total_tokens"].as_u64().unwrap();
    let spent = 1000 - tokens_remaining(&client, &gate, &token).await;
    assert!((total.saturating_sub(REFILL_SLACK)..=total).contains(&spent), "charged {spent}, upstream said {total}");
    let records = gate.audit().await;
    let record = records
        .iter()
        .find(|r| r["event"] == "inference_response" && r["model"] == "remote/smollm2")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(record["usage_source"], "upstream", "{record}");
    assert_eq!(record["completion_tokens"], direct["usage"]["completion_tokens"], "{record}");
}

/// The budget is 1,000 tokens per hour: while a test runs it refills at most a token or two.
const REFILL_SLACK: u64 = 3;

#[tokio::test]
async fn answers_and_streams_come_through_the_gate_charged_the_upstreams_usage() {
    let upstream = LlamaServer::start().await;
    let gate = Gate::start(&run_yaml(&[&upstream.base_url], &[&dead_base_url()]));
    let token = gate.token("alice", &[REMOTE_SCOPE, "metered_access"]);
    let client = reqwest::Client::new();
    assert_eq!(tokens_remaining(&client, &gate, &token).await, 1000);

    // Non-streamed chat: our own response shape, the upstream's text and usage.
    let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/smollm2", false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["model"], "remote/smollm2");
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{body}");
    let usage = &body["usage"];
    let total = usage["total_tokens"].as_u64().unwrap();
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 8, "{usage}");
    // The real count, not the byte estimate (the question alone is 51 bytes).
    assert!(prompt > 5 && prompt < 51, "{usage}");
    let spent = 1000 - tokens_remaining(&client, &gate, &token).await;
    assert!((total.saturating_sub(REFILL_SLACK)..=total).contains(&spent), "charged {spent}, upstream said {total}");

    // Streamed chat: our framing, the upstream's text, its usage in the last chunk, then [DONE].
    let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/smollm2", true)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    let chunks = &events[..events.len() - 1];
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{chunks:?}");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!text.is_empty(), "{chunks:?}");
    let stream_usage = &chunks.last().unwrap()["usage"];
    let stream_total = stream_usage["total_tokens"].as_u64().unwrap_or_else(|| panic!("{chunks:?}"));
    assert_eq!(stream_usage["prompt_tokens"].as_u64(), Some(prompt), "the same prompt, counted upstream");
    let spent = 1000 - tokens_remaining(&client, &gate, &token).await;
    let expected = total + stream_total;
    assert!((expected - REFILL_SLACK..=expected).contains(&spent), "charged {spent}, upstream said {expected}");

    // Legacy completions, non-streamed.
    let completion = json!({"model": "remote/smollm2", "prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0});
    let response = post(&client, &gate, &token, "/v1/completions", &completion).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion", "{body}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() >= 1, "{body}");

    // The audit records name the provider and where the counts came from.
    let records = gate.audit().await;
    let answered: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "inference_response" && r["model"] == "remote/smollm2" && r["status"] == 200)
        .collect();
    assert_eq!(answered.len(), 3, "{records:#?}");
    for record in &answered {
        assert_eq!(record["provider"], "llamacpp", "{record}");
        assert_eq!(record["usage_source"], "upstream", "{record}");
    }
    assert_eq!(answered[0]["prompt_tokens"].as_u64(), Some(prompt));

    // Per-provider metrics, for the operator: three calls, their tokens as the upstream counted them.
    let operator = gate.token("ops", &["llamagate_operator"]);
    let metrics = client.get(gate.url("/metrics")).bearer_auth(&operator).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"llamagate_provider_requests_total{provider="llamacpp",outcome="ok"} 3"#), "{metrics}");
    let prompt_line = r#"llamagate_provider_tokens_total{provider="llamacpp",kind="prompt"} "#;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(prompt_line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(counted >= 2 * prompt, "{counted}");
    assert!(metrics.contains(r#"llamagate_provider_request_seconds_count{provider="llamacpp"} 3"#), "{metrics}");

    // The key reached the upstream (it refuses requests without it) and nothing else.
    assert!(!gate.log().contains(UPSTREAM_KEY), "the key is in the log");
    assert!(!gate.audit_text().contains(UPSTREAM_KEY), "the key is in the audit log");
    assert!(gate.log().contains("providers.vector_io (1 providers)"), "skipped sections are listed at start");
}

#[tokio::test]
async fn a_caller_without_the_models_scope_is_refused_before_the_upstream_is_called() {
    let upstream = LlamaServer::start().await;
    let gate = Gate::start(&run_yaml(&[&upstream.base_url], &[&dead_base_url()]));
    let client = reqwest::Client::new();
    let before = upstream.prompt_tokens_total().await;
    let stranger = gate.token("bob", &["metered_access"]);
    let response = post(&client, &gate, &stranger, "/v1/chat/completions", &chat("remote/smollm2", false)).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("insufficient_scope") && challenge.contains(REMOTE_SCOPE), "{challenge}");
    // A model it may not use is not listed to it either.
    let models: Value =
        client.get(gate.url("/v1/models")).bearer_auth(&stranger).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"], json!([]), "{models}");
    assert_eq!(upstream.prompt_tokens_total().await, before, "llama-server was called");

    // With the scope the same request reaches it.
    let allowed = gate.token("alice", &[REMOTE_SCOPE]);
    let response = post(&client, &gate, &allowed, "/v1/chat/completions", &chat("remote/smollm2", false)).await;
    assert_eq!(response.status(), 200);
    assert!(upstream.prompt_tokens_total().await > before);
}

#[tokio::test]
async fn a_dead_upstream_trips_its_breaker_and_the_pool_serves_from_the_healthy_one() {
    let upstream = LlamaServer::start().await;
    let dead = dead_base_url();
    // The dead upstream first: round-robin starts there, so the first request meets it.
    let gate = Gate::start(&run_yaml(&[&dead, &upstream.base_url], &[&dead_base_url(), &dead_base_url()]));
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let client = reqwest::Client::new();
    for i in 0..4 {
        let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/smollm2", i % 2 == 1)).await;
        assert_eq!(response.status(), 200, "request {i}");
        let _ = response.bytes().await.unwrap();
    }
    let log = gate.log();
    assert_eq!(log.matches("upstream circuit opened").count(), 1, "{log}");
    // The operator sees the open breaker in /v1/providers — by position, not by address.
    let operator = gate.token("ops", &["llamagate_operator"]);
    let info = client.get(gate.url("/v1/providers/llamacpp")).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["provider_type"], "remote::llama-cpp-server", "{info}");
    assert_eq!(info["health"]["status"], "Degraded", "{info}");
    assert_eq!(info["health"]["upstreams"][0]["breaker"], "open", "{info}");
    assert_eq!(info["health"]["upstreams"][1]["breaker"], "closed", "{info}");
    assert_eq!(info["config"]["upstreams"], 2, "{info}");
    assert_eq!(info["config"]["api_key"], "********", "{info}");
    assert!(!info.to_string().contains("127.0.0.1") && !info.to_string().contains(UPSTREAM_KEY), "{info}");
    let refused = client.get(gate.url("/v1/providers")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 403, "provider details are for operators");
    assert_eq!(log.matches("upstream unreachable").count(), 1, "one try on the dead upstream, then none: {log}");

    // A provider whose every upstream is dead: 502 naming the provider, never an address; then its
    // breakers are open and it answers 503 with Retry-After at once.
    let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/down", false)).await;
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(body.contains("provider `down` could not be reached"), "{body}");
    assert!(!body.contains("127.0.0.1") && !body.contains("http"), "{body}");
    let started = std::time::Instant::now();
    let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/down", true)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no healthy upstream"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "an open breaker answers without trying");
    // The public health says which providers are degraded or down, and no more.
    let health: Value = client.get(gate.url("/v1/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "OK", "{health}");
    assert_eq!(
        health["providers"],
        json!([{"provider_id": "down", "status": "Error"}, {"provider_id": "llamacpp", "status": "Degraded"}]),
        "{health}"
    );
    assert!(!gate.log().contains(UPSTREAM_KEY) && !gate.audit_text().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_what_was_streamed() {
    let upstream = LlamaServer::start().await;
    let gate = Gate::start(&run_yaml(&[&upstream.base_url], &[&dead_base_url()]));
    let token = gate.token("carol", &[REMOTE_SCOPE, "metered_access"]);
    let client = reqwest::Client::new();
    let long = json!({
        "model": "remote/smollm2",
        "prompt": "Count from one to one hundred: one, two, three,",
        "max_tokens": 400,
        "temperature": 0,
        "stream": true,
    });
    let mut response = post(&client, &gate, &token, "/v1/completions", &long).await;
    assert_eq!(response.status(), 200);
    response.chunk().await.unwrap().expect("a first event");
    drop(response);
    // The settlement runs when the gate sees the disconnect; the reservation (prompt + 400) comes back
    // but for the prompt estimate and the pieces streamed.
    let mut spent = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        spent = 1000 - tokens_remaining(&client, &gate, &token).await;
        if spent < 400 {
            break;
        }
    }
    assert!(spent > 0 && spent < 400, "charged {spent}");
    let records = gate.audit().await;
    let record = records
        .iter()
        .find(|r| r["event"] == "inference_response" && r["model"] == "remote/smollm2")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(record["finish_reason"], "cancelled", "{record}");
    assert_eq!(record["provider"], "llamacpp", "{record}");
}

/// Input safety runs before the upstream is called: a refused prompt never reaches llama-server. The
/// guard is the TEST-ONLY double on the local default model (scores chosen by the test, see
/// content_safety.rs); the remote model is guarded by it like a local one.
#[cfg(feature = "test-guard")]
#[tokio::test]
async fn a_prompt_refused_by_content_safety_never_reaches_the_upstream() {
    let upstream = LlamaServer::start().await;
    let scores = tempfile::tempdir().unwrap();
    let scores_file = scores.path().join("scores.json");
    let rules = r#"{"rules": [{"contains": "storm the castle", "judged": "user", "scores": {"S1": 0.99}}]}"#;
    std::fs::write(&scores_file, rules).unwrap();
    let local = format!(
        "models:\n  - id: guard\n    source: {}\n    context_length: 1024\n    required_scope: model_guard\n\
         shields:\n  - id: llama-guard\n    model: guard\n    scores_file: {}\n",
        crate::support::default_model().display(),
        scores_file.display()
    );
    let yaml = run_yaml(&[&upstream.base_url], &[&dead_base_url()])
        .replace(
            "oauth_config:\n  enable_auth: false\n",
            "oauth_config:\n  enable_auth: false\n  enforce_content_safety: true\n",
        )
        .replace("providers:\n", &format!("{local}providers:\n"));
    let gate = Gate::start_with_env(&yaml, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")]);
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let client = reqwest::Client::new();
    let before = upstream.prompt_tokens_total().await;
    let mut unsafe_chat = chat("remote/smollm2", false);
    unsafe_chat["messages"][0]["content"] = json!("Tell me how to storm the castle tonight.");
    let response = post(&client, &gate, &token, "/v1/chat/completions", &unsafe_chat).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "content_policy_violation", "{body}");
    assert_eq!(upstream.prompt_tokens_total().await, before, "llama-server was called");
    // A safe prompt goes through the same gate to the upstream.
    let response = post(&client, &gate, &token, "/v1/chat/completions", &chat("remote/smollm2", false)).await;
    assert_eq!(response.status(), 200);
    assert!(upstream.prompt_tokens_total().await > before);
}

/// `n > 1` on a remote model is a 400 naming `n`, before the upstream is called (it would compute and
/// bill the prompt once per choice); a completions list of prompts is one upstream call per prompt,
/// answered in OpenAI's order with each prompt counted.
#[tokio::test]
async fn n_is_refused_for_a_remote_model_and_a_prompt_list_is_one_call_per_prompt() {
    let upstream = LlamaServer::start().await;
    let gate = Gate::start(&run_yaml(&[&upstream.base_url], &[&dead_base_url()]));
    let client = reqwest::Client::new();
    let alice = gate.token("alice", &[REMOTE_SCOPE]);
    let before = upstream.prompt_tokens_total().await;
    let mut two = chat("remote/smollm2", false);
    two["n"] = json!(2);
    let response = post(&client, &gate, &alice, "/v1/chat/completions", &two).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().starts_with("n must be 1"), "{body}");
    assert_eq!(upstream.prompt_tokens_total().await, before, "llama-server was called");

    let list = json!({"model": "remote/smollm2", "prompt": ["The capital of France is", "One, two, three,"],
        "max_tokens": 3, "temperature": 0});
    let response = post(&client, &gate, &alice, "/v1/completions", &list).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let indices: Vec<u64> = body["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 1], "{body}");
    let upstream_prompts = upstream.prompt_tokens_total().await - before;
    assert_eq!(body["usage"]["prompt_tokens"].as_f64().unwrap(), upstream_prompts, "{body}");
}

/// A remote model that names its tokenizer (here the default GGUF, the model llama-server runs) is
/// reserved its real prompt count before the call — what llama-server then reports as `prompt_tokens` —
/// and the audit says so; one without a tokenizer is reserved the larger byte estimate.
#[tokio::test]
async fn a_remote_model_with_a_tokenizer_is_reserved_its_exact_prompt_count() {
    let upstream = LlamaServer::start().await;
    let model = crate::support::default_model();
    let yaml = run_yaml(&[&upstream.base_url], &[&dead_base_url()])
        .replace(
            "      provider_model_id: smollm2\n",
            &format!("      provider_model_id: smollm2\n      tokenizer: {}\n", model.display()),
        )
        .replace(
            "    - model_id: remote/down\n",
            &format!(
                "    - model_id: remote/estimated\n      provider_id: llamacpp\n      provider_model_id: smollm2\n      \
                 required_scope: {REMOTE_SCOPE}\n    - model_id: remote/down\n"
            ),
        );
    let gate = Gate::start(&yaml);
    let client = reqwest::Client::new();
    let mut reserved = Vec::new();
    for (user, model) in [("alice", "remote/smollm2"), ("bob", "remote/estimated")] {
        // A fresh caller each: a full budget, so what is left after the reservation says what it was.
        let token = gate.token(user, &[REMOTE_SCOPE, "metered_access"]);
        let response = post(&client, &gate, &token, "/v1/chat/completions", &chat(model, false)).await;
        assert_eq!(response.status(), 200);
        let remaining: u64 = response.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
        let body: Value = response.json().await.unwrap();
        let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
        // max_tokens is 8.
        reserved.push((1000 - remaining - 8, prompt));
    }
    let (counted, upstream_prompt) = reserved[0];
    assert_eq!(counted, upstream_prompt, "the tokenizer's count is llama-server's");
    let (estimated, upstream_prompt) = reserved[1];
    assert!(estimated > upstream_prompt, "the estimate ({estimated}) errs high ({upstream_prompt})");
    let records = gate.audit().await;
    let count_of = |model: &str| {
        records
            .iter()
            .find(|r| r["event"] == "inference_response" && r["model"] == model)
            .map(|r| r["prompt_count"].clone())
    };
    assert_eq!(count_of("remote/smollm2"), Some(json!("tokenizer")), "{records:#?}");
    assert_eq!(count_of("remote/estimated"), Some(json!("estimate")), "{records:#?}");
}
