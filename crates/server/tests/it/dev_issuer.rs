//! `llamagate serve --dev` with tokens from `llamagate token`: the real binary, its own issuer, a
//! persistent key file in a temporary working directory.

use crate::support::MODEL_ID;
use crate::support::dev::{self, token};
use serde_json::{Value, json};

const KEY_FILE: &str = ".llamagate/dev-issuer.json";

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn dev_mode_accepts_its_own_tokens_across_restarts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    dev::write_default_config(dir.path());
    let client = reqwest::Client::new();

    let server = dev::start(dir.path(), 0);
    let key_path = dir.path().join(KEY_FILE);
    let key = std::fs::read_to_string(&key_path).expect("serve --dev creates the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The issuer documents are public and publish only the public key.
    let (status, meta) = get(&client, &format!("{}/.well-known/oauth-authorization-server", server.base), None).await;
    assert_eq!((status, meta["issuer"].as_str()), (200, Some(server.base.as_str())), "{meta}");
    let (status, jwks) = get(&client, &format!("{}/.well-known/jwks.json", server.base), None).await;
    assert_eq!(status, 200);
    let jwk = &jwks["keys"][0];
    assert_eq!((jwk["alg"].as_str(), jwk["kty"].as_str()), (Some("ES256"), Some("EC")), "{jwks}");
    assert!(jwk["kid"].is_string() && jwk.get("d").is_none(), "{jwks}");

    let models_url = format!("{}/v1/models", server.base);
    let (status, _) = get(&client, &models_url, None).await;
    assert_eq!(status, 401);
    let good = token(dir.path(), &server.base, &[]);
    let (status, body) = get(&client, &models_url, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["id"], MODEL_ID, "{body}");

    // A token without the model's scope may not use it.
    let wrong = token(dir.path(), &server.base, &["--scope", "model_something_else"]);
    let chat = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
    let response = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&wrong)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let challenge = response.headers().get("www-authenticate").unwrap().to_str().unwrap().to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    // `llamagate token --expired` prints a token the server refuses as expired, whatever its leeway.
    let expired = token(dir.path(), &server.base, &["--expired"]);
    let response = client.get(&models_url).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers().get("www-authenticate").unwrap().to_str().unwrap().to_string();
    assert!(challenge.contains("the token has expired"), "{challenge}");

    // Restarted on the same port and directory, the server reuses the key: the old token still works.
    let port = server.port();
    drop(server);
    let server = dev::start(dir.path(), port);
    let client = reqwest::Client::new(); // the pooled connections went with the old process
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key, "the key file was rewritten");
    let (status, body) = get(&client, &models_url, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    let response = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&good)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// Runs `llamagate serve --dev` with `args` in `dir` and returns its exit status and stderr; for starts
/// that must fail.
fn failed_start(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(dev::bin())
        .args(["serve", "--config", "stack.yaml", "--dev"])
        .args(args)
        .current_dir(dir)
        .env_remove("LLAMAGATE_DEV_KEY_FILE")
        .output()
        .unwrap();
    assert!(!output.status.success(), "started: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn dev_mode_stays_on_loopback_and_refuses_a_key_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    dev::write_default_config(dir.path());
    let error = failed_start(dir.path(), &["--host", "0.0.0.0", "--port", "0"]);
    assert!(error.contains("loopback only") && error.contains("--dev-allow-remote"), "{error}");

    // A key file readable by others (here made by hand) is refused, naming the fix.
    let key = dir.path().join("shared-key.json");
    let _ = dev::start(dir.path(), 0); // creates .llamagate/dev-issuer.json, 0600
    std::fs::copy(dir.path().join(".llamagate/dev-issuer.json"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = failed_start(dir.path(), &["--port", "0", "--dev-key-file", key.to_str().unwrap()]);
    assert!(error.contains("chmod 600"), "{error}");
}
