//! A second llamagate as the upstream: llamagate B serves the default model itself (its own development
//! issuer, its own audit), and llamagate A reaches it as a `remote::passthrough` provider at B's `/v1`
//! with a token B issued as the provider key. What A answers, streams and charges must be what B
//! generated and counted — B's audit records are the witness.

use serde_json::{Value, json};

use crate::support::default_model;
use crate::support::remote::{Gate, REMOTE_SCOPE};
use crate::support::sse_events;

/// The scope B's local model needs: the token A sends must carry it.
const B_SCOPE: &str = "model_smol_b";

/// The budget is 1,000 tokens per hour: while the test runs it refills at most a token or two.
const REFILL_SLACK: u64 = 3;

/// B: the default model as `smollm2`, its own tier for A's token so its counts are audited.
fn b_yaml() -> String {
    format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: smollm2\n    source: {}\n    context_length: 1024\n    \
         required_scope: {B_SCOPE}\n",
        default_model().display()
    )
}

/// A: one provider, `gate-b`, at B's `/v1`, its key from `B_TOKEN` (with an empty default: `llamagate token`
/// reads the same config without that variable); a 1,000-token tier for its callers.
fn a_yaml(b_base: &str) -> String {
    format!(
        r#"server:
  host: 127.0.0.1
  port: 0
providers:
  inference:
    - provider_id: gate-b
      provider_type: remote::passthrough
      config:
        base_url: {b_base}/v1
        api_key: ${{env.B_TOKEN:=}}
        max_retries: 0
registered_resources:
  models:
    - model_id: remote/via-b
      provider_id: gate-b
      provider_model_id: smollm2
      required_scope: {REMOTE_SCOPE}
oauth_config:
  rate_limits:
    backend: memory
    tiers:
      metered: {{requests: 100, tokens: 1000, window_seconds: 3600}}
    scope_tiers:
      metered_access: metered
"#
    )
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

/// B's closing audit records for its model, in order.
async fn b_answers(b: &Gate) -> Vec<Value> {
    b.audit().await.into_iter().filter(|r| r["event"] == "inference_response" && r["model"] == "smollm2").collect()
}

#[tokio::test]
async fn a_gate_in_front_of_a_gate_answers_streams_and_charges_what_the_second_generated() {
    let b = Gate::start(&b_yaml());
    let b_token = b.token("gate-a", &[B_SCOPE]);
    let a = Gate::start_with_env(&a_yaml(&b.base), &[("B_TOKEN", &b_token)]);
    let token = a.token("alice", &[REMOTE_SCOPE, "metered_access"]);
    let client = reqwest::Client::new();
    let remaining = || async {
        let usage: Value =
            client.get(a.url("/v1/usage")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        usage["tokens"]["remaining"].as_u64().unwrap_or_else(|| panic!("{usage}"))
    };

    // B directly, for the text it generates (greedy, so the same each time).
    let direct: Value = client
        .post(b.url("/v1/chat/completions"))
        .bearer_auth(&b_token)
        .json(&chat("smollm2", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = direct["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("{direct}")).to_string();
    assert!(!text.is_empty(), "{direct}");

    // Through A, not streamed: B's text, and the usage B audited for that call, charged on A.
    let response = client.post(a.url("/v1/chat/completions")).bearer_auth(&token).json(&chat("remote/via-b", false));
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], text.as_str(), "{body}");
    assert_eq!(body["model"], "remote/via-b");
    let records = b_answers(&b).await;
    assert_eq!(records.len(), 2, "B answered the direct call and A's: {records:#?}");
    let seen = &records[1];
    assert_eq!(seen["subject"], "gate-a", "B saw A's token: {seen}");
    assert_eq!(body["usage"]["prompt_tokens"], seen["prompt_tokens"], "{body}\n{seen}");
    assert_eq!(body["usage"]["completion_tokens"], seen["completion_tokens"], "{body}\n{seen}");
    let first_total = body["usage"]["total_tokens"].as_u64().unwrap();
    let spent = 1000 - remaining().await;
    assert!((first_total - REFILL_SLACK..=first_total).contains(&spent), "A charged {spent}, B counted {first_total}");

    // Through A, streamed: the same text in A's own chunks, and B's count in the usage chunk.
    let response = client.post(a.url("/v1/chat/completions")).bearer_auth(&token).json(&chat("remote/via-b", true));
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())), "{events:?}");
    let streamed: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, text);
    let usage = events.iter().rev().find(|e| e["usage"].is_object()).map(|e| e["usage"].clone());
    let usage = usage.unwrap_or_else(|| panic!("no usage chunk: {events:?}"));
    let records = b_answers(&b).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(usage["prompt_tokens"], records[2]["prompt_tokens"], "{usage}\n{}", records[2]);
    assert_eq!(usage["completion_tokens"], records[2]["completion_tokens"], "{usage}\n{}", records[2]);
    let total = first_total + usage["total_tokens"].as_u64().unwrap();
    let spent = 1000 - remaining().await;
    assert!((total - REFILL_SLACK..=total).contains(&spent), "A charged {spent}, B counted {total}");

    // A's audit agrees and names the provider; B's token is in none of A's outputs.
    let a_records: Vec<Value> = a
        .audit()
        .await
        .into_iter()
        .filter(|r| r["event"] == "inference_response" && r["model"] == "remote/via-b")
        .collect();
    assert_eq!(a_records.len(), 2, "{a_records:#?}");
    for (mine, theirs) in a_records.iter().zip(&records[1..]) {
        assert_eq!(mine["provider"], "gate-b", "{mine}");
        assert_eq!(mine["usage_source"], "upstream", "{mine}");
        assert_eq!(mine["completion_tokens"], theirs["completion_tokens"], "{mine}\n{theirs}");
    }
    assert!(!a.log().contains(&b_token) && !a.audit_text().contains(&b_token), "B's token leaked on A");
}

/// A client that leaves A mid-stream closes A's stream from B, and B stops generating: both audit the
/// request as cancelled, B well short of what was asked for.
#[tokio::test]
async fn a_client_leaving_the_first_gate_cancels_the_generation_on_the_second() {
    let b = Gate::start(&b_yaml());
    let b_token = b.token("gate-a", &[B_SCOPE]);
    let a = Gate::start_with_env(&a_yaml(&b.base), &[("B_TOKEN", &b_token)]);
    let token = a.token("alice", &[REMOTE_SCOPE]);
    let long = json!({
        "model": "remote/via-b",
        "prompt": "Count from one to one thousand: one, two, three,",
        "max_tokens": 900,
        "temperature": 0,
        "stream": true,
    });
    let mut response =
        reqwest::Client::new().post(a.url("/v1/completions")).bearer_auth(&token).json(&long).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.chunk().await.unwrap().expect("a first event");
    drop(response);
    let mut record = None;
    for _ in 0..100 {
        record = b_answers(&b).await.into_iter().next();
        if record.is_some() {
            break;
        }
    }
    let record = record.expect("B wrote a closing record");
    assert_eq!(record["finish_reason"], "cancelled", "{record}");
    assert!(record["completion_tokens"].as_u64().unwrap_or(900) < 900, "{record}");
    let mine = a.audit().await.into_iter().find(|r| r["event"] == "inference_response" && r["model"] == "remote/via-b");
    assert_eq!(mine.map(|r| r["finish_reason"].clone()), Some(json!("cancelled")));
}
