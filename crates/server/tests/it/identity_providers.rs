//! Each identity-provider preset end to end: the real binary configured with `provider: …` against
//! the test authorization server, and access tokens in that provider's documented shape (header and
//! claims as docs/identity-providers.md and docs/reference/idp-token-shapes.md describe them, signed
//! with the test AS's key as the provider signs with its own). Each is answered with the right
//! subject, client, scopes and tier; the same token with a wrong audience, a wrong issuer, a broken
//! signature or an expired `exp` is a 401.

use serde_json::{Value, json};

use crate::support::forge::{AsKeys, SigningKey, now, unique};
use crate::support::oauth::{AuthServer, SMOLLM_SCOPE, call, free_port, install_crypto};
use crate::support::{MODEL_ID, Server};

/// One provider's token shape.
struct Shape {
    provider: &'static str,
    /// More `oauth_config` keys the preset needs.
    extra_yaml: &'static str,
    /// The header's `typ`, or none (Okta, Cognito).
    typ: Option<&'static str>,
    subject: &'static str,
    client: &'static str,
    /// The provider's claims for an access token naming the model's scope and `premium_access`,
    /// besides `iss`, `exp` and `iat` (added by [`token`]); `aud` is this API.
    claims: fn(audience: &str) -> Value,
    /// What makes the same token one for another API: another `aud` (Cognito, whose tokens carry none,
    /// names another app client instead).
    foreign: &'static str,
}

const SHAPES: &[Shape] = &[
    // https://www.keycloak.org/docs/latest/server_admin/#_audience — realm roles as scopes.
    Shape {
        provider: "keycloak",
        extra_yaml: "",
        typ: Some("JWT"),
        subject: "5f0c7e1a-8c1b-4b44-9d52-5d6d0c2f9a10",
        client: "llm-portal",
        foreign: r#"{"aud": "https://other.example"}"#,
        claims: |aud| {
            json!({"aud": aud, "sub": "5f0c7e1a-8c1b-4b44-9d52-5d6d0c2f9a10", "typ": "Bearer", "azp": "llm-portal",
                   "scope": "openid profile", "realm_access": {"roles": [SMOLLM_SCOPE, "premium_access"]},
                   "jti": unique("kc")})
        },
    },
    // https://auth0.com/docs/secure/tokens/access-tokens/access-token-profiles — the default profile.
    Shape {
        provider: "auth0",
        extra_yaml: "",
        typ: Some("JWT"),
        subject: "0YzXvI1R2yQw@clients",
        client: "0YzXvI1R2yQw",
        foreign: r#"{"aud": "https://other.example"}"#,
        claims: |aud| {
            json!({"aud": [aud, "https://tenant.auth0.com/userinfo"], "sub": "0YzXvI1R2yQw@clients",
                   "azp": "0YzXvI1R2yQw", "gty": "client-credentials", "scope": SMOLLM_SCOPE,
                   "permissions": ["premium_access"]})
        },
    },
    // https://developer.okta.com/docs/reference/api/oidc/#access-token — no typ, scp array, cid.
    Shape {
        provider: "okta",
        extra_yaml: "",
        typ: None,
        subject: "0oa1a2b3c4d5e6f7g8h9",
        client: "0oa1a2b3c4d5e6f7g8h9",
        foreign: r#"{"aud": "https://other.example"}"#,
        claims: |aud| {
            json!({"ver": 1, "jti": unique("AT."), "aud": aud, "cid": "0oa1a2b3c4d5e6f7g8h9",
                   "sub": "0oa1a2b3c4d5e6f7g8h9", "scp": [SMOLLM_SCOPE, "premium_access"]})
        },
    },
    // https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference — v2.
    Shape {
        provider: "entra",
        extra_yaml: "",
        typ: Some("JWT"),
        subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        client: "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        foreign: r#"{"aud": "https://other.example"}"#,
        claims: |aud| {
            json!({"aud": aud, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "ver": "2.0",
                   "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "scp": format!("{SMOLLM_SCOPE} premium_access"),
                   "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": "fqiBqXLPj0eQa82S-IYFAA"})
        },
    },
    // https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html
    // — no typ, no aud, client_id and token_use.
    Shape {
        provider: "cognito",
        extra_yaml: "  claims:\n    allowed_client_ids: [1example23456789]\n",
        typ: None,
        subject: "aaaaaaaa-bbbb-cccc-dddd-example",
        client: "1example23456789",
        foreign: r#"{"client_id": "someone-else"}"#,
        claims: |_aud| {
            json!({"sub": "aaaaaaaa-bbbb-cccc-dddd-example", "client_id": "1example23456789", "token_use": "access",
                   "scope": format!("{SMOLLM_SCOPE} premium_access"), "jti": unique("cognito")})
        },
    },
];

/// A token of `shape` with `iss`, `exp` and `iat` (and any of `overrides`), signed by `key`.
fn token(shape: &Shape, key: &SigningKey, issuer: &str, audience: &str, overrides: Value) -> String {
    let mut claims = (shape.claims)(audience);
    claims["iss"] = json!(issuer);
    claims["iat"] = json!(now());
    claims["exp"] = json!(now() + 300);
    for (name, value) in overrides.as_object().into_iter().flatten() {
        claims[name] = value.clone();
    }
    let mut header = json!({"alg": "RS256", "kid": key.kid});
    if let Some(typ) = shape.typ {
        header["typ"] = json!(typ);
    }
    key.sign(&header, &claims)
}

/// The audit records of `path` with `event`, waiting briefly for at least one.
fn audited(path: &std::path::Path, event: &str) -> Vec<Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"] == event)
            .collect();
        if !found.is_empty() {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_accepts_its_providers_tokens_and_refuses_tampered_ones() {
    install_crypto();
    let resource = format!("http://127.0.0.1:{}", free_port());
    let auth = AuthServer::start(&resource).await;
    let keys = AsKeys::from_private_jwks(&auth.private_jwks());
    let client = reqwest::Client::new();
    for shape in SHAPES {
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = audit_dir.path().join("audit.log");
        let extra = format!(
            "  provider: {}\n  enable_rate_limiting: true\n  audit:\n    path: {}\n{}",
            shape.provider,
            audit.display(),
            shape.extra_yaml
        );
        let server = Server::start_with_config(0, &auth.oauth_yaml(&extra), None);
        let get = |path: &str, token: &str| call(client.get(server.url(path)).bearer_auth(token));
        let good = token(shape, &keys.rsa, &auth.issuer, &resource, json!({}));

        let (status, _, models) = get("/v1/models", &good).await;
        assert_eq!(status, 200, "{}: {models}", shape.provider);
        assert_eq!(models["data"][0]["id"], MODEL_ID, "{}: the model's scope was read", shape.provider);
        let (status, _, usage) = get("/v1/usage", &good).await;
        assert_eq!((status, usage["tier"].as_str()), (200, Some("premium")), "{}: {usage}", shape.provider);
        let request = audited(&audit, "inference_request");
        let first = request.first().unwrap_or_else(|| panic!("{}: no audit record", shape.provider));
        assert_eq!(first["subject"], shape.subject, "{}", shape.provider);
        assert_eq!(first["client_id"], shape.client, "{}", shape.provider);

        let foreign: Value = serde_json::from_str(shape.foreign).unwrap();
        let wrong_aud = token(shape, &keys.rsa, &auth.issuer, &resource, foreign);
        let wrong_iss = token(shape, &keys.rsa, "https://evil.example", &resource, json!({}));
        let expired = token(shape, &keys.rsa, &auth.issuer, &resource, json!({"exp": now() - 600}));
        let mut broken = good.clone().into_bytes();
        let last = broken.len() - 2;
        broken[last] = if broken[last] == b'A' { b'B' } else { b'A' };
        let broken = String::from_utf8(broken).unwrap();
        for (case, bad) in
            [("wrong aud", wrong_aud), ("wrong iss", wrong_iss), ("expired", expired), ("signature", broken)]
        {
            let (status, challenges, body) = get("/v1/models", &bad).await;
            assert_eq!(status, 401, "{} {case}: {body}", shape.provider);
            assert!(
                challenges.iter().any(|c| c.contains("invalid_token")),
                "{} {case}: {challenges:?}",
                shape.provider
            );
        }
    }
}
