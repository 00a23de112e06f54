//! RFC 9449 DPoP end to end: the real `oidc-provider` issues a DPoP-bound access token (`cnf.jkt`)
//! for a client key this test holds, and the real `llamagate serve` (with `dpop_enabled: true`)
//! accepts it only with a fresh proof for each request — plus §B.5 group 17, every way a proof or
//! the binding can be wrong. Proof refusals are 401 `invalid_dpop_proof` in the DPoP challenge
//! (RFC 9449 §7.1); a bound token sent as Bearer is 401 `invalid_token`.

use crate::support::forge::{
    SigningKey, ath, b64_json, fresh_ec_key, fresh_ec_key_with_d, now, private_ec_jwk, sign, unb64, unique,
};
use crate::support::oauth::{Pair, Reply, SMOLLM_SCOPE, assert_invalid_token, call, chat_body};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// A DPoP proof by `key` for `htm` `htu`, with `ath` for `token` when given.
pub(crate) fn proof(key: &SigningKey, htm: &str, htu: &str, token: Option<&str>) -> (Value, Value) {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk});
    let mut claims = json!({"htm": htm, "htu": htu, "jti": unique("proof"), "iat": now()});
    if let Some(token) = token {
        claims["ath"] = json!(ath(token));
    }
    (header, claims)
}

/// 401 `invalid_dpop_proof`: the DPoP challenge carries the error (and the accepted `algs`), the
/// Bearer challenge stays bare, the envelope names the error.
fn assert_bad_proof(reply: &Reply, case: &str) {
    let (status, challenges, body) = reply;
    assert_eq!(*status, 401, "{case}: {body} {challenges:?}");
    assert_eq!(body["error"]["type"], "invalid_dpop_proof", "{case}: {body}");
    assert!(body["error"]["message"].is_string(), "{case}: {body}");
    let dpop = challenges.iter().find(|c| c.starts_with("DPoP ")).unwrap_or_else(|| panic!("{case}: {challenges:?}"));
    assert!(dpop.contains("error=\"invalid_dpop_proof\"") && dpop.contains("algs=\""), "{case}: {dpop}");
    let bearer = challenges.iter().find(|c| c.starts_with("Bearer ")).unwrap();
    assert!(!bearer.contains("error="), "{case}: {bearer}");
}

/// The authorization server, llamagate with DPoP on, a client key and a token bound to it.
pub(crate) struct Dpop {
    pub(crate) p: Pair,
    pub(crate) client: SigningKey,
    client_d: Vec<u8>,
    pub(crate) token: String,
    /// `GET /v1/models` on the server, the URL the proofs name.
    pub(crate) url: String,
}

impl Dpop {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with `dpop_enabled: true` and these further `oauth_config` lines.
    pub(crate) async fn start_with(extra_oauth: &str) -> Self {
        let p = Pair::start(&[], "", &format!("  dpop_enabled: true\n{extra_oauth}")).await;
        let (client, client_d) = fresh_ec_key_with_d("client-key");
        let (header, claims) = proof(&client, "POST", &p.auth.token_endpoint(), None);
        let to_token_endpoint = client.sign(&header, &claims);
        let response = p
            .auth
            .token_response("smollm-client", "smollm-secret", &p.auth.resource, SMOLLM_SCOPE, Some(&to_token_endpoint))
            .await;
        assert_eq!(response["token_type"], "DPoP", "{response}");
        let token = response["access_token"].as_str().unwrap().to_string();
        let payload: Value = serde_json::from_slice(&unb64(token.split('.').nth(1).unwrap())).unwrap();
        assert!(payload["cnf"]["jkt"].is_string(), "a DPoP-bound JWT: {payload}");
        let url = p.server.url("/v1/models");
        Self { p, client, client_d, token, url }
    }

    /// `GET /v1/models` with `Authorization: DPoP` and these `DPoP` header values.
    async fn get(&self, token: &str, proofs: &[&str]) -> Reply {
        let mut request = self.p.server.client.get(&self.url).header("authorization", format!("DPoP {token}"));
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        call(request).await
    }

    /// A good proof for `GET /v1/models` with this token, after `edit`.
    pub(crate) fn proof_with(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = proof(&self.client, "GET", &self.url, Some(&self.token));
        edit(&mut header, &mut claims);
        self.client.sign(&header, &claims)
    }
}

#[tokio::test]
async fn dpop_bound_tokens_from_the_real_authorization_server() {
    let d = Dpop::start().await;
    let (status, _, body) = d.get(&d.token, &[&d.proof_with(|_, _| {})]).await;
    assert_eq!(status, 200, "{body}\n{}", d.p.server.log());
    // Every request carries its own proof, for its own method and URL.
    let chat_url = d.p.server.url("/v1/chat/completions");
    let (header, claims) = proof(&d.client, "POST", &chat_url, Some(&d.token));
    let request = d.p.server.client.post(&chat_url).header("authorization", format!("DPoP {}", d.token));
    let reply = call(request.header("dpop", d.client.sign(&header, &claims)).json(&chat_body())).await;
    assert_eq!(reply.0, 200, "{}", reply.2);
    // The scheme name is case-insensitive; a query string is not part of htu.
    let (status, _, body) = call(
        d.p.server
            .client
            .get(format!("{}?limit=1", d.url))
            .header("authorization", format!("dpop {}", d.token))
            .header("dpop", d.proof_with(|_, _| {})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn group_17_dpop_negatives() {
    let d = Dpop::start().await;
    let c = &d.p.server.client;

    // The bound token as a plain Bearer token: the binding would be bypassed by dropping the proof.
    assert_invalid_token(&call(c.get(&d.url).bearer_auth(&d.token)).await, "DPoP-bound token as Bearer");
    let with_proof = c.get(&d.url).bearer_auth(&d.token).header("dpop", d.proof_with(|_, _| {}));
    assert_invalid_token(&call(with_proof).await, "DPoP-bound token as Bearer, with a proof");
    // An unbound token under the DPoP scheme.
    let bearer = d.p.auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    let (header, claims) = proof(&d.client, "GET", &d.url, Some(&bearer));
    assert_invalid_token(&d.get(&bearer, &[&d.client.sign(&header, &claims)]).await, "unbound token as DPoP");

    // Replay: a proof is good once.
    let once = d.proof_with(|_, _| {});
    assert_eq!(d.get(&d.token, &[&once]).await.0, 200);
    assert_bad_proof(&d.get(&d.token, &[&once]).await, "replayed jti");

    let t = now();
    let other = fresh_ec_key("other");
    let mismatched = {
        let (header, claims) = proof(&other, "GET", &d.url, Some(&d.token));
        other.sign(&header, &claims)
    };
    let private_jwk = private_ec_jwk(&d.client, &d.client_d);
    let hs256 = {
        let (mut header, claims) = proof(&d.client, "GET", &d.url, Some(&d.token));
        header["alg"] = json!("HS256");
        sign(&header, &claims, &EncodingKey::from_secret(b"secret").unwrap(), Algorithm::HS256)
    };
    let none = {
        let (mut header, claims) = proof(&d.client, "GET", &d.url, Some(&d.token));
        header["alg"] = json!("none");
        format!("{}.{}.", b64_json(&header), b64_json(&claims))
    };
    let server_origin = d.p.server.base.clone();
    let cases: Vec<(&str, String)> = vec![
        ("wrong htm", d.proof_with(|_, c| c["htm"] = json!("POST"))),
        ("lowercase htm", d.proof_with(|_, c| c["htm"] = json!("get"))),
        ("htu for another path", d.proof_with(|_, c| c["htu"] = json!(format!("{server_origin}/v1/chat/completions")))),
        ("htu for another host", d.proof_with(|_, c| c["htu"] = json!("https://evil.example/v1/models"))),
        ("htu missing", d.proof_with(|_, c| c["htu"] = Value::Null)),
        ("iat 5 minutes old", d.proof_with(|_, c| c["iat"] = json!(t - 300))),
        ("iat 5 minutes ahead", d.proof_with(|_, c| c["iat"] = json!(t + 300))),
        ("iat missing", d.proof_with(|_, c| c["iat"] = Value::Null)),
        ("jti missing", d.proof_with(|_, c| c["jti"] = Value::Null)),
        (
            "ath missing",
            d.proof_with(|_, c| {
                c.as_object_mut().unwrap().remove("ath");
            }),
        ),
        ("ath of another token", d.proof_with(|_, c| c["ath"] = json!(ath("another token")))),
        ("proof key is not the bound key", mismatched),
        ("proof alg none", none),
        ("proof alg HS256", hs256),
        ("proof jwk with the private d", d.proof_with(|h, _| h["jwk"] = private_jwk.clone())),
        (
            "proof without jwk",
            d.proof_with(|h, _| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
        ),
        ("proof typ JWT", d.proof_with(|h, _| h["typ"] = json!("JWT"))),
        ("proof typ at+jwt", d.proof_with(|h, _| h["typ"] = json!("at+jwt"))),
        ("proof with jku", d.proof_with(|h, _| h["jku"] = json!("http://127.0.0.1:1/jwks"))),
        ("not a JWS", "not-a-proof".to_string()),
    ];
    for (case, proof) in &cases {
        assert_bad_proof(&d.get(&d.token, &[proof]).await, case);
    }
    assert_bad_proof(&d.get(&d.token, &[]).await, "no DPoP header");
    let (a, b) = (d.proof_with(|_, _| {}), d.proof_with(|_, _| {}));
    assert_bad_proof(&d.get(&d.token, &[&a, &b]).await, "two DPoP headers");
    // None of the refused proofs burnt the token: a fresh good one still works.
    assert_eq!(d.get(&d.token, &[&d.proof_with(|_, _| {})]).await.0, 200);
}
