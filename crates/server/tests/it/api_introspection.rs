//! The real server's introspection routes: providers (with redacted config) and the route listing.

use crate::support::{MODEL_ID, Server, assert_error, keys};
use serde_json::json;

#[tokio::test]
async fn the_inference_provider_is_listed_and_retrieved() {
    let server = Server::start();
    let (status, list) = server.get_json("/v1/providers").await;
    assert_eq!(status, 200, "{list}");
    let provider = &list["data"][0];
    assert_eq!(keys(provider), ["api", "config", "health", "provider_id", "provider_type"]);
    assert_eq!(provider["api"], "inference");
    assert_eq!(provider["provider_id"], "llamagate");
    assert_eq!(provider["provider_type"], "inline::llamagate");
    assert_eq!(provider["health"], json!({"status": "OK"}));
    assert_eq!(provider["config"]["models"][0]["model_id"], MODEL_ID);

    let (status, one) = server.get_json("/v1/providers/llamagate").await;
    assert_eq!((status, &one), (200, provider));

    let (status, body) = server.get_json("/v1/providers/ollama").await;
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["message"], "Provider ollama not found");
}

#[tokio::test]
async fn inspect_lists_every_served_route_once() {
    let server = Server::start();
    let (status, body) = server.get_json("/v1/inspect/routes").await;
    assert_eq!(status, 200, "{body}");
    let routes = body["data"].as_array().unwrap();
    for expected in [
        json!({"route": "/v1/models/{model_id:path}", "method": "GET", "provider_types": ["inline::llamagate"]}),
        json!({"route": "/v1/chat/completions", "method": "POST", "provider_types": ["inline::llamagate"]}),
        json!({"route": "/v1/providers", "method": "GET", "provider_types": []}),
        json!({"route": "/v1/inspect/routes", "method": "GET", "provider_types": []}),
    ] {
        assert_eq!(routes.iter().filter(|r| **r == expected).count(), 1, "{expected} in {body}");
    }
    // Without a filter every level is listed: `v1` and the `v1alpha` admin aliases.
    let level = |prefix: &str| json!({"data": routes.iter().filter(|r| r["route"].as_str().unwrap().starts_with(prefix)).cloned().collect::<Vec<_>>()});
    assert_eq!(server.get_json("/v1/inspect/routes?api_filter=v1").await, (200, level("/v1/")));
    let (status, alpha) = server.get_json("/v1/inspect/routes?api_filter=v1alpha").await;
    assert_eq!((status, &alpha), (200, &level("/v1alpha/")));
    assert_eq!(alpha["data"].as_array().unwrap().len(), 5, "{alpha}");
    assert_eq!(server.get_json("/v1alpha/admin/inspect/routes").await, (200, body.clone()), "the admin alias");
    assert_eq!(server.get_json("/v1/inspect/routes?api_filter=deprecated").await, (200, json!({"data": []})));
    let (status, body) = server.get_json("/v1/inspect/routes?api_filter=v9").await;
    assert_error(status, &body, 400);
}
