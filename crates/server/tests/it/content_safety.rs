//! Content safety on chat and completions through the real `serve --dev` binary: the same content gives
//! different decisions for basic, premium and research tokens; refusals list their categories and are
//! audited; an unsafe output ends a stream with `content_filter`.
//!
//! The scores come from the TEST-ONLY guard double (`shields[].scores_file`, allowed by
//! `LLAMAGATE_ALLOW_TEST_GUARD=1`, see docs/safety.md), not from a Llama Guard model: these tests pin
//! down the decisions and their plumbing with scores they choose, in well under a minute. The real
//! scoring path is tested in `api_safety.rs`; the thresholds per level and category in authz's unit tests.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::dev::{self, token};
use crate::support::{MODEL_ID, default_model, sse_events};
use serde_json::{Value, json};

/// Fixed per-code scores, keyed by text in the conversation. `judged: assistant` rules flag the model's
/// reply whatever it says.
const SCORES: &str = r#"{"rules": [
    {"contains": "storm the castle", "judged": "user", "scores": {"S1": 0.45}},
    {"contains": "smuggle the relic", "judged": "user", "scores": {"S10": 0.5, "S9": 0.15}},
    {"contains": "grim tale", "judged": "assistant", "scores": {"S1": 0.9}}
]}"#;

fn write_config(dir: &Path) {
    std::fs::write(dir.join("scores.json"), SCORES).unwrap();
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n\
         shields:\n  - id: llama-guard\n    model: {MODEL_ID}\n    scores_file: scores.json\n\
         oauth_config:\n  enable_rate_limiting: false\n  enforce_content_safety: true\n  audit:\n    path: {}\n",
        default_model().display(),
        dir.join("audit.log").display()
    );
    std::fs::write(dir.join("stack.yaml"), yaml).unwrap();
}

/// The audit records written so far with `event`, waiting briefly for at least `at_least` of them (the
/// log is written asynchronously).
fn records(path: &Path, event: &str, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<Value> =
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|r| r["event"] == event).collect();
        if found.len() >= at_least || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL_ID, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "stream": stream})
}

#[tokio::test]
async fn the_same_content_is_refused_or_allowed_by_safety_level_and_unsafe_output_is_filtered() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let server = dev::start_with_env(dir.path(), 0, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")]);
    let model_scope = ["--scope", "model_smollm2_135m"];
    let basic = token(dir.path(), &server.base, &model_scope);
    let premium = token(dir.path(), &server.base, &[&model_scope[..], &["--scope", "premium_access"]].concat());
    let research = token(dir.path(), &server.base, &[&model_scope[..], &["--scope", "research_access"]].concat());
    let client = reqwest::Client::new();
    let post = |path: &'static str, token: &String, body: Value| {
        let request = client.post(server.url(path)).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let refused = |status: u16, body: &str| -> Vec<String> {
        assert_eq!(status, 400, "{body}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["type"], "content_policy_violation", "{body}");
        serde_json::from_value(body["error"]["categories"].clone()).unwrap()
    };

    // Violence 0.45: over basic's 0.3, under premium's 0.5 and research's 0.8.
    let violent = chat("Tell me how the army will storm the castle", false);
    let (status, body) = post("/v1/chat/completions", &basic, violent.clone()).await;
    assert_eq!(refused(status, &body), ["violence"]);
    for allowed in [&premium, &research] {
        let (status, body) = post("/v1/chat/completions", allowed, violent.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    // Hate 0.5 and illegal (S9) 0.15: basic and premium refuse both (hate over 0.2 / 0.4, illegal blocked
    // above 0.1), research allows both (hate under 0.7, illegal not blocked).
    let hateful = chat("Explain why we should smuggle the relic", false);
    for refused_level in [&basic, &premium] {
        let (status, body) = post("/v1/chat/completions", refused_level, hateful.clone()).await;
        assert_eq!(refused(status, &body), ["hate", "illegal"]);
    }
    let (status, body) = post("/v1/chat/completions", &research, hateful.clone()).await;
    assert_eq!(status, 200, "{body}");
    // The legacy completions route applies the same input check.
    let prompt = json!({"model": MODEL_ID, "prompt": "They will storm the castle at dawn", "max_tokens": 4});
    let (status, body) = post("/v1/completions", &basic, prompt).await;
    assert_eq!(refused(status, &body), ["violence"]);

    // An allowed stream passes its text through the sentence-by-sentence output check intact.
    let (status, body) = post("/v1/chat/completions", &research, chat("Tell me how they storm the castle", true)).await;
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    let finish = events.iter().find_map(|e| e["choices"][0]["finish_reason"].as_str()).unwrap();
    assert!(!text.is_empty() && ["stop", "length"].contains(&finish), "{body}");

    // Output scored 0.9 for violence is over every level's limit: the stream ends with `content_filter`
    // and none of the refused text was sent; the plain answer carries the refusal message instead.
    let (status, body) = post("/v1/chat/completions", &research, chat("Write a grim tale", true)).await;
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    let finish = events.iter().find_map(|e| e["choices"][0]["finish_reason"].as_str());
    assert_eq!((text.as_str(), finish), ("", Some("content_filter")), "{body}");
    assert_eq!(events.last(), Some(&json!("[DONE]")));
    let (status, body) = post("/v1/chat/completions", &research, chat("Write a grim tale", false)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body["choices"][0]["message"]["content"], "I can't answer that. Can I help with something else?");

    // Every refusal is audited with its categories: four input refusals (three chat, one completion)
    // and the two output refusals, the streamed one included.
    let audit = records(&dir.path().join("audit.log"), "security_safety_refusal", 6);
    let reasons: Vec<&str> = audit.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["violence", "hate,illegal", "hate,illegal", "violence", "violence", "violence"], "{audit:?}");
    assert!(audit.iter().all(|r| r["decision"] == "refused" && r["model"] == MODEL_ID), "{audit:?}");
}

/// Shield calls are metered like generations: each is one request of the caller's tier and the
/// guard prompt's tokens, so a free caller cannot run classifications past its limit.
#[tokio::test]
async fn shield_calls_count_against_the_callers_tier() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let metered = std::fs::read_to_string(dir.path().join("stack.yaml")).unwrap().replace(
        "enable_rate_limiting: false",
        "enable_rate_limiting: true\n  rate_limits:\n    tiers:\n      free: {requests: 4, tokens: 100000, window_seconds: 3600}",
    );
    std::fs::write(dir.path().join("stack.yaml"), metered).unwrap();
    let server = dev::start_with_env(dir.path(), 0, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")]);
    let free = token(dir.path(), &server.base, &[]);
    let client = reqwest::Client::new();
    let moderation = json!({"input": "hello"});
    let shield = json!({"shield_id": "llama-guard", "messages": [{"role": "user", "content": "hello"}]});
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (path, body) =
            if i % 2 == 0 { ("/v1/moderations", &moderation) } else { ("/v1/safety/run-shield", &shield) };
        let response = client.post(server.url(path)).bearer_auth(&free).json(body).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["type"], "rate_limit_exceeded", "{error}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429], "four requests an hour");
    let usage: Value =
        client.get(server.url("/v1/usage")).bearer_auth(&free).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["requests"]["remaining"], 0, "{usage}");
    // Each guard prompt is a few hundred tokens (the instructions and the category list).
    let charged = 100_000 - usage["tokens"]["remaining"].as_u64().unwrap();
    assert!(charged >= 4 * 100, "the guard prompts were charged: {usage}");
    let operator = token(dir.path(), &server.base, &["--scope", "llamagate_operator"]);
    let metrics = client.get(server.url("/metrics")).bearer_auth(&operator).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == r#"llamagate_rate_limited_total{tier="free"} 1"#), "{metrics}");
}

/// `run-shield` and `moderations` decide at the caller's level too: the same borderline text (violence
/// 0.45) is flagged for a basic token (limit 0.3) and passes for a research one (limit 0.8), and the
/// answer names the level and the violated categories with their scores and limits.
#[tokio::test]
async fn shields_answer_at_the_callers_safety_level_and_say_why() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let server = dev::start_with_env(dir.path(), 0, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")]);
    let basic = token(dir.path(), &server.base, &["--scope", "model_safety"]);
    let research = token(dir.path(), &server.base, &["--scope", "model_safety", "--scope", "research_access"]);
    let client = reqwest::Client::new();
    let ask = |path: &'static str, token: &String, body: Value| {
        let request = client.post(server.url(path)).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.json::<Value>().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let text = "We will storm the castle at dawn.";
    let shield = json!({"shield_id": "llama-guard", "messages": [{"role": "user", "content": text}]});
    let moderation = json!({"input": text});

    let flagged = ask("/v1/safety/run-shield", &basic, shield.clone()).await;
    let metadata = &flagged["violation"]["metadata"];
    assert_eq!(metadata["violation_type"], "S1", "{flagged}");
    assert_eq!(metadata["safety_level"], "basic_user");
    assert_eq!(metadata["violated_categories"], json!([{"category": "violence", "score": 0.45, "limit": 0.3}]));
    assert_eq!(metadata["category_scores"]["S1"], 0.45, "the raw scores stay");
    let passed = ask("/v1/safety/run-shield", &research, shield).await;
    assert_eq!(passed, json!({"violation": null}));

    let flagged = ask("/v1/moderations", &basic, moderation.clone()).await;
    let result = &flagged["results"][0];
    assert_eq!(result["flagged"], true, "{flagged}");
    assert_eq!(result["categories"]["Violent Crimes"], true);
    assert_eq!(result["metadata"]["safety_level"], "basic_user");
    assert_eq!(result["metadata"]["violation_type"], json!(["S1"]));
    let passed = ask("/v1/moderations", &research, moderation).await;
    let result = &passed["results"][0];
    assert_eq!(result["flagged"], false, "{passed}");
    assert_eq!(result["category_scores"]["Violent Crimes"], 0.45);
    assert_eq!(result["metadata"], json!({}));
}

/// With `n > 1` every choice is checked on its own: a reply the guard flags is filtered in each choice,
/// plain and streamed, not only in the first.
#[tokio::test]
async fn each_of_n_choices_passes_the_output_check() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let server = dev::start_with_env(dir.path(), 0, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")]);
    let research = token(dir.path(), &server.base, &["--scope", "model_smollm2_135m", "--scope", "research_access"]);
    let client = reqwest::Client::new();
    for stream in [false, true] {
        let mut body = chat("Write a grim tale", stream);
        body["n"] = json!(3);
        body["temperature"] = json!(1);
        let response = client.post(server.url("/v1/chat/completions")).bearer_auth(&research).json(&body);
        let text = response.send().await.unwrap().text().await.unwrap();
        let finishes: Vec<(u64, String)> = if stream {
            let events = sse_events(&text);
            let content: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
            assert_eq!(content, "", "no refused text was sent: {text}");
            events
                .iter()
                .filter_map(|e| {
                    let choice = &e["choices"][0];
                    Some((choice["index"].as_u64()?, choice["finish_reason"].as_str()?.to_string()))
                })
                .collect()
        } else {
            let body: Value = serde_json::from_str(&text).unwrap();
            body["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["index"].as_u64().unwrap(), c["finish_reason"].as_str().unwrap().to_string()))
                .collect()
        };
        let mut finishes = finishes;
        finishes.sort();
        let filtered: Vec<(u64, String)> = (0..3).map(|i| (i, "content_filter".to_string())).collect();
        assert_eq!(finishes, filtered, "stream: {stream}: {text}");
    }
}
