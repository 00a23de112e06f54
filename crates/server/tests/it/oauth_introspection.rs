//! §B.5 group 18: opaque tokens checked by RFC 7662 introspection at the real `oidc-provider`, with
//! llamagate's positive-answer cache (`introspection_cache_ttl`, shortened here to 2 s from the
//! default 60 s so the test need not wait a minute). Covers an inactive token, revocation that is
//! honoured once the cached answer is older than the TTL, and an authorization-server outage: 503
//! for tokens never seen, cached positive answers honoured until the token's own `exp`.

use std::time::Duration;

use crate::support::forge::now;
use crate::support::oauth::{Pair, Reply, SMOLLM_SCOPE, assert_invalid_token};

/// 503 while identity cannot be checked: no challenge (the token was not judged), the envelope
/// with `temporarily_unavailable`.
fn assert_unavailable(reply: &Reply, case: &str) {
    let (status, challenges, body) = reply;
    assert_eq!(*status, 503, "{case}: {body}");
    assert!(challenges.is_empty(), "{case}: {challenges:?}");
    assert_eq!(body["error"]["type"], "temporarily_unavailable", "{case}: {body}");
    assert!(body["error"]["message"].is_string(), "{case}: {body}");
}

#[tokio::test]
async fn group_18_introspection_inactive_revoked_and_as_down() {
    const CACHE_TTL: u64 = 2;
    // Tokens live 12 s, so "until exp" is reached within the test. The AS names the resource in its
    // answers' `aud`, so requiring it changes nothing for its tokens.
    let yaml = format!(
        "  token_validation_method: introspection\n  client_id: rs-introspector\n  client_secret: rs-secret\n  introspection_cache_ttl: {CACHE_TTL}\n  introspection_require_audience: true\n"
    );
    let mut p = Pair::start(&[("AT_TTL", "12")], "", &yaml).await;
    let opaque = async |p: &Pair| p.auth.access_token("smollm-client", "smollm-secret", "/opaque", SMOLLM_SCOPE).await;
    let (revoked, kept, unseen, revoked_early) =
        (opaque(&p).await, opaque(&p).await, opaque(&p).await, opaque(&p).await);
    let exp = now() + 12;

    // active:false: revoked before its first use, and a token the AS never issued.
    p.auth.revoke("smollm-client", "smollm-secret", &revoked_early).await;
    assert_invalid_token(&p.models(&revoked_early).await, "revoked before first use");
    assert_invalid_token(&p.models("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, "unknown opaque token");

    p.assert_accepted(&revoked, "active").await;
    p.assert_accepted(&kept, "active").await;
    // Revoked at the AS: the cached answer is still used until it is CACHE_TTL old...
    p.auth.revoke("smollm-client", "smollm-secret", &revoked).await;
    p.assert_accepted(&revoked, "revoked, answer still cached").await;
    tokio::time::sleep(Duration::from_secs(CACHE_TTL + 1)).await;
    // ...then the AS is asked again and the revocation holds.
    assert_invalid_token(&p.models(&revoked).await, "revoked, cache TTL passed");

    // The AS goes down. A cached positive answer (older than the TTL, so due for a recheck that
    // fails) is honoured until the token's exp; a token never seen cannot be checked: 503.
    p.auth.stop();
    p.assert_accepted(&kept, "cached, AS down").await;
    assert_unavailable(&p.models(&unseen).await, "never seen, AS down");
    let wait = exp.saturating_sub(now()) + 2;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    // Past exp the cached answer is gone; with the AS still down nothing can vouch for the token.
    assert_unavailable(&p.models(&kept).await, "cached but expired, AS down");

    // The AS is back (its in-memory store forgot every token): the token is inactive.
    p.auth.restart().await;
    assert_invalid_token(&p.models(&kept).await, "AS restarted");
}
