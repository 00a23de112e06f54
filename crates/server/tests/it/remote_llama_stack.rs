//! A user's Llama Stack config carried over: the real binary starts on Llama Stack 0.7.3's own `starter`
//! distribution `config.yaml` (vendored at tests/fixtures/), with the environment that config reads
//! (`VLLM_URL` pointing at a real `llama-server`, `VLLM_API_TOKEN` its key). The one edit is the one the
//! migration guide asks for: the starter registers no models, so one is registered for its `vllm`
//! provider. The gate must start, name what it skips, and serve a chat completion through that provider.

use serde_json::{Value, json};

use crate::support::remote::{Gate, LlamaServer, REMOTE_SCOPE, UPSTREAM_KEY};

const STARTER: &str = include_str!("../fixtures/llama-stack-0.7.3-starter-config.yaml");

#[tokio::test]
async fn the_llama_stack_starter_config_starts_and_serves_through_its_vllm_provider() {
    let upstream = LlamaServer::start().await;
    let model = format!(
        "  models:\n  - model_id: smollm2\n    provider_id: vllm\n    provider_model_id: smollm2\n    \
         model_type: llm\n    required_scope: {REMOTE_SCOPE}\n"
    );
    assert!(STARTER.contains("  models: []\n"), "the fixture changed");
    let yaml = STARTER.replacen("  models: []\n", &model, 1);
    let gate = Gate::start_with_env(&yaml, &[("VLLM_URL", &upstream.base_url), ("VLLM_API_TOKEN", UPSTREAM_KEY)]);
    let log = gate.log();
    // What it does not implement is named at start, not refused.
    for skipped in ["providers.vector_io", "remote::bedrock", "vector_stores"] {
        assert!(log.contains(skipped), "`{skipped}` is not named at start:\n{log}");
    }
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let client = reqwest::Client::new();
    let models: Value =
        client.get(gate.url("/v1/models")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["smollm2"], "{models}");
    let body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 6,
    });
    let before = upstream.prompt_tokens_total().await;
    let response = client.post(gate.url("/v1/chat/completions")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(!answer["choices"][0]["message"]["content"].as_str().unwrap_or_default().is_empty(), "{answer}");
    assert!(upstream.prompt_tokens_total().await > before, "llama-server served it");
    let records = gate.audit().await;
    let record = records.iter().find(|r| r["event"] == "inference_response" && r["model"] == "smollm2");
    assert_eq!(record.map(|r| r["provider"].clone()), Some(json!("vllm")), "{records:#?}");
    assert!(!gate.log().contains(UPSTREAM_KEY));
}
