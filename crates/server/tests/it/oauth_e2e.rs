//! End to end against a REAL authorization server: node `oidc-provider` (tests/oauth-as, installed by
//! scripts/setup-sdk.sh; started by `crate::support::oauth`) issues client-credentials tokens, and the real
//! `llamagate serve` binary validates them. Nothing is skipped: if node or the authorization server
//! cannot start, the test fails with its output. The negative matrix is in `oauth_negative_*.rs`,
//! DPoP in `oauth_dpop.rs`, introspection outages and revocation in `oauth_introspection.rs`, key
//! rotation in `oauth_rotation.rs`.

use crate::support::oauth::{SMOLLM_SCOPE, call, chat_body, model_ids, start_pair};
use crate::support::{MODEL_ID, Server, assert_error, serve_once};
use serde_json::json;

#[tokio::test]
async fn jwt_tokens_from_a_real_authorization_server() {
    let (auth, server) = start_pair("").await;
    let c = &server.client;
    let metadata_url = format!("{}/.well-known/oauth-protected-resource", server.base);

    // No token: 401 with the Bearer challenge pointing at the resource metadata.
    let (status, challenges, body) = call(c.get(server.url("/v1/models"))).await;
    assert_error(status, &body, 401);
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer realm=\"llamagate\""), "{challenges:?}");
    assert!(challenges[0].contains(&format!("resource_metadata=\"{metadata_url}\"")), "{challenges:?}");
    assert!(!challenges[0].contains("error="), "no error code without credentials: {challenges:?}");

    // Garbage and malformed tokens: 401 invalid_token.
    for token in ["garbage", "not.a.jwt", "eyJhbGciOiJub25lIn0.e30."] {
        let (status, challenges, body) = call(c.get(server.url("/v1/models")).bearer_auth(token)).await;
        assert_error(status, &body, 401);
        assert!(challenges[0].contains("error=\"invalid_token\""), "{token}: {challenges:?}");
    }

    // A token in the query string is refused outright, even a valid one.
    let rs256 = auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    let (status, challenges, body) = call(c.get(server.url(&format!("/v1/models?access_token={rs256}")))).await;
    assert_error(status, &body, 400);
    assert!(challenges[0].contains("error=\"invalid_request\""), "{challenges:?}");

    // Unknown paths need a token too (deny by default); with one they are an ordinary 404.
    let (status, challenges, body) = call(c.get(server.url("/v1/no-such-route"))).await;
    assert_error(status, &body, 401);
    assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
    let (status, _, body) = call(c.get(server.url("/v1/no-such-route")).bearer_auth(&rs256)).await;
    assert_error(status, &body, 404);
    let (status, _, body) = call(c.get(server.url("/v1/health/"))).await;
    assert_error(status, &body, 401);

    // Public routes work without a token.
    let (status, _, body) = call(c.get(server.url("/v1/health"))).await;
    assert_eq!((status, &body), (200, &json!({"status": "OK"})));
    let (status, _, body) = call(c.get(server.url("/v1/version"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call(c.get(&metadata_url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], server.base.as_str());
    assert_eq!(body["authorization_servers"], json!([auth.issuer]));
    assert_eq!(body["scopes_supported"], json!([SMOLLM_SCOPE]));

    // RS256 and ES256 tokens with the model's scope reach it.
    let es256 = auth.access_token("smollm-client", "smollm-secret", "/es256", SMOLLM_SCOPE).await;
    for (alg, token) in [("RS256", &rs256), ("ES256", &es256)] {
        let (status, _, body) = call(c.get(server.url("/v1/models")).bearer_auth(token)).await;
        assert_eq!(status, 200, "{alg}: {body}");
        assert_eq!(model_ids(&body), [MODEL_ID], "{alg}");
        let (status, _, body) = call(c.get(server.url(&format!("/v1/models/{MODEL_ID}"))).bearer_auth(token)).await;
        assert_eq!(status, 200, "{alg}: {body}");
        let (status, _, body) =
            call(c.post(server.url("/v1/chat/completions")).bearer_auth(token).json(&chat_body())).await;
        assert_eq!(status, 200, "{alg}: {body}");
        assert_eq!(body["object"], "chat.completion", "{alg}: {body}");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 2, "{body}");
    }

    // A token for another model: 403 insufficient_scope naming the required scope; nothing listed;
    // the model looks unknown.
    let other = auth.access_token("other-client", "other-secret", "", "model_llama_3_2_1b model_smollm2_135m").await;
    let (status, challenges, body) =
        call(c.post(server.url("/v1/chat/completions")).bearer_auth(&other).json(&chat_body())).await;
    assert_error(status, &body, 403);
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].contains("error=\"insufficient_scope\""), "{challenges:?}");
    assert!(challenges[0].contains(&format!("scope=\"{SMOLLM_SCOPE}\"")), "{challenges:?}");
    let completion = json!({"model": MODEL_ID, "prompt": "Hi", "max_tokens": 2, "temperature": 0});
    let (status, _, body) = call(c.post(server.url("/v1/completions")).bearer_auth(&other).json(&completion)).await;
    assert_error(status, &body, 403);
    let (status, _, body) = call(c.get(server.url("/v1/models")).bearer_auth(&other)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_ids(&body), Vec::<&str>::new());
    let (status, _, body) = call(c.get(server.url(&format!("/v1/models/{MODEL_ID}"))).bearer_auth(&other)).await;
    assert_error(status, &body, 404);

    // A token with no scope at all is authenticated but reaches no model.
    let bare = auth.access_token("smollm-client", "smollm-secret", "", "").await;
    let (status, _, body) =
        call(c.post(server.url("/v1/chat/completions")).bearer_auth(&bare).json(&chat_body())).await;
    assert_error(status, &body, 403);
}

#[tokio::test]
async fn opaque_tokens_via_introspection() {
    let (auth, server) = start_pair(
        "  token_validation_method: introspection\n  client_id: rs-introspector\n  client_secret: rs-secret\n",
    )
    .await;
    let c = &server.client;
    let opaque = auth.access_token("smollm-client", "smollm-secret", "/opaque", SMOLLM_SCOPE).await;
    assert!(!opaque.starts_with("eyJ"), "expected an opaque token: {opaque}");
    let (status, _, body) = call(c.get(server.url("/v1/models")).bearer_auth(&opaque)).await;
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert_eq!(model_ids(&body), [MODEL_ID]);
    let (status, _, body) =
        call(c.post(server.url("/v1/chat/completions")).bearer_auth(&opaque).json(&chat_body())).await;
    assert_eq!(status, 200, "{body}");

    // The other client's opaque token is active but lacks the scope.
    let other = auth.access_token("other-client", "other-secret", "/opaque", "model_llama_3_2_1b").await;
    let (status, challenges, body) =
        call(c.post(server.url("/v1/chat/completions")).bearer_auth(&other).json(&chat_body())).await;
    assert_error(status, &body, 403);
    assert!(challenges[0].contains(&format!("scope=\"{SMOLLM_SCOPE}\"")), "{challenges:?}");

    // An unknown opaque token is inactive: 401 invalid_token.
    let (status, challenges, body) =
        call(c.get(server.url("/v1/models")).bearer_auth("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_error(status, &body, 401);
    assert!(challenges[0].contains("error=\"invalid_token\""), "{challenges:?}");
}

#[test]
fn start_up_refuses_unsafe_or_invalid_auth_config() {
    // No oauth_config at all: deny by default.
    let (ok, stderr) = serve_once("");
    assert!(!ok);
    assert!(stderr.contains("oauth_config") && stderr.contains("enable_auth: false"), "{stderr}");
    // Enabled but incomplete: the key is named.
    let (ok, stderr) = serve_once("oauth_config:\n  stack_uri: http://127.0.0.1:8321\n");
    assert!(!ok);
    assert!(stderr.contains("oauth_config.auth_server_uri"), "{stderr}");
    // A served model with no scope under enforced permissions.
    let (ok, stderr) = serve_once(
        "  - id: tiny-model\n    source: org/name\noauth_config:\n  auth_server_uri: http://127.0.0.1:9\n  stack_uri: http://127.0.0.1:8321\n",
    );
    assert!(!ok);
    assert!(stderr.contains("models[1].required_scope"), "{stderr}");
}

/// A well-formed RS256 `at+jwt` whose key (`kid: k1`) can only come from the authorization server.
const UNVERIFIABLE_JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhIiwiY2xpZW50X2lkIjoiYSIsImlzcyI6Imh0dHA6Ly8xMjcuMC4wLjE6OSIsImF1ZCI6IngiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic2NvcGUiOiJtb2RlbF9zbW9sbG0yXzEzNW0ifQ.c2ln";

#[tokio::test]
async fn an_unreachable_authorization_server_does_not_stop_start_up() {
    // Port 9 (discard) on loopback: nothing answers, so no key can be had.
    let yaml = "oauth_config:\n  auth_server_uri: http://127.0.0.1:9\n  stack_uri: http://127.0.0.1:8321\n";
    let server = Server::start_with_config(0, yaml, Some("warn"));
    let c = &server.client;
    let (status, _, body) = call(c.get(server.url("/v1/health"))).await;
    assert_eq!(status, 200, "{body}");
    // Identity cannot be checked on our side: 503, not 401.
    let (status, _, body) = call(c.get(server.url("/v1/models")).bearer_auth(UNVERIFIABLE_JWT)).await;
    assert_error(status, &body, 503);
    // Without a token it is still a 401.
    let (status, _, body) = call(c.get(server.url("/v1/models"))).await;
    assert_error(status, &body, 401);
    assert!(server.log().contains("cannot reach the authorization server"), "{}", server.log());
}
