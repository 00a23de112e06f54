//! §B.5 group 19, key rotation: the real `oidc-provider` is restarted with fresh keys (new kids) on
//! the same issuer URL, as a plain restart of start-op.mjs does. Tokens signed with the new keys
//! must verify after exactly one JWKS refetch, and tokens signed with the old keys must fail once
//! that refetch has replaced the key set. JWKS fetches are counted through a proxy in front of the
//! authorization server's `jwks_uri`.

use std::time::Duration;

use crate::support::Server;
use crate::support::oauth::{AuthServer, JwksCounter, Pair, SMOLLM_SCOPE, free_port};

// Multi-threaded: the counting proxy must answer while this thread waits for llamagate to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_19_rotation_new_keys_after_one_refetch_old_keys_fail() {
    let port = free_port();
    let mut auth = AuthServer::start(&format!("http://127.0.0.1:{port}")).await;
    let counter = JwksCounter::start(format!("{}/jwks", auth.issuer)).await;
    // The refetch throttle is shortened from 30 s to 1 s so the test need not wait half a minute
    // between the start-up fetch and the rotation; the throttle itself is group 7's subject.
    let yaml = auth.oauth_yaml(&format!("  jwks_uri: {}\n  jwks_refetch_interval: 1\n", counter.url));
    let server = Server::start_with_config(port, &yaml, Some("info"));
    assert_eq!(counter.fetches(), 1, "the start-up prefetch");

    let old_rs = auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    let old_es = auth.access_token("smollm-client", "smollm-secret", "/es256", SMOLLM_SCOPE).await;
    let old_kids = crate::support::forge::AsKeys::from_private_jwks(&auth.private_jwks());

    auth.restart().await;
    let p = Pair { keys: crate::support::forge::AsKeys::from_private_jwks(&auth.private_jwks()), auth, server };
    assert_ne!(p.keys.rsa.kid, old_kids.rsa.kid, "a restart rotates the keys");
    assert_ne!(p.keys.ec.kid, old_kids.ec.kid);
    // Until the key set is refetched, tokens signed before the rotation still verify (the old keys
    // are cached for jwks_cache_ttl): rotation is picked up on the first unfamiliar kid.
    p.assert_accepted(&old_rs, "old RS256 token before any refetch").await;
    assert_eq!(counter.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let new_rs = p.auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    p.assert_accepted(&new_rs, "new RS256 token").await;
    assert_eq!(counter.fetches(), 2, "the new kid caused exactly one refetch");
    let new_es = p.auth.access_token("smollm-client", "smollm-secret", "/es256", SMOLLM_SCOPE).await;
    p.assert_accepted(&new_es, "new ES256 token").await;
    assert_eq!(counter.fetches(), 2, "the same refetch brought both new keys");

    // The old keys are gone from the key set now.
    p.assert_rejected(&old_rs, "old RS256 token after the refetch").await;
    p.assert_rejected(&old_es, "old ES256 token after the refetch").await;
    p.assert_rejected(&old_kids.rsa.token(&p.claims(SMOLLM_SCOPE)), "fresh claims, old RSA key").await;
    p.assert_accepted(&new_rs, "new token still good").await;
}
