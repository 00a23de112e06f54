//! Remote providers against a scripted upstream (`support::fault`), for what a real server cannot be
//! made to produce: error bodies that name an address and a key (they must not reach the client), a
//! 400 that must not be retried, and the `Authorization` header each request carried. Faults a real
//! server can produce behind a proxy (delays, 429/503, resets, garbage) are in `remote_proxy.rs`.

use serde_json::{Value, json};

use crate::support::fault::{Fault, FaultyUpstream};
use crate::support::remote::{Gate, REMOTE_SCOPE, UPSTREAM_KEY};

fn run_yaml(base_url: &str) -> String {
    format!(
        r#"server:
  host: 127.0.0.1
  port: 0
providers:
  inference:
    - provider_id: faulty
      provider_type: remote::passthrough
      config:
        base_url: {base_url}
        api_key: ${{env.LLAMACPP_API_KEY:=}}
        max_retries: 2
        breaker_failures: 5
registered_resources:
  models:
    - model_id: remote/faulty
      provider_id: faulty
      required_scope: {REMOTE_SCOPE}
oauth_config:
  enable_auth: false
  enable_rate_limiting: false
"#
    )
}

fn chat(stream: bool) -> Value {
    json!({"model": "remote/faulty", "messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 8, "stream": stream})
}

async fn post(gate: &Gate, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(gate.url("/v1/chat/completions")).bearer_auth(token).json(body).send().await.unwrap()
}

#[tokio::test]
async fn past_its_retries_an_upstream_error_is_answered_without_its_address_or_key() {
    let upstream = FaultyUpstream::start(&[Fault::Status(503), Fault::Status(503), Fault::Status(503)]).await;
    let gate = Gate::start(&run_yaml(&upstream.base_url));
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let response = post(&gate, &token, &chat(false)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = response.text().await.unwrap();
    assert!(body.contains("provider `faulty` is busy"), "{body}");
    assert_eq!(upstream.requests(), 3, "the first try and two retries");

    // A 400 is not retried; its message is passed on with the address and key blanked out.
    let upstream = FaultyUpstream::start(&[Fault::Status(400)]).await;
    let gate = Gate::start(&run_yaml(&upstream.base_url));
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let response = post(&gate, &token, &chat(false)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, "provider `faulty` refused the request: overloaded at [url] with key [redacted]", "{body}");
    assert_eq!(upstream.requests(), 1);
    assert!(!gate.log().contains(UPSTREAM_KEY));
}

/// `X-LlamaStack-Provider-Data`: a caller's own key replaces the configured one only where the provider
/// allows it (`allow_provider_data: true`; off by default), and is never logged.
#[tokio::test]
async fn a_callers_own_provider_key_is_used_only_where_allowed() {
    let upstream = FaultyUpstream::start(&[]).await;
    // A second provider on the same upstream, allowing callers' own keys.
    let own_keys = format!(
        "    - provider_id: own-keys\n      provider_type: remote::passthrough\n      config:\n        \
         base_url: {}\n        api_key: ${{env.LLAMACPP_API_KEY:=}}\n        allow_provider_data: true\n\
         registered_resources:\n  models:\n    - model_id: remote/own-keys\n      provider_id: own-keys\n      \
         required_scope: {REMOTE_SCOPE}\n",
        upstream.base_url
    );
    let yaml = run_yaml(&upstream.base_url).replace("registered_resources:\n  models:\n", &own_keys);
    let gate = Gate::start(&yaml);
    let token = gate.token("alice", &[REMOTE_SCOPE]);
    let own_key = "sk-callers-own-91b2";
    let send = |model: &'static str, with_header: bool| {
        let mut body = chat(false);
        body["model"] = json!(model);
        let mut request = reqwest::Client::new().post(gate.url("/v1/chat/completions")).bearer_auth(&token).json(&body);
        if with_header {
            request =
                request.header("X-LlamaStack-Provider-Data", format!(r#"{{"passthrough_api_key": "{own_key}"}}"#));
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("remote/own-keys", true).await, 200);
    assert_eq!(send("remote/own-keys", false).await, 200);
    assert_eq!(send("remote/faulty", true).await, 200);
    let configured = format!("Bearer {UPSTREAM_KEY}");
    assert_eq!(upstream.authorizations(), [format!("Bearer {own_key}"), configured.clone(), configured]);
    // Not one JSON object: refused before anything is called.
    let response = reqwest::Client::new()
        .post(gate.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .header("X-LlamaStack-Provider-Data", "sk-not-json")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(!response.text().await.unwrap().contains("sk-not-json"));
    assert_eq!(upstream.requests(), 3);
    assert!(!gate.log().contains(own_key) && !gate.audit_text().contains(own_key));
}
