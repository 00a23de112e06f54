//! Shields through the real server: `GET /v1/shields[/{id}]`, `POST /v1/safety/run-shield` and
//! `POST /v1/moderations`, with the default model standing in as the Llama Guard model (no Llama Guard
//! weights can be downloaded here). Shapes and error texts follow docs/reference/llama-stack-api.md §a.2, §a.6 and §e.
//!
//! Scoring runs the ~200-token guard prompt through the model, which takes a while on a small CPU, so
//! only one test scores; the others stop at validation or authorization, before the engine.

use crate::support::dev::{self, token};
use crate::support::{MODEL_ID, Server, assert_error, default_model, keys};
use serde_json::{Value, json};

/// Two shields on the default model: `llama-guard` (only S1, S10, S12 left, which keeps the prompt
/// short) and one whose id contains `/`.
fn shields_yaml() -> String {
    format!(
        "shields:\n  - id: llama-guard\n    model: {MODEL_ID}\n    excluded_categories: [S2, S3, S4, S5, S6, S7, S8, S9, S11, S13, S14]\n  - id: team/strict\n    model: {MODEL_ID}\n"
    )
}

fn start() -> Server {
    Server::start_with_config(0, &format!("oauth_config:\n  enable_auth: false\n{}", shields_yaml()), None)
}

const SHIELD_KEYS: [&str; 5] = ["identifier", "params", "provider_id", "provider_resource_id", "type"];

#[tokio::test]
async fn shields_are_listed_and_retrieved_by_either_spelling_of_the_id() {
    let server = start();
    let (status, list) = server.get_json("/v1/shields").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(keys(&list), ["data"]);
    let first = &list["data"][0];
    assert_eq!(keys(first), SHIELD_KEYS);
    assert_eq!(
        *first,
        json!({"identifier": "llama-guard", "provider_resource_id": MODEL_ID, "provider_id": "llama-guard", "type": "shield", "params": {}})
    );
    assert_eq!(list["data"][1]["identifier"], "team/strict");

    for path in ["/v1/shields/team/strict", "/v1/shields/team%2Fstrict"] {
        let (status, shield) = server.get_json(path).await;
        assert_eq!((status, &shield), (200, &list["data"][1]), "{path}");
    }
    let (status, body) = server.get_json("/v1/shields/nope").await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["message"], "Shield 'nope' not found");

    let (_, providers) = server.get_json("/v1/providers").await;
    let safety = &providers["data"][1];
    assert_eq!(
        (safety["api"].as_str(), safety["provider_type"].as_str()),
        (Some("safety"), Some("inline::llama-guard"))
    );
    assert_eq!(
        safety["config"]["shields"][0],
        json!({"shield_id": "llama-guard", "model": MODEL_ID, "categories": ["S1", "S10", "S12"]})
    );
    assert_eq!(server.get_json("/v1/providers/llama-guard").await, (200, safety.clone()));

    let (_, routes) = server.get_json("/v1/inspect/routes").await;
    let shield_route =
        json!({"route": "/v1/shields/{shield_id:path}", "method": "GET", "provider_types": ["inline::llama-guard"]});
    assert!(routes["data"].as_array().unwrap().contains(&shield_route), "{routes}");
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_scoring() {
    let server = start();
    let cases = [
        (
            "/v1/safety/run-shield",
            json!({"shield_id": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            Some(
                "Shield `nope` not served by provider: `llama-guard`. Make sure there is an Safety provider serving this shield.",
            ),
        ),
        (
            "/v1/safety/run-shield",
            json!({"shield_id": "llama-guard", "messages": []}),
            Some("Messages must not be empty"),
        ),
        ("/v1/safety/run-shield", json!({"shield_id": "", "messages": [{"role": "user", "content": "hi"}]}), None),
        ("/v1/safety/run-shield", json!({"shield_id": "llama-guard"}), None),
        (
            "/v1/safety/run-shield",
            json!({"shield_id": "llama-guard", "messages": [{"role": "robot", "content": "x"}]}),
            None,
        ),
        (
            "/v1/safety/run-shield",
            json!({"shield_id": "llama-guard", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            None,
        ),
        ("/v1/moderations", json!({"input": []}), Some("input must hold at least one string")),
        ("/v1/moderations", json!({"input": 42}), None),
        ("/v1/moderations", json!({"model": "x"}), None),
        (
            "/v1/moderations",
            json!({"input": "hi", "model": "nope"}),
            Some("No shield associated with provider_resource id nope: choose from ['local/smollm2-135m-instruct']"),
        ),
        (
            "/v1/moderations",
            json!({"input": "hi", "model": MODEL_ID}),
            Some(
                "Multiple shields associated with provider_resource id local/smollm2-135m-instruct: ['llama-guard', 'team/strict']; choose one with run-shield",
            ),
        ),
    ];
    for (path, body, message) in cases {
        let (status, answer) = server.post_json(path, &body).await;
        assert_error(status, &answer, 400);
        if let Some(message) = message {
            assert_eq!(answer["error"]["message"], message, "{path} {body}");
        }
    }
    let response = server.client.post(server.url("/v1/moderations")).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let (status, body) = server.get_json("/v1/safety/run-shield").await;
    assert_error(status, &body, 405);
    assert!(server.get_json("/v1/health").await.0 == 200, "the server keeps answering");
}

#[tokio::test]
async fn without_shields_the_list_is_empty_and_moderations_need_one() {
    let server = Server::start();
    assert_eq!(server.get_json("/v1/shields").await, (200, json!({"data": []})));
    let (status, body) = server.post_json("/v1/moderations", &json!({"input": "hi"})).await;
    assert_error(status, &body, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("No moderation model specified"), "{body}");
}

#[tokio::test]
async fn run_shield_and_moderations_return_real_scores() {
    // One shield, so `model` can name it; only S1, S10 and S12 are in the prompt.
    let yaml = format!(
        "oauth_config:\n  enable_auth: false\nshields:\n  - id: llama-guard\n    model: {MODEL_ID}\n    excluded_categories: [S2, S3, S4, S5, S6, S7, S8, S9, S11, S13, S14]\n"
    );
    let server = Server::start_with_config(0, &yaml, None);

    let conversation = json!([
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]);
    let (status, body) = server
        .post_json(
            "/v1/safety/run-shield",
            &json!({"shield_id": "llama-guard", "messages": conversation, "params": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["violation"]);
    if !body["violation"].is_null() {
        let violation = &body["violation"];
        assert_eq!(keys(violation), ["metadata", "user_message", "violation_level"]);
        assert_eq!(violation["violation_level"], "error");
        assert!(["S1", "S10", "S12"].contains(&violation["metadata"]["violation_type"].as_str().unwrap()));
    }

    let (status, body) = server
        .post_json("/v1/moderations", &json!({"input": ["Hello there!", "I will hurt you."], "model": MODEL_ID}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["id", "model", "results"]);
    assert!(body["id"].as_str().unwrap().starts_with("modr-"), "{body}");
    assert_eq!(body["model"], MODEL_ID);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one result per input");
    for result in results {
        assert_eq!(
            keys(result),
            ["categories", "category_applied_input_types", "category_scores", "flagged", "metadata", "user_message"]
        );
        let scores = result["category_scores"].as_object().unwrap();
        assert_eq!(scores.len(), 14);
        assert_eq!(result["categories"].as_object().unwrap().len(), 14);
        for (name, score) in scores {
            let score = score.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{name}: {score}");
        }
        // Excluded categories are not scored; the three in the prompt share P(unsafe).
        assert_eq!(scores["Defamation"], 0.0);
        assert_eq!(scores["Code Interpreter Abuse"], 0.0);
        let in_prompt: f64 =
            ["Violent Crimes", "Hate", "Sexual Content"].iter().map(|n| scores[*n].as_f64().unwrap()).sum();
        assert!(in_prompt > 0.0 && in_prompt <= 1.0, "{result}");
        let flagged = result["flagged"].as_bool().unwrap();
        assert_eq!(result["user_message"].is_null(), !flagged);
        assert_eq!(result["metadata"] == json!({}), !flagged);
    }
    // Different inputs, different forward passes.
    assert_ne!(results[0]["category_scores"], results[1]["category_scores"]);
}

#[tokio::test]
async fn shield_access_needs_the_safety_scope() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n{}",
        default_model().display(),
        shields_yaml()
    );
    std::fs::write(dir.path().join("stack.yaml"), yaml).unwrap();
    let server = dev::start(dir.path(), 0);
    let client = reqwest::Client::new();
    let call = |token: Option<String>, method: &'static str, path: &'static str, body: Value| {
        let mut request = client.request(method.parse().unwrap(), server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if method == "POST" {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (status, challenge, response.json::<Value>().await.unwrap())
        }
    };

    let model_only = token(dir.path(), &server.base, &["--scope", "model_smollm2_135m"]);
    let (status, _, body) = call(Some(model_only.clone()), "GET", "/v1/shields", Value::Null).await;
    assert_eq!((status, body), (200, json!({"data": []})), "shields are hidden without model_safety");
    let (status, _, body) = call(Some(model_only.clone()), "GET", "/v1/shields/llama-guard", Value::Null).await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["message"], "Shield 'llama-guard' not found");
    let run = json!({"shield_id": "llama-guard", "messages": [{"role": "user", "content": "hi"}]});
    for (path, body) in [("/v1/safety/run-shield", run.clone()), ("/v1/moderations", json!({"input": "hi"}))] {
        let (status, challenge, answer) = call(Some(model_only.clone()), "POST", path, body).await;
        assert_error(status, &answer, 403);
        let challenge = challenge.expect("a 403 carries its challenge");
        assert!(challenge.contains("insufficient_scope") && challenge.contains("model_safety"), "{challenge}");
    }
    let (status, _, body) = call(None, "POST", "/v1/safety/run-shield", run).await;
    assert_error(status, &body, 401);

    // `llamagate token` grants model_safety by default when the config has shields.
    let full = token(dir.path(), &server.base, &[]);
    let (status, _, body) = call(Some(full.clone()), "GET", "/v1/shields", Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (status, _, body) = call(Some(full), "GET", "/v1/shields/team%2Fstrict", Value::Null).await;
    assert_eq!((status, body["identifier"].as_str()), (200, Some("team/strict")));
}
