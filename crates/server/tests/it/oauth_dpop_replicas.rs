//! Issue 19's DPoP parts end to end, with the real `oidc-provider` issuing DPoP-bound tokens:
//!
//! - two `llamagate serve` processes sharing one real `redis-server` (the rate limiter's backend, so
//!   also the replay store) behind one `stack_uri`, as replicas behind a load balancer are: a proof
//!   used on one is refused on the other, and the refusal's audit record names the token's subject;
//!   with Redis gone, DPoP requests get 503 rather than being accepted unrecorded;
//! - RFC 9449 §9 server nonces (`dpop_nonce: required`): a proof without the nonce gets 401
//!   `use_dpop_nonce` with a `DPoP-Nonce` header, the retry with it passes and the answer carries the
//!   current nonce.

use std::path::Path;
use std::time::{Duration, Instant};

use llamagate_testkit::RedisServer;
use serde_json::{Value, json};

use crate::oauth_dpop::Dpop;
use crate::support::Server;
use crate::support::oauth::{Reply, call};

/// `GET url` with `Authorization: DPoP token` and one proof: the reply and the `DPoP-Nonce` header.
async fn get(client: &reqwest::Client, url: &str, token: &str, proof: &str) -> (Reply, Option<String>) {
    let response =
        client.get(url).header("authorization", format!("DPoP {token}")).header("dpop", proof).send().await.unwrap();
    let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    let challenges =
        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    ((status, challenges, body), nonce)
}

/// The audit records in `path`, once one with `event` is there (records are written after the answer).
fn audit_records_until(path: &Path, event: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if records.iter().any(|r| r["event"] == event) || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_proof_used_on_one_replica_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let audit_dir = tempfile::tempdir().unwrap();
    let shared =
        format!("  rate_limits:\n    backend: redis\n    redis_url: {}\n    redis_timeout_ms: 2000\n", redis.url());
    let d = Dpop::start_with(&shared).await;
    // Replica B: the same oauth_config (so the same stack_uri, the URL clients address and proofs
    // name), listening on a port of its own, auditing to a file.
    let audit_path = audit_dir.path().join("audit.log");
    let b_yaml =
        d.p.auth.oauth_yaml(&format!("  dpop_enabled: true\n{shared}  audit:\n    path: {}\n", audit_path.display()));
    let b = Server::start_with_config(0, &b_yaml, Some("info"));
    let b_url = b.url("/v1/models");
    let client = &d.p.server.client;

    let proof = d.proof_with(|_, _| {});
    let ((status, _, body), _) = get(client, &d.url, &d.token, &proof).await;
    assert_eq!(status, 200, "replica A: {body}\n{}", d.p.server.log());
    let ((status, challenges, body), _) = get(client, &b_url, &d.token, &proof).await;
    assert_eq!(status, 401, "replica B accepted a replay: {body}\n{}", b.log());
    assert_eq!(body["error"]["type"], "invalid_dpop_proof", "{body}");
    assert!(challenges.iter().any(|c| c.starts_with("DPoP ") && c.contains("invalid_dpop_proof")), "{challenges:?}");

    // And the other way round; fresh proofs pass on either.
    let fresh = d.proof_with(|_, _| {});
    assert_eq!(get(client, &b_url, &d.token, &fresh).await.0.0, 200, "{}", b.log());
    assert_eq!(get(client, &d.url, &d.token, &fresh).await.0.0, 401);

    // The replay's audit record names whose (valid) token it was.
    let records = audit_records_until(&audit_path, "security_dpop_replay");
    let replay = records.iter().find(|r| r["event"] == "security_dpop_replay").unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(replay["reason"], "dpop_replay", "{replay}");
    assert_eq!(replay["subject"], "smollm-client", "{replay}");
    assert_eq!(replay["client_id"], "smollm-client", "{replay}");

    // Redis gone: a proof cannot be recorded, so it is refused (503), never accepted.
    redis.kill();
    let ((status, challenges, body), _) = get(client, &b_url, &d.token, &d.proof_with(|_, _| {})).await;
    assert_eq!(status, 503, "{body}");
    assert!(challenges.is_empty(), "{challenges:?}");
    assert_eq!(body["error"]["type"], "temporarily_unavailable", "{body}");
}

#[tokio::test]
async fn server_nonces_are_asked_for_then_accepted() {
    let d = Dpop::start_with("  dpop_nonce: required\n").await;
    let client = &d.p.server.client;

    let ((status, challenges, body), nonce) = get(client, &d.url, &d.token, &d.proof_with(|_, _| {})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "use_dpop_nonce", "{body}");
    let dpop = challenges.iter().find(|c| c.starts_with("DPoP ")).unwrap_or_else(|| panic!("{challenges:?}"));
    assert!(dpop.contains("error=\"use_dpop_nonce\""), "{dpop}");
    let bearer = challenges.iter().find(|c| c.starts_with("Bearer ")).unwrap();
    assert!(!bearer.contains("error="), "{bearer}");
    let nonce = nonce.expect("a DPoP-Nonce header with use_dpop_nonce");
    assert_eq!(nonce.len(), 24, "{nonce}");

    let wrong = d.proof_with(|_, c| c["nonce"] = json!("not-the-servers-nonce"));
    let ((status, _, body), again) = get(client, &d.url, &d.token, &wrong).await;
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("use_dpop_nonce")), "{body}");
    assert_eq!(again.as_deref(), Some(nonce.as_str()));

    let good = d.proof_with(|_, c| c["nonce"] = json!(nonce));
    let ((status, _, body), current) = get(client, &d.url, &d.token, &good).await;
    assert_eq!(status, 200, "{body}\n{}", d.p.server.log());
    assert_eq!(current.as_deref(), Some(nonce.as_str()), "answers carry the current nonce");
    // The nonce does not make a proof reusable.
    let ((status, _, body), _) = get(client, &d.url, &d.token, &good).await;
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("invalid_dpop_proof")), "{body}");
    // Bearer requests are unaffected by nonces.
    let bearer = d.p.auth.access_token("smollm-client", "smollm-secret", "", crate::support::oauth::SMOLLM_SCOPE).await;
    assert_eq!(call(client.get(&d.url).bearer_auth(&bearer)).await.0, 200);
}
