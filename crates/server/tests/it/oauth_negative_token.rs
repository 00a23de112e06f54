//! The negative matrix of docs/reference/oauth-resource-server.md §B.5, groups 10–16: claims
//! (time, issuer, audience), broken token shapes, ECDSA edge signatures, a second issuer reusing our
//! issuer's kids, scopes, and how the token is delivered. Real `llamagate serve`, real
//! `oidc-provider`; forged tokens are signed with the authorization server's own keys, so each
//! refusal comes from the rule under test. Each refusal is checked for status, RFC 6750 challenge
//! and the Llama Stack error envelope.

use crate::support::forge::{b64, b64_json, now, unb64, with_signature};
use crate::support::oauth::{
    AuthServer, Pair, SMOLLM_SCOPE, assert_insufficient_scope, assert_invalid_token, assert_refused, call, chat_body,
    model_ids,
};
use crate::support::{MODEL_ID, default_model};
use serde_json::{Value, json};

async fn pair() -> Pair {
    Pair::start(&[], "", "").await
}

/// `claims` with the members of `edits` set, or removed where `edits` has `null`.
fn edit(mut claims: Value, edits: Value) -> Value {
    for (k, v) in edits.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

#[tokio::test]
async fn group_10_time_claims_with_60_s_leeway() {
    let p = pair().await;
    let base = p.claims(SMOLLM_SCOPE);
    let t = now();
    let accepted = [
        ("expired 30 s ago, within the leeway", json!({"exp": t - 30, "iat": t - 330})),
        ("nbf 30 s ahead, within the leeway", json!({"nbf": t + 30})),
        ("iat 30 s ahead, within the leeway", json!({"iat": t + 30})),
        ("nbf in the past", json!({"nbf": t - 10})),
    ];
    for (case, edits) in accepted {
        p.assert_accepted(&p.keys.rsa.token(&edit(base.clone(), edits)), case).await;
    }
    let refused = [
        ("expired 120 s ago, beyond the leeway", json!({"exp": t - 120, "iat": t - 420})),
        ("exp missing", json!({"exp": null})),
        ("exp not a number", json!({"exp": (t + 300).to_string()})),
        ("nbf 120 s ahead", json!({"nbf": t + 120})),
        ("iat 120 s ahead", json!({"iat": t + 120})),
        ("iat missing", json!({"iat": null})),
    ];
    for (case, edits) in refused {
        p.assert_rejected(&p.keys.rsa.token(&edit(base.clone(), edits)), case).await;
    }
}

#[tokio::test]
async fn group_11_issuer_and_audience() {
    let p = pair().await;
    let base = p.claims(SMOLLM_SCOPE);
    let ours = p.auth.resource.clone();
    p.assert_accepted(&p.keys.ec.token(&base), "control").await;
    let accepted = json!({"aud": ["https://other.example", ours]});
    p.assert_accepted(&p.keys.ec.token(&edit(base.clone(), accepted)), "aud array containing ours").await;
    let refused = [
        ("another issuer", json!({"iss": "http://127.0.0.1:1"})),
        ("issuer with a trailing slash", json!({"iss": format!("{}/", p.auth.issuer)})),
        ("issuer in another case", json!({"iss": p.auth.issuer.replace("http", "HTTP")})),
        ("iss missing", json!({"iss": null})),
        ("another audience", json!({"aud": "https://other.example"})),
        ("our URL with a trailing slash", json!({"aud": format!("{ours}/")})),
        ("audience array without ours", json!({"aud": ["https://other.example"]})),
        ("aud missing", json!({"aud": null})),
        ("sub missing", json!({"sub": null})),
        ("client_id missing", json!({"client_id": null})),
    ];
    for (case, edits) in refused {
        p.assert_rejected(&p.keys.ec.token(&edit(base.clone(), edits)), case).await;
    }
}

#[tokio::test]
async fn group_12_broken_token_shapes() {
    let p = pair().await;
    let good = p.keys.rsa.token(&p.claims(SMOLLM_SCOPE));
    p.assert_accepted(&good, "control").await;
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let mut flipped = unb64(signature);
    flipped[100] ^= 0x01;
    let (header, claims) = signing_input.split_once('.').unwrap();
    let mut payload = String::from_utf8(unb64(claims)).unwrap();
    payload = payload.replace(SMOLLM_SCOPE, "model_llama_3_1_70b");
    let huge = with_signature(&json!({"alg": "RS256", "typ": "at+jwt", "pad": "x".repeat(9_000)}), &json!({}), b"sig");
    let cases = [
        ("signature bit flip", format!("{signing_input}.{}", b64(&flipped))),
        ("claims tampered", format!("{header}.{}.{signature}", b64(payload.as_bytes()))),
        ("signature removed", format!("{signing_input}.")),
        ("truncated signature", good[..good.len() - 10].to_string()),
        ("two parts", signing_input.to_string()),
        ("four parts", format!("{good}.{signature}")),
        (
            "five-part JWE",
            format!("{}.{}.{}.{}.{}", b64_json(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"})), "a", "b", "c", "d"),
        ),
        ("'+' and '/' in the header", format!("{}+/{}", &good[..10], &good[12..])),
        ("padding", format!("{good}==")),
        ("header over 8 KB", huge),
        ("over 16 KB", format!("{good}{}", "A".repeat(16 * 1024))),
    ];
    for (case, token) in cases {
        p.assert_rejected(&token, case).await;
    }
}

/// The order n of the P-256 group: r or s equal to it (or 0) is out of range.
const P256_ORDER: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

#[tokio::test]
async fn group_13_ecdsa_psychic_signatures() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    let good = p.keys.ec.token(&claims);
    p.assert_accepted(&good, "control").await;
    let n: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&P256_ORDER[2 * i..2 * i + 2], 16).unwrap()).collect();
    let real = unb64(good.rsplit('.').next().unwrap());
    let (r, s) = real.split_at(32);
    let header = p.keys.ec.header();
    let cases: [(&str, Vec<u8>); 5] = [
        ("r = s = 0 (CVE-2022-21449)", vec![0; 64]),
        ("r = s = n", [n.clone(), n.clone()].concat()),
        ("r = 0, real s", [vec![0; 32], s.to_vec()].concat()),
        ("real r, s = n", [r.to_vec(), n].concat()),
        ("DER-encoded signature", [vec![0x30, 0x44, 0x02, 0x20], r.to_vec(), vec![0x02, 0x20], s.to_vec()].concat()),
    ];
    for (case, signature) in cases {
        p.assert_rejected(&with_signature(&header, &claims, &signature), case).await;
    }
}

#[tokio::test]
async fn group_14_second_issuer_with_the_same_kids() {
    let p = pair().await;
    // A second, real oidc-provider on another port whose fresh keys carry our issuer's kid strings,
    // issuing tokens for the same resource.
    let kids = format!("{},{}", p.keys.rsa.kid, p.keys.ec.kid);
    let other = AuthServer::start_with(&p.auth.resource, &[("OP_KIDS", &kids)]).await;
    let other_keys = crate::support::forge::AsKeys::from_private_jwks(&other.private_jwks());
    assert_eq!((&other_keys.rsa.kid, &other_keys.ec.kid), (&p.keys.rsa.kid, &p.keys.ec.kid));
    for suffix in ["", "/es256"] {
        let theirs = other.access_token("smollm-client", "smollm-secret", suffix, SMOLLM_SCOPE).await;
        p.assert_rejected(&theirs, &format!("the other issuer's token{suffix}")).await;
        let ours = p.auth.access_token("smollm-client", "smollm-secret", suffix, SMOLLM_SCOPE).await;
        p.assert_accepted(&ours, &format!("our issuer's token{suffix}")).await;
    }
    // The other issuer's key, claiming to be our issuer.
    let claims = p.claims(SMOLLM_SCOPE);
    p.assert_rejected(&other_keys.rsa.token(&claims), "forged iss, other RSA key").await;
    p.assert_rejected(&other_keys.ec.token(&claims), "forged iss, other EC key").await;
}

#[tokio::test]
async fn group_15_scopes() {
    // A second, premium model served from the same file.
    let premium = "premium/llama-3.1-8b-instruct";
    let models = format!(
        "  - id: {premium}\n    source: {}\n    context_length: 1024\n    required_scope: model_llama_3_1_8b\n",
        default_model().display()
    );
    let p = Pair::start(&[], &models, "").await;
    let c = &p.server.client;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1});

    // The free client's real token: its own model only.
    let free = p.auth.access_token("smollm-client", "smollm-secret", "", "model_smollm2_135m model_llama_3_1_8b").await;
    let (status, _, body) = call(c.get(p.server.url("/v1/models")).bearer_auth(&free)).await;
    assert_eq!((status, model_ids(&body)), (200, vec![MODEL_ID]), "{body}");
    let reply = call(c.post(p.server.url("/v1/chat/completions")).bearer_auth(&free).json(&chat(premium))).await;
    assert_insufficient_scope(&reply, "model_llama_3_1_8b", "free tier asking for the premium model");
    let completion = json!({"model": premium, "prompt": "Hi", "max_tokens": 1});
    let reply = call(c.post(p.server.url("/v1/completions")).bearer_auth(&free).json(&completion)).await;
    assert_insufficient_scope(&reply, "model_llama_3_1_8b", "free tier, completions");

    // The premium client's token reaches it.
    let premium_token =
        p.auth.access_token("premium-client", "premium-secret", "", "model_smollm2_135m model_llama_3_1_8b").await;
    let (status, _, body) =
        call(c.post(p.server.url("/v1/chat/completions")).bearer_auth(&premium_token).json(&chat(premium))).await;
    assert_eq!(status, 200, "{body}");

    // A real token for another model only, and one with no scope at all.
    let other = p.auth.access_token("other-client", "other-secret", "", "model_llama_3_2_1b").await;
    let bare = p.auth.access_token("smollm-client", "smollm-secret", "", "").await;
    for (case, token) in [("another model's scope", &other), ("no scope", &bare)] {
        let reply = call(c.post(p.server.url("/v1/chat/completions")).bearer_auth(token).json(&chat_body())).await;
        assert_insufficient_scope(&reply, SMOLLM_SCOPE, case);
    }
    // Scopes match as whole tokens, never as substrings or prefixes.
    for scope in [
        "model_smollm2_135m_extra",
        "model_smollm2",
        "xmodel_smollm2_135m",
        "MODEL_SMOLLM2_135M",
        "model_smollm2_135m,x",
    ] {
        let token = p.keys.rsa.token(&p.claims(scope));
        let reply = call(c.post(p.server.url("/v1/chat/completions")).bearer_auth(&token).json(&chat_body())).await;
        assert_insufficient_scope(&reply, SMOLLM_SCOPE, scope);
    }
}

#[tokio::test]
async fn group_16_token_delivery() {
    let p = pair().await;
    let token = p.auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    p.assert_accepted(&token, "control").await;
    let c = &p.server.client;
    // OAuth 2.1 §5.1.1: never in the query string, even when the header carries it too.
    let in_query = call(c.get(p.server.url(&format!("/v1/models?access_token={token}")))).await;
    assert_refused(&in_query, 400, Some("invalid_request"), "token in the query");
    let both = call(c.get(p.server.url(&format!("/v1/models?access_token={token}"))).bearer_auth(&token)).await;
    assert_refused(&both, 400, Some("invalid_request"), "token in the query and the header");
    // Two Authorization headers are ambiguous, even when both hold the same valid token.
    let header = format!("Bearer {token}");
    let two =
        call(c.get(p.server.url("/v1/models")).header("authorization", &header).header("authorization", &header)).await;
    assert_refused(&two, 400, Some("invalid_request"), "two Authorization headers");
    // No token at all: the bare challenge.
    assert_refused(&call(c.get(p.server.url("/v1/models"))).await, 401, None, "no Authorization header");
    // Another scheme is no credentials (RFC 6750 §3.1: no error code).
    let basic = call(c.get(p.server.url("/v1/models")).header("authorization", "Basic dXNlcjpwYXNz")).await;
    assert_refused(&basic, 401, None, "Basic scheme");
    // The token in a form body is not read either (RFC 6750 §2.2 is optional, and we do not offer it).
    let form = call(
        c.post(p.server.url("/v1/chat/completions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("access_token={token}")),
    )
    .await;
    assert_refused(&form, 401, None, "token in a form body");
    assert_invalid_token(&p.models("not-a-token").await, "garbage");
}
