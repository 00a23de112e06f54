//! Field sets of every JSON body the real server sends, compared with the shapes of the Llama Stack
//! reference (`llama-stack-api.md` §a.2, §a.3, §a.5, §a.6). The SDKs deserialize by key, so a renamed,
//! missing or stray key is a compatibility bug even when the values are right.
//!
//! Shields, run-shield and moderations are checked the same way in `api_safety.rs`.
//!
//! Where the server sends more than the reference lists, the extra key is an OpenAI field the OpenAI
//! SDK reads too; each one is named in a comment below, so an accidental addition still fails.

use crate::support::dev::{self, token};
use crate::support::{MAX_BODY_BYTES, MODEL_ID, Server, keys, sse_events};
use serde_json::{Value, json};

/// §a.6 ChatCompletion.
const CHAT_COMPLETION: &[&str] =
    &["choices", "created", "id", "model", "object", "service_tier", "system_fingerprint", "usage"];
/// §a.6 ChatCompletion `choices[]`.
const CHAT_CHOICE: &[&str] = &["finish_reason", "index", "logprobs", "message"];
/// §a.6 ChatCompletion `message`.
const CHAT_MESSAGE: &[&str] = &["annotations", "audio", "content", "function_call", "refusal", "role", "tool_calls"];
/// §a.6 `usage`, with both breakdowns.
const USAGE: &[&str] =
    &["completion_tokens", "completion_tokens_details", "prompt_tokens", "prompt_tokens_details", "total_tokens"];
/// §a.5 chat chunk (all keys serialized, nulls included).
const CHAT_CHUNK: &[&str] =
    &["choices", "created", "id", "model", "object", "service_tier", "system_fingerprint", "usage"];
/// §a.5 chat chunk `choices[]`.
const CHAT_CHUNK_CHOICE: &[&str] = &["delta", "finish_reason", "index", "logprobs"];
/// §a.5 chat chunk `delta`.
const CHAT_DELTA: &[&str] = &["content", "reasoning_content", "refusal", "role", "tool_calls"];
/// §a.2 row 4 `text_completion`, plus OpenAI's `system_fingerprint` and `usage` (exact token counts,
/// which the reference leaves to the provider). Streamed chunks have the same shape (§a.5).
const TEXT_COMPLETION: &[&str] = &["choices", "created", "id", "model", "object", "system_fingerprint", "usage"];
/// §a.2 row 4 `choices[]`.
const TEXT_CHOICE: &[&str] = &["finish_reason", "index", "logprobs", "text"];
/// §a.2 row 6, plus `object: "list"`, which OpenAI's list page carries.
const MODEL_LIST: &[&str] = &["data", "object"];
/// §a.6 OpenAIModel.
const OPENAI_MODEL: &[&str] = &["created", "custom_metadata", "id", "object", "owned_by"];
/// §a.6 Model (retrieve).
const NATIVE_MODEL: &[&str] =
    &["identifier", "metadata", "model_type", "model_validation", "provider_id", "provider_resource_id", "type"];
/// §a.2 rows 17–18 ProviderInfo.
const PROVIDER: &[&str] = &["api", "config", "health", "provider_id", "provider_type"];
/// §a.2 row 16 route entry.
const ROUTE: &[&str] = &["method", "provider_types", "route"];
/// §a.3: `{"error":{"message"}}`; `type`, `code` and `param` appear when not null. We always send
/// `code` (the status as a string), as the mid-stream error event does (§a.5).
const ERROR_DETAIL: &[&str] = &["code", "message"];

fn chat_body(extra: Value) -> Value {
    let mut body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
        "temperature": 0});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn completion_body(extra: Value) -> Value {
    let mut body = json!({"model": MODEL_ID, "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

/// Asserts the error envelope's field set and the status.
fn assert_envelope(what: &str, status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(keys(body), ["error"], "{what}: {body}");
    assert_eq!(keys(&body["error"]), ERROR_DETAIL, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert_eq!(body["error"]["code"].as_str(), Some(expected.to_string().as_str()), "{what}: {body}");
}

async fn stream(server: &Server, path: &str, body: &Value) -> Vec<Value> {
    let response = server.client.post(server.url(path)).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{events:?}");
    events[..events.len() - 1].to_vec()
}

#[tokio::test]
async fn every_json_body_has_the_reference_field_set() {
    let server = Server::start();

    let (status, health) = server.get_json("/v1/health").await;
    assert_eq!((status, keys(&health)), (200, vec!["status"]));
    let (status, version) = server.get_json("/v1/version").await;
    assert_eq!((status, keys(&version)), (200, vec!["version"]));

    let (status, list) = server.get_json("/v1/models").await;
    assert_eq!((status, keys(&list)), (200, MODEL_LIST.to_vec()));
    let entry = &list["data"][0];
    assert_eq!(keys(entry), OPENAI_MODEL);
    for key in ["model_type", "provider_id", "provider_resource_id"] {
        assert!(entry["custom_metadata"][key].is_string(), "custom_metadata lacks {key}: {entry}");
    }
    let (status, model) = server.get_json(&format!("/v1/models/{MODEL_ID}")).await;
    assert_eq!((status, keys(&model)), (200, NATIVE_MODEL.to_vec()));

    let (status, providers) = server.get_json("/v1/providers").await;
    assert_eq!((status, keys(&providers)), (200, vec!["data"]));
    assert_eq!(keys(&providers["data"][0]), PROVIDER);
    let id = providers["data"][0]["provider_id"].as_str().unwrap();
    let (status, provider) = server.get_json(&format!("/v1/providers/{id}")).await;
    assert_eq!((status, keys(&provider)), (200, PROVIDER.to_vec()));

    let (status, routes) = server.get_json("/v1/inspect/routes").await;
    assert_eq!((status, keys(&routes)), (200, vec!["data"]));
    for route in routes["data"].as_array().unwrap() {
        assert_eq!(keys(route), ROUTE, "{route}");
    }

    let (status, chat) = server.post_json("/v1/chat/completions", &chat_body(json!({}))).await;
    assert_eq!((status, keys(&chat)), (200, CHAT_COMPLETION.to_vec()), "{chat}");
    assert_eq!(keys(&chat["choices"][0]), CHAT_CHOICE);
    assert_eq!(keys(&chat["choices"][0]["message"]), CHAT_MESSAGE);
    assert_eq!(keys(&chat["usage"]), USAGE);
    assert_eq!(keys(&chat["usage"]["prompt_tokens_details"]), ["cached_tokens"]);
    assert_eq!(keys(&chat["usage"]["completion_tokens_details"]), ["reasoning_tokens"]);

    let chunks = stream(
        &server,
        "/v1/chat/completions",
        &chat_body(json!({"stream": true,
        "stream_options": {"include_usage": true}})),
    )
    .await;
    for chunk in &chunks {
        assert_eq!(keys(chunk), CHAT_CHUNK, "{chunk}");
        for choice in chunk["choices"].as_array().unwrap() {
            assert_eq!(keys(choice), CHAT_CHUNK_CHOICE, "{chunk}");
            assert_eq!(keys(&choice["delta"]), CHAT_DELTA, "{chunk}");
        }
    }
    assert_eq!(keys(&chunks.last().unwrap()["usage"]), USAGE, "the usage chunk comes last");

    let (status, completion) = server.post_json("/v1/completions", &completion_body(json!({}))).await;
    assert_eq!((status, keys(&completion)), (200, TEXT_COMPLETION.to_vec()), "{completion}");
    assert_eq!(keys(&completion["choices"][0]), TEXT_CHOICE);
    assert_eq!(keys(&completion["usage"]), USAGE);
    let chunks = stream(&server, "/v1/completions", &completion_body(json!({"stream": true}))).await;
    for chunk in &chunks {
        assert_eq!(keys(chunk), TEXT_COMPLETION, "{chunk}");
        assert_eq!(keys(&chunk["choices"][0]), TEXT_CHOICE, "{chunk}");
    }
}

#[tokio::test]
async fn every_error_body_is_the_envelope() {
    let server = Server::start();

    let (status, body) = server.post_json("/v1/chat/completions", &chat_body(json!({"n": 9}))).await;
    assert_envelope("n over its bound", status, &body, 400);
    let (status, body) = server.get_json("/v1/providers/nope").await;
    assert_envelope("unknown provider", status, &body, 400);
    let (status, body) = server.get_json("/v1/inspect/routes?api_filter=v9").await;
    assert_envelope("unknown api_filter", status, &body, 400);
    let response = server
        .client
        .post(server.url("/v1/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_envelope("malformed JSON", status, &response.json().await.unwrap(), 400);

    let (status, body) = server.get_json("/v1/models/no/such-model").await;
    assert_envelope("unknown model", status, &body, 404);
    let (status, body) = server.post_json("/v1/completions", &completion_body(json!({"model": "nope"}))).await;
    assert_envelope("unknown model for inference", status, &body, 404);
    let (status, body) = server.get_json("/v1/no-such-route").await;
    assert_envelope("unknown route", status, &body, 404);

    let response = server.client.delete(server.url("/v1/models")).send().await.unwrap();
    let status = response.status().as_u16();
    assert_envelope("wrong method", status, &response.json().await.unwrap(), 405);

    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(vec![b' '; MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_envelope("oversize body", status, &response.json().await.unwrap(), 413);
}

/// `/openapi.json` serves the committed document, and `/docs/` serves Swagger UI from the binary.
#[tokio::test]
async fn openapi_document_and_docs_page_are_served() {
    let server = Server::start();

    let (status, served) = server.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/llamagate.json"));
    let committed: Value = serde_json::from_str(&committed.unwrap()).unwrap();
    // Not assert_eq!: the two documents are tens of kilobytes; the test in tests/it/openapi.rs says how.
    assert!(
        served == committed,
        "the served document differs from openapi/llamagate.json; regenerate it with \
         UPDATE_OPENAPI=1 cargo test -p llamagate-server --test it openapi"
    );

    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = no_redirects.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/docs/");

    let response = server.client.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    // Offline: every script and stylesheet comes from this server.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "{page}");

    // …and every one of them is served.
    let assets: Vec<&str> = [" src=\"", " href=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|tail| tail.split('"').next())
        .collect();
    assert!(assets.len() >= 5, "{assets:?}");
    for asset in assets {
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let response = server.client.get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    let initializer = server.client.get(server.url("/docs/swagger-initializer.js")).send().await.unwrap();
    assert_eq!(initializer.status(), 200);
    assert!(initializer.text().await.unwrap().contains("/openapi.json"), "the page loads our document");
    let css = server.client.get(server.url("/docs/swagger-ui.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    let (status, body) = server.get_json("/docs/no-such-file.js").await;
    assert_envelope("unknown docs asset", status, &body, 404);
}

/// With authentication on, the document and its page are for operators: a token, with the operator scope.
#[tokio::test]
async fn openapi_document_and_docs_page_need_a_token_when_auth_is_on() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    dev::write_default_config(dir.path());
    let server = dev::start(dir.path(), 0);
    let client = reqwest::Client::new();
    for path in ["/openapi.json", "/docs/", "/docs/swagger-ui.css"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("www-authenticate"), "{path}");
    }
    let operator = token(dir.path(), &server.base, &["--scope", "llamagate_operator"]);
    let response = client.get(server.url("/openapi.json")).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
}
