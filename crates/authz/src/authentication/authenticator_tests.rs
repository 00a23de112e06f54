//! The whole sequence against a recording mock AS: docs/reference/oauth-resource-server.md §B.5
//! groups 16–18 and the 503 path.

use super::*;
use crate::principal::TokenSource;
use crate::test_fixtures::{MockServer, TestKey, ec_key};
use crate::token::dpop::{access_token_hash, thumbprint};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const STACK: &str = "http://127.0.0.1:8321";
const URL: &str = "http://127.0.0.1:8321/v1/chat/completions";

struct Env {
    mock: MockServer,
    key: TestKey,
    auth: Authenticator,
}

async fn env(edit: impl FnOnce(&mut OAuthConfig)) -> Env {
    let mock = MockServer::start().await;
    let key = ec_key("as-key");
    mock.serve_metadata();
    mock.serve_jwks(&[&key]);
    let mut cfg = OAuthConfig {
        auth_server_uri: mock.base.clone(),
        stack_uri: STACK.into(),
        dpop_enabled: true,
        ..OAuthConfig::default()
    };
    edit(&mut cfg);
    cfg.validate().expect("valid config");
    let (clock, _hand) = Clock::manual(NOW);
    Env { auth: Authenticator::from_config(&cfg, clock).expect("authenticator"), mock, key }
}

impl Env {
    fn token(&self, extra: Value) -> String {
        let mut claims = json!({"iss": self.mock.base, "aud": STACK, "sub": "alice", "client_id": "c", "jti": "j",
                                "iat": NOW, "exp": NOW + 300, "scope": "model_smollm2_135m"});
        for (k, v) in extra.as_object().expect("obj") {
            claims[k] = v.clone();
        }
        self.key.sign(&claims, Some("at+jwt"))
    }
    async fn run(&self, authz: &[&str], dpop: &[&str], query: Option<&str>) -> Result<Principal, AuthError> {
        let authz: Vec<&[u8]> = authz.iter().map(|s| s.as_bytes()).collect();
        let dpop: Vec<&[u8]> = dpop.iter().map(|s| s.as_bytes()).collect();
        let req = AuthRequest { authorization: &authz, dpop: &dpop, method: "POST", url: URL, query };
        self.auth.authenticate(&req).await
    }
}

#[tokio::test]
async fn bearer_delivery_rules() {
    let e = env(|_| {}).await;
    let t = e.token(json!({}));
    let p = e.run(&[&format!("Bearer {t}")], &[], None).await.expect("valid");
    assert!(p.scopes.contains("model_smollm2_135m"));
    assert_eq!(p.source, TokenSource::Jwt);

    let in_query = e.run(&[], &[], Some(&format!("access_token={t}"))).await.expect_err("query");
    assert_eq!((in_query.status(), in_query.reason()), (400, "token_in_query"));
    let also_header =
        e.run(&[&format!("Bearer {t}")], &[], Some(&format!("access_token={t}"))).await.expect_err("query");
    assert_eq!(also_header.status(), 400);
    let two = e.run(&[&format!("Bearer {t}"), &format!("Bearer {t}")], &[], None).await.expect_err("two");
    assert_eq!((two.status(), two.error_code()), (400, Some("invalid_request")));
    let none = e.run(&[], &[], None).await.expect_err("none");
    assert_eq!((none.status(), none.error_code()), (401, None));
    let resp = none.to_response(e.auth.challenge_params());
    assert!(
        resp.www_authenticate[0]
            .contains("resource_metadata=\"http://127.0.0.1:8321/.well-known/oauth-protected-resource\"")
    );
    assert!(resp.www_authenticate[1].starts_with("DPoP "));
    let bad = e.run(&["Bearer not-a-jwt"], &[], None).await.expect_err("garbage");
    assert_eq!((bad.status(), bad.error_code()), (401, Some("invalid_token")));
}

#[tokio::test]
async fn dpop_binding_rules() {
    let e = env(|_| {}).await;
    let client = ec_key("client");
    let jkt = thumbprint(client.public_jwk.as_object().expect("obj")).expect("jkt");
    let bound = e.token(json!({"cnf": {"jkt": jkt}}));
    let proof = |jti: &str, token: &str| {
        client.sign_raw(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.public_jwk}),
            &json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": jti, "ath": access_token_hash(token)}),
        )
    };
    let as_bearer = e.run(&[&format!("Bearer {bound}")], &[], None).await.expect_err("bound as bearer");
    assert_eq!((as_bearer.status(), as_bearer.reason()), (401, "dpop_bound_as_bearer"));
    let with_proof_as_bearer = e.run(&[&format!("Bearer {bound}")], &[&proof("p0", &bound)], None).await;
    assert!(with_proof_as_bearer.is_err(), "a proof does not make Bearer acceptable for a bound token");

    let ok = e.run(&[&format!("DPoP {bound}")], &[&proof("p1", &bound)], None).await.expect("valid DPoP");
    assert!(ok.is_dpop_bound());
    let replay = e.run(&[&format!("DPoP {bound}")], &[&proof("p1", &bound)], None).await.expect_err("replay");
    assert_eq!(
        (replay.status(), replay.error_code(), replay.reason()),
        (401, Some("invalid_dpop_proof"), "dpop_replay")
    );
    let missing = e.run(&[&format!("DPoP {bound}")], &[], None).await.expect_err("no proof");
    assert_eq!(missing.error_code(), Some("invalid_dpop_proof"));
    let two = e.run(&[&format!("DPoP {bound}")], &[&proof("p2", &bound), &proof("p3", &bound)], None).await;
    assert_eq!(two.expect_err("two proofs").error_code(), Some("invalid_dpop_proof"));

    let unbound = e.token(json!({}));
    let err = e.run(&[&format!("DPoP {unbound}")], &[&proof("p4", &unbound)], None).await.expect_err("unbound");
    assert_eq!(err.reason(), "dpop_unbound_token");

    let off = env(|c| c.dpop_enabled = false).await;
    let err = off.run(&[&format!("DPoP {bound}")], &[&proof("p5", &bound)], None).await.expect_err("disabled");
    assert_eq!((err.status(), err.reason()), (401, "dpop_disabled"));
}

/// `dpop_nonce: required` through the whole sequence: the refusal carries the nonce the next proof
/// needs and the valid token's principal (for the audit record); the retry with it passes.
#[tokio::test]
async fn dpop_nonces_and_the_principal_of_a_refused_proof() {
    let e = env(|c| c.dpop_nonce = crate::config::DpopNonceMode::Required).await;
    let client = ec_key("client");
    let jkt = thumbprint(client.public_jwk.as_object().expect("obj")).expect("jkt");
    let bound = e.token(json!({"cnf": {"jkt": jkt}}));
    let proof = |jti: &str, nonce: Option<&str>| {
        let mut claims = json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": jti, "ath": access_token_hash(&bound)});
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        client.sign_raw(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.public_jwk}), &claims)
    };
    let check_with = async |token: &str, proof: &str| {
        let authorization = format!("DPoP {token}");
        let req = AuthRequest {
            authorization: &[authorization.as_bytes()],
            dpop: &[proof.as_bytes()],
            method: "POST",
            url: URL,
            query: None,
        };
        e.auth.authenticate_or_refuse(&req).await
    };
    let check = async |proof: &str| check_with(&bound, proof).await;

    let nonce = e.auth.dpop_nonce().expect("nonces on");
    let refusal = check(&proof("n1", None)).await.expect_err("no nonce");
    assert_eq!(refusal.error, AuthError::UseDpopNonce { nonce: nonce.clone() });
    assert_eq!(refusal.principal.map(|p| p.subject), Some("alice".to_string()), "the token was valid");
    let ok = check(&proof("n1", Some(&nonce))).await.expect("with the nonce");
    assert_eq!(ok.subject, "alice");

    let replay = check(&proof("n1", Some(&nonce))).await.expect_err("replay");
    assert_eq!(replay.error.reason(), "dpop_replay");
    assert_eq!(replay.principal.map(|p| p.subject), Some("alice".to_string()));
    let foreign = e.token(json!({"iss": "https://evil", "cnf": {"jkt": jkt}}));
    let forged = check_with(&foreign, &proof("n2", Some(&nonce))).await.expect_err("foreign issuer");
    assert_eq!(forged.error.reason(), "wrong_iss");
    assert!(forged.principal.is_none(), "no principal for a token that is not valid");

    let off = env(|_| {}).await;
    assert_eq!(off.auth.dpop_nonce(), None);
}

#[tokio::test]
async fn as_down_with_no_keys_is_503() {
    let e = env(|_| {}).await;
    e.mock.set_down(true);
    let err = e.run(&[&format!("Bearer {}", e.token(json!({})))], &[], None).await.expect_err("no keys");
    assert_eq!(err.status(), 503);
    assert!(e.auth.prefetch().await.is_err());
}

#[tokio::test]
async fn introspection_mode() {
    let e = env(|c| {
        c.token_validation_method = TokenValidationMethod::Introspection;
        c.client_id = Some("rs".into());
        c.client_secret = Some(crate::config::Secret::new("s"));
    })
    .await;
    let active = json!({"active": true, "client_id": "premium-client", "exp": NOW + 300, "aud": STACK,
                        "iss": e.mock.base, "scope": "premium_access", "token_type": "Bearer"});
    e.mock.set("/introspect", 200, &active);
    let p = e.run(&["Bearer opaque-1"], &[], None).await.expect("active");
    assert_eq!(p.source, TokenSource::Introspection);
    e.mock.set("/introspect", 200, &json!({"active": false}));
    let err = e.run(&["Bearer opaque-2"], &[], None).await.expect_err("inactive");
    assert_eq!((err.status(), err.reason()), (401, "inactive"));
    e.mock.set_down(true);
    let err = e.run(&["Bearer opaque-3"], &[], None).await.expect_err("down");
    assert_eq!(err.status(), 503);
    assert!(e.mock.seen().iter().all(|s| !s.body.contains("opaque-1") || s.path == "/introspect"));
}

/// A token verified once is answered from the cache — but never past its expiry, and never after the
/// key that verified it has been rotated out of the JWKS.
#[tokio::test]
async fn verified_tokens_are_cached_only_while_unexpired_and_their_key_is_current() {
    let mock = MockServer::start().await;
    let (key, next_key) = (ec_key("as-key"), ec_key("next-key"));
    mock.serve_metadata();
    mock.serve_jwks(&[&key]);
    let cfg = OAuthConfig { auth_server_uri: mock.base.clone(), stack_uri: STACK.into(), ..OAuthConfig::default() };
    let (clock, hand) = Clock::manual(NOW);
    let auth = Authenticator::from_config(&cfg, clock).expect("authenticator");
    let sign = |key: &TestKey, exp: u64| {
        let claims = json!({"iss": mock.base, "aud": STACK, "sub": "alice", "client_id": "c", "jti": "j",
                            "iat": NOW, "exp": exp, "scope": "model_smollm2_135m"});
        key.sign(&claims, Some("at+jwt"))
    };
    let run = |token: String| {
        let auth = &auth;
        async move {
            let header = format!("Bearer {token}");
            let authz: Vec<&[u8]> = vec![header.as_bytes()];
            auth.authenticate(&AuthRequest { authorization: &authz, dpop: &[], method: "GET", url: URL, query: None })
                .await
        }
    };

    let short = sign(&key, NOW + 100);
    let long = sign(&key, NOW + 10_000);
    for _ in 0..3 {
        assert_eq!(run(short.clone()).await.expect("valid").subject, "alice");
        run(long.clone()).await.expect("valid");
    }
    assert_eq!(mock.hits("/jwks"), 1);

    // Past `exp` + the 60 s leeway the cached answer does not help.
    hand.set(NOW + 100 + 60);
    assert!(matches!(run(short.clone()).await, Err(AuthError::InvalidToken { .. })));
    run(long.clone()).await.expect("still valid");

    // Rotation: once the JWKS has been refetched without the old key, the old token fails, the new works.
    mock.serve_jwks(&[&next_key]);
    hand.set(NOW + 100 + 60 + cfg.jwks_cache_ttl);
    assert!(matches!(run(long.clone()).await, Err(AuthError::InvalidToken { .. })), "old key rotated out");
    run(sign(&next_key, NOW + 10_000)).await.expect("new key");
}

/// A failed JWKS refresh is an audit record even though the request it happened under is served
/// with the stale keys.
#[tokio::test]
async fn failed_jwks_refreshes_are_audited() {
    let mock = MockServer::start().await;
    let key = ec_key("as-key");
    mock.serve_metadata();
    mock.serve_jwks(&[&key]);
    let cfg = OAuthConfig { auth_server_uri: mock.base.clone(), stack_uri: STACK.into(), ..OAuthConfig::default() };
    let (clock, hand) = Clock::manual(NOW);
    let auth = Authenticator::from_config(&cfg, clock).expect("authenticator");
    let dir = tempfile::tempdir().expect("temp dir");
    let audit_cfg = crate::audit::AuditConfig { path: Some(dir.path().join("audit.log")), ..Default::default() };
    let log = crate::audit::AuditLog::start(&audit_cfg, crate::audit::AuditLogLevel::Info).expect("audit log");
    auth.audit_to(&log);
    let claims = json!({"iss": mock.base, "aud": STACK, "sub": "alice", "client_id": "c", "jti": "j",
                        "iat": NOW, "exp": NOW + 10_000, "scope": "model_smollm2_135m"});
    let header = format!("Bearer {}", key.sign(&claims, Some("at+jwt")));
    let authz: Vec<&[u8]> = vec![header.as_bytes()];
    let req = AuthRequest { authorization: &authz, dpop: &[], method: "GET", url: URL, query: None };
    auth.authenticate(&req).await.expect("valid");

    // The TTL passes while the AS is down: the refresh fails, the stale key still serves, and the
    // failure is recorded.
    mock.set_down(true);
    hand.set(NOW + cfg.jwks_cache_ttl + 1);
    let other = format!(
        "Bearer {}",
        key.sign(
            &json!({"jti": "k", "iss": mock.base, "aud": STACK, "sub": "bob",
        "client_id": "c", "iat": NOW, "exp": NOW + 10_000}),
            Some("at+jwt")
        )
    );
    let authz: Vec<&[u8]> = vec![other.as_bytes()];
    let req = AuthRequest { authorization: &authz, dpop: &[], method: "GET", url: URL, query: None };
    assert_eq!(auth.authenticate(&req).await.expect("stale key serves").subject, "bob");
    log.flush();
    let text = std::fs::read_to_string(dir.path().join("audit.log")).expect("audit log written");
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(records.len(), 1, "{text}");
    assert_eq!(records[0]["event"], "security_jwks_refresh_failure");
    assert_eq!((records[0]["severity"].as_str(), records[0]["decision"].as_str()), (Some("error"), Some("failed")));
    assert_eq!(records[0]["issuer"], mock.base.as_str());
}
