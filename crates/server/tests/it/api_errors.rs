//! The real server's model routes and its error answers: every failure is the Llama Stack envelope
//! with the documented status, never a bare framework rejection.

use crate::support::{MAX_BODY_BYTES, MODEL_ID, Server, assert_error, keys};
use serde_json::json;

#[tokio::test]
async fn models_are_listed_and_retrieved_by_either_id_spelling() {
    let server = Server::start();
    let (status, body) = server.get_json("/v1/health").await;
    assert_eq!((status, body), (200, json!({"status": "OK"})));
    let (status, body) = server.get_json("/v1/version").await;
    assert_eq!(status, 200);
    assert!(body["version"].as_str().unwrap().starts_with("0.7."), "{body}");

    let (status, list) = server.get_json("/v1/models").await;
    assert_eq!(status, 200);
    let entry = &list["data"][0];
    assert_eq!(keys(entry), ["created", "custom_metadata", "id", "object", "owned_by"]);
    assert_eq!(entry["id"], MODEL_ID);
    assert_eq!(entry["custom_metadata"]["model_type"], "llm");
    assert!(entry["custom_metadata"]["provider_id"].is_string());
    // The weights' file by name: no answer tells a client where the server keeps its files.
    assert_eq!(entry["custom_metadata"]["provider_resource_id"], "SmolLM2-135M-Instruct.Q4_1.gguf");

    let encoded = MODEL_ID.replace('/', "%2F");
    for path in [format!("/v1/models/{MODEL_ID}"), format!("/v1/models/{encoded}")] {
        let (status, model) = server.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {model}");
        assert_eq!(
            keys(&model),
            ["identifier", "metadata", "model_type", "model_validation", "provider_id", "provider_resource_id", "type"]
        );
        assert_eq!(model["identifier"], MODEL_ID);
        assert_eq!(model["provider_resource_id"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    }
    let (_, providers) = server.get_json("/v1/providers").await;
    assert!(!providers.to_string().contains(&*crate::support::default_model().display().to_string()), "{providers}");
}

#[tokio::test]
async fn failures_use_the_envelope_and_the_documented_status() {
    let server = Server::start();
    let chat = |extra: serde_json::Value| {
        let mut body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    let (status, body) = server.get_json("/v1/models/no/such-model").await;
    assert_error(status, &body, 404);
    let (status, body) = server.post_json("/v1/chat/completions", &chat(json!({"model": "nope"}))).await;
    assert_error(status, &body, 404);
    let (status, body) = server.post_json("/v1/chat/completions", &chat(json!({"n": 9}))).await;
    assert_error(status, &body, 400);
    let (status, body) =
        server.post_json("/v1/chat/completions", &chat(json!({"response_format": {"type": "xml"}}))).await;
    assert_error(status, &body, 400);
    let (status, body) = server.post_json("/v1/chat/completions", &chat(json!({"temperature": "hot"}))).await;
    assert_error(status, &body, 400);
    let (status, body) = server.post_json("/v1/completions", &json!({"model": MODEL_ID})).await;
    assert_error(status, &body, 400);

    let raw = |body: Vec<u8>| {
        server.client.post(server.url("/v1/chat/completions")).header("content-type", "application/json").body(body)
    };
    for bad in [b"{not json".to_vec(), vec![0xff, 0xfe, b'{']] {
        let response = raw(bad).send().await.unwrap();
        let status = response.status().as_u16();
        assert_error(status, &response.json().await.unwrap(), 400);
    }
    let response = raw(vec![b' '; MAX_BODY_BYTES + 1]).send().await.unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 413);

    let (status, body) = server.get_json("/v1/no-such-route").await;
    assert_error(status, &body, 404);
    let response = server.client.delete(server.url("/v1/chat/completions")).send().await.unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 405);

    // The server is still answering after all of that.
    assert_eq!(server.get_json("/v1/health").await.0, 200);
}
