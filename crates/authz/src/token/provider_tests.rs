//! Each `provider` preset against its identity provider's access-token shape: header and claims as
//! the provider documents them (URLs per fixture, collected in docs/reference/idp-token-shapes.md),
//! signed by a test key served from a local JWKS. Each token is accepted with the right subject,
//! client and scopes, and refused once its `aud`, `iss`, signature or `exp` is wrong.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::{OAuthConfig, Provider};
use crate::principal::Principal;
use crate::test_fixtures::{MockServer, rsa_key};
use crate::token::discovery::build_http_client;
use crate::token::jwks::{JwksCache, JwksSettings};
use crate::token::jwt::{JwtPolicy, TokenError, TokenValidator};

const NOW: u64 = 1_800_000_000;
const KID: &str = "provider-key";

/// One provider's token and what llamagate must make of it.
struct Shape {
    provider: Provider,
    /// Path of the issuer on the mock host (the provider's issuer layout).
    issuer_path: &'static str,
    /// `audience`, plus the `audiences` list.
    audience: &'static str,
    audiences: &'static [&'static str],
    /// The `issuers` list (accepted besides the issuer itself).
    issuers: &'static [&'static str],
    allowed_client_ids: &'static [&'static str],
    /// The JWS header as the provider sends it (`alg` and `kid` are filled in).
    header: Value,
    /// The claims, given the issuer; `iat`/`exp` are filled in.
    claims: fn(&str) -> Value,
    subject: &'static str,
    client_id: &'static str,
    scopes: &'static str,
}

struct Harness {
    validator: TokenValidator,
    issuer: String,
}

async fn harness(shape: &Shape, mock: &MockServer) -> Harness {
    let issuer = format!("{}{}", mock.base, shape.issuer_path);
    let cfg = OAuthConfig {
        auth_server_uri: issuer.clone(),
        stack_uri: "http://127.0.0.1:8321".into(),
        jwks_uri: Some(format!("{}/jwks", mock.base)),
        audience: Some(shape.audience.into()),
        audiences: shape.audiences.iter().map(|a| a.to_string()).collect(),
        issuers: shape.issuers.iter().map(|i| i.to_string()).collect(),
        provider: shape.provider,
        ..OAuthConfig::default()
    };
    let mut cfg = cfg;
    cfg.claims.allowed_client_ids = shape.allowed_client_ids.iter().map(|c| c.to_string()).collect();
    cfg.validate().expect("the preset's configuration is valid");
    let (clock, _hand) = Clock::manual(NOW);
    let settings = JwksSettings {
        issuer: issuer.clone(),
        jwks_uri: cfg.jwks_uri.clone(),
        ttl: 300,
        refetch_interval: 30,
        allowed: cfg.algorithms(),
    };
    let jwks = Arc::new(JwksCache::new(build_http_client().expect("client"), settings, clock.clone()));
    let validator = TokenValidator::new(jwks, JwtPolicy::from_config(&cfg), clock).with_rules(cfg.claim_rules());
    Harness { validator, issuer }
}

fn sign(slot: usize, shape: &Shape, claims: &Value) -> String {
    let key = rsa_key(slot, KID, Algorithm::RS256);
    let mut header = shape.header.clone();
    header["alg"] = json!("RS256");
    header["kid"] = json!(KID);
    key.sign_raw(&header, claims)
}

/// The token is accepted as `shape` says, and refused with a wrong `aud`, `iss`, signature or `exp`.
async fn check(shape: Shape) -> Principal {
    let mock = MockServer::start().await;
    mock.serve_jwks(&[&rsa_key(0, KID, Algorithm::RS256)]);
    let h = harness(&shape, &mock).await;
    let claims = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = (shape.claims)(&h.issuer);
        let map = c.as_object_mut().expect("claims object");
        map.insert("iat".into(), json!(NOW - 10));
        map.insert("exp".into(), json!(NOW + 3_600));
        edit(map);
        c
    };
    let principal = h.validator.validate(&sign(0, &shape, &claims(&|_| {}))).await.expect("the provider's token");
    assert_eq!(principal.subject, shape.subject);
    assert_eq!(principal.client_id, shape.client_id);
    assert_eq!(principal.scopes.to_string(), shape.scopes);
    assert_eq!(principal.issuer, (shape.claims)(&h.issuer)["iss"]);

    let wrong_aud = claims(&|c| {
        c.insert("aud".into(), json!("https://another-api.example"));
    });
    let refused = h.validator.validate(&sign(0, &shape, &wrong_aud)).await;
    assert_eq!(refused.err(), Some(TokenError::WrongAudience), "wrong aud");
    let wrong_iss = claims(&|c| {
        c.insert("iss".into(), json!(format!("{}/evil", h.issuer.trim_end_matches('/'))));
    });
    let refused = h.validator.validate(&sign(0, &shape, &wrong_iss)).await;
    assert_eq!(refused.err(), Some(TokenError::WrongIssuer), "wrong iss");
    let refused = h.validator.validate(&sign(1, &shape, &claims(&|_| {}))).await;
    assert!(matches!(refused, Err(TokenError::Jose(_))), "bad signature: {refused:?}");
    let expired = claims(&|c| {
        c.insert("exp".into(), json!(NOW - 120));
    });
    assert_eq!(h.validator.validate(&sign(0, &shape, &expired)).await.err(), Some(TokenError::Expired));
    principal
}

#[tokio::test]
async fn generic_accepts_rfc9068_tokens() {
    // RFC 9068 §2.2, as oidc-provider issues them: https://www.rfc-editor.org/rfc/rfc9068#section-2.2
    check(Shape {
        provider: Provider::Generic,
        issuer_path: "",
        audience: "http://127.0.0.1:8321",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &[],
        header: json!({"typ": "at+jwt"}),
        claims: |iss| {
            json!({"iss": iss, "aud": "http://127.0.0.1:8321", "sub": "alice", "client_id": "app",
                   "jti": "d1f0c9", "scope": "model_llama_3_2_1b safety_standard"})
        },
        subject: "alice",
        client_id: "app",
        scopes: "model_llama_3_2_1b safety_standard",
    })
    .await;
}

#[tokio::test]
async fn keycloak_accepts_realm_tokens_with_roles() {
    // Keycloak access token (`typ: JWT` header, `typ: Bearer` claim, `azp`, `realm_access.roles`):
    // https://gist.github.com/phacman/bd288c7abac1d3fc1694b7e191e27e4c and
    // https://github.com/keycloak/keycloak/pull/37573 (at+jwt is off by default). The audience
    // mapper adds this API next to the default `account`.
    let p = check(Shape {
        provider: Provider::Keycloak,
        issuer_path: "/realms/llama",
        audience: "llamagate",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &[],
        header: json!({"typ": "JWT"}),
        claims: |iss| {
            json!({"jti": "2ce5b6e5-0c3d-4a62-9a8f-0b6f7b7c1d11", "iss": iss, "aud": ["llamagate", "account"],
                   "sub": "f1b2c3d4-5e6f-4711-8899-aabbccddeeff", "typ": "Bearer", "azp": "llamagate-cli",
                   "session_state": "8a1c", "acr": "1", "allowed-origins": ["*"],
                   "realm_access": {"roles": ["offline_access", "default-roles-llama", "model_llama_3_2_1b"]},
                   "resource_access": {"account": {"roles": ["manage-account"]}},
                   "scope": "profile email", "sid": "8a1c", "email_verified": false,
                   "preferred_username": "alice", "nonce": "n-0S6_WzA2Mj"})
        },
        subject: "f1b2c3d4-5e6f-4711-8899-aabbccddeeff",
        client_id: "llamagate-cli",
        scopes: "default-roles-llama email model_llama_3_2_1b offline_access profile",
    })
    .await;
    assert_eq!(p.token_id.as_deref(), Some("2ce5b6e5-0c3d-4a62-9a8f-0b6f7b7c1d11"));
}

#[tokio::test]
async fn auth0_accepts_default_profile_tokens_with_permissions() {
    // Auth0 default access-token profile (`typ: JWT`, `azp`, audience array, `permissions` with
    // RBAC on, no `jti`): https://auth0.com/docs/secure/tokens/access-tokens/access-token-profiles
    check(Shape {
        provider: Provider::Auth0,
        issuer_path: "/",
        audience: "https://llm.example/",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &[],
        header: json!({"typ": "JWT"}),
        claims: |iss| {
            json!({"iss": iss, "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
                   "aud": ["https://llm.example/", format!("{iss}userinfo")], "azp": "my_client_id",
                   "scope": "openid profile model_llama_3_2_1b", "permissions": ["model_llama_3_1_8b"]})
        },
        subject: "auth0|5f7c8ec7c33c6c004bbafe82",
        client_id: "my_client_id",
        scopes: "model_llama_3_1_8b model_llama_3_2_1b openid profile",
    })
    .await;
}

#[tokio::test]
async fn okta_accepts_tokens_without_typ_and_with_an_scp_array() {
    // Okta custom authorization server (no `typ`, `cid`, `uid`, `scp` array, `jti` `AT.…`):
    // https://groups.google.com/g/rabbitmq-users/c/O3GdCKf8soM/m/ZsjMcizrAgAJ
    check(Shape {
        provider: Provider::Okta,
        issuer_path: "/oauth2/default",
        audience: "api://default",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &[],
        header: json!({}),
        claims: |iss| {
            json!({"ver": 1, "jti": "AT.Q1w2e3R4t5Y6u7I8o9P0", "iss": iss, "aud": "api://default",
                   "cid": "0oa1b2c3d4e5f6g7h8i9", "uid": "00u1b2c3d4e5f6g7h8i9",
                   "scp": ["openid", "model_llama_3_2_1b"], "auth_time": NOW - 60, "sub": "alice@example.com"})
        },
        subject: "alice@example.com",
        client_id: "0oa1b2c3d4e5f6g7h8i9",
        scopes: "model_llama_3_2_1b openid",
    })
    .await;
}

#[tokio::test]
async fn entra_accepts_v2_delegated_tokens() {
    // Entra ID v2 delegated token (`typ: JWT` with `x5t`, `azp`, `scp` string, `uti` instead of
    // `jti`): https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference
    check(Shape {
        provider: Provider::Entra,
        issuer_path: "/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        audience: "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        audiences: &["api://llamagate"],
        issuers: &[],
        allowed_client_ids: &[],
        header: json!({"typ": "JWT", "x5t": "i6lGk3FZzxRcUb2C3nEQ7syHJlY"}),
        claims: |iss| {
            json!({"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "iss": iss, "nbf": NOW - 10,
                   "aio": "AXQAi/8TAAAA", "azp": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "azpacr": "0",
                   "name": "Abe Lincoln", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
                   "preferred_username": "abeli@microsoft.com", "rh": "I", "scp": "model_llama_3_2_1b",
                   "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
                   "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0"})
        },
        subject: "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        client_id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        scopes: "model_llama_3_2_1b",
    })
    .await;
}

#[tokio::test]
async fn entra_accepts_v1_application_tokens_with_roles() {
    // Entra ID v1 app-only token (`appid`, `roles` array, App ID URI audience, `sts.windows.net`
    // issuer accepted through `issuers`), same reference.
    check(Shape {
        provider: Provider::Entra,
        issuer_path: "/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        audience: "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        audiences: &["api://llamagate"],
        issuers: &["https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"],
        allowed_client_ids: &[],
        header: json!({"typ": "JWT", "x5t": "i6lGk3FZzxRcUb2C3nEQ7syHJlY"}),
        claims: |_| {
            let iss = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
            json!({"aud": "api://llamagate", "iss": iss, "nbf": NOW - 10, "idp": iss,
                   "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "appidacr": "1",
                   "oid": "ba1f4e3a-2d3c-4b5e-9f6a-7b8c9d0e1f2a", "roles": ["model_llama_3_2_1b"],
                   "sub": "ba1f4e3a-2d3c-4b5e-9f6a-7b8c9d0e1f2a", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                   "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "1.0"})
        },
        subject: "ba1f4e3a-2d3c-4b5e-9f6a-7b8c9d0e1f2a",
        client_id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        scopes: "model_llama_3_2_1b",
    })
    .await;
}

#[tokio::test]
async fn cognito_accepts_tokens_without_aud_from_allowed_clients() {
    // Cognito access token (no `typ`, no `aud`, `client_id`, `token_use: access`):
    // https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html
    check(Shape {
        provider: Provider::Cognito,
        issuer_path: "/us-west-2_example",
        audience: "http://127.0.0.1:8321",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &["1example23456789"],
        header: json!({}),
        claims: |iss| {
            json!({"sub": "aaaaaaaa-bbbb-cccc-dddd-example", "device_key": "aaaaaaaa-bbbb-cccc-dddd-example",
                   "cognito:groups": ["admin"], "token_use": "access",
                   "scope": "aws.cognito.signin.user.admin llamagate/model_llama_3_2_1b", "auth_time": NOW - 60,
                   "iss": iss, "jti": "aaaaaaaa-bbbb-cccc-dddd-example", "client_id": "1example23456789",
                   "username": "my-test-user", "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-example",
                   "event_id": "aaaaaaaa-bbbb-cccc-dddd-example"})
        },
        subject: "aaaaaaaa-bbbb-cccc-dddd-example",
        client_id: "1example23456789",
        scopes: "aws.cognito.signin.user.admin llamagate/model_llama_3_2_1b",
    })
    .await;
}

#[tokio::test]
async fn google_accepts_service_account_id_tokens() {
    // Google's access tokens are opaque (docs/reference/idp-token-shapes.md); the preset accepts the
    // ID tokens Google mints for a service account with this server as audience:
    // https://cloud.google.com/docs/authentication/token-types#id and
    // https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload
    check(Shape {
        provider: Provider::Google,
        issuer_path: "",
        audience: "https://llm.example",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &["112233445566778899000"],
        header: json!({"typ": "JWT"}),
        claims: |_| {
            json!({"aud": "https://llm.example", "azp": "112233445566778899000",
                   "email": "caller@project.iam.gserviceaccount.com", "email_verified": true,
                   "iss": "https://accounts.google.com", "sub": "112233445566778899000"})
        },
        subject: "112233445566778899000",
        client_id: "112233445566778899000",
        scopes: "",
    })
    .await;
}

#[tokio::test]
async fn id_tokens_and_foreign_tokens_are_refused_by_the_presets() {
    let mock = MockServer::start().await;
    mock.serve_jwks(&[&rsa_key(0, KID, Algorithm::RS256)]);
    let shape = |provider, claims: fn(&str) -> Value| Shape {
        provider,
        issuer_path: "",
        audience: "api://llm",
        audiences: &[],
        issuers: &[],
        allowed_client_ids: &["app"],
        header: json!({"typ": "JWT"}),
        claims,
        subject: "",
        client_id: "",
        scopes: "",
    };
    let cases: [(Shape, TokenError); 5] = [
        // Keycloak ID token: `typ: ID` in the claims.
        (
            shape(
                Provider::Keycloak,
                |iss| json!({"iss": iss, "aud": "api://llm", "sub": "s", "azp": "app", "typ": "ID"}),
            ),
            TokenError::WrongClaimValue("typ"),
        ),
        // Cognito ID token: `token_use: id` (and `aud` = the app client).
        (
            shape(Provider::Cognito, |iss| json!({"iss": iss, "sub": "s", "client_id": "app", "token_use": "id"})),
            TokenError::WrongClaimValue("token_use"),
        ),
        // Cognito access token of another app client of the same pool.
        (
            shape(
                Provider::Cognito,
                |iss| json!({"iss": iss, "sub": "s", "client_id": "other", "token_use": "access"}),
            ),
            TokenError::ClientNotAllowed,
        ),
        // An OIDC ID token with this API as audience still carries `nonce`/`at_hash`.
        (
            shape(
                Provider::Okta,
                |iss| json!({"iss": iss, "aud": "api://llm", "sub": "s", "cid": "app", "nonce": "n"}),
            ),
            TokenError::ForbiddenClaim("nonce"),
        ),
        // The generic preset stays RFC 9068: `typ: JWT` is not an access token.
        (
            shape(
                Provider::Generic,
                |iss| json!({"iss": iss, "aud": "api://llm", "sub": "s", "client_id": "app", "jti": "j"}),
            ),
            TokenError::WrongType,
        ),
    ];
    for (shape, expected) in cases {
        let h = harness(&shape, &mock).await;
        let mut claims = (shape.claims)(&h.issuer);
        claims["iat"] = json!(NOW);
        claims["exp"] = json!(NOW + 60);
        let refused = h.validator.validate(&sign(0, &shape, &claims)).await;
        assert_eq!(refused.err(), Some(expected.clone()), "{:?}: {expected}", shape.provider);
    }
}
