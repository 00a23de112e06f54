//! The negative matrix of docs/reference/oauth-resource-server.md §B.5, groups 1–9: attacks on the
//! JWS header (algorithm, key selection, header-supplied keys, `kid`, `crit`, `typ`), against the
//! real `llamagate serve` in front of a real `oidc-provider`. Every token is signed with the
//! authorization server's own private keys (or a fresh attacker key), so the refusal can only come
//! from the rule under test; each test first shows that the unmodified token is accepted. Each
//! refusal is checked for status, RFC 6750 challenge and the Llama Stack error envelope.

use std::io::ErrorKind;
use std::net::TcpListener;

use crate::support::Server;
use crate::support::forge::{b64, b64_json, fresh_ec_key, rsa_public_pems, sign, unique};
use crate::support::oauth::{AuthServer, JwksCounter, Pair, SMOLLM_SCOPE, assert_invalid_token, free_port};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

async fn pair() -> Pair {
    Pair::start(&[], "", "").await
}

/// `header` with the members of `edits` set, or removed where `edits` has `null`.
fn with(mut header: Value, edits: Value) -> Value {
    for (k, v) in edits.as_object().unwrap() {
        if v.is_null() {
            header.as_object_mut().unwrap().remove(k);
        } else {
            header[k] = v.clone();
        }
    }
    header
}

#[tokio::test]
async fn group_01_alg_none_is_refused() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    let good = p.keys.rsa.token(&claims);
    p.assert_accepted(&good, "control").await;
    let signature = good.rsplit('.').next().unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = with(p.keys.rsa.header(), json!({"alg": alg}));
        let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&claims));
        p.assert_rejected(&unsigned, &format!("alg {alg}, empty signature")).await;
        // The AS's valid signature kept, only the algorithm switched off.
        p.assert_rejected(&format!("{unsigned}{signature}"), &format!("alg {alg}, old signature")).await;
        let no_kid = with(header, json!({"kid": null}));
        p.assert_rejected(&format!("{}.{}.", b64_json(&no_kid), b64_json(&claims)), "alg none, no kid").await;
    }
}

#[tokio::test]
async fn group_02_hmac_with_the_public_key_is_refused() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    p.assert_accepted(&p.keys.rsa.token(&claims), "control").await;
    // RS/HS key confusion (CVE-2015-9235 class): the public key, in every form an attacker can get
    // it, used as the HMAC secret.
    let [pkcs1, spki] = rsa_public_pems(&p.keys.rsa.public_jwk);
    let jwk_bytes = serde_json::to_vec(&p.keys.rsa.public_jwk).unwrap();
    let secrets: [(&str, &[u8]); 3] =
        [("PKCS#1 PEM", pkcs1.as_bytes()), ("SPKI PEM", spki.as_bytes()), ("JWK", &jwk_bytes)];
    for (form, secret) in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let header = with(p.keys.rsa.header(), json!({"alg": format!("{alg:?}")}));
            let token = sign(&header, &claims, &EncodingKey::from_secret(secret).unwrap(), alg);
            p.assert_rejected(&token, &format!("{alg:?} keyed with the {form}")).await;
        }
    }
}

#[tokio::test]
async fn group_03_algorithm_must_fit_the_key() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    p.assert_accepted(&p.keys.ec.token(&claims), "control ES256").await;
    // A valid RS256 signature by the AS's RSA key, but the kid names its EC key.
    let rs_on_ec = p.keys.rsa.sign(&with(p.keys.rsa.header(), json!({"kid": p.keys.ec.kid})), &claims);
    p.assert_rejected(&rs_on_ec, "RS256 header with the ES key's kid").await;
    // And the other way round.
    let es_on_rsa = p.keys.ec.sign(&with(p.keys.ec.header(), json!({"kid": p.keys.rsa.kid})), &claims);
    p.assert_rejected(&es_on_rsa, "ES256 header with the RSA key's kid").await;
}

#[tokio::test]
async fn group_04_algorithms_outside_the_allow_list_are_refused() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    p.assert_accepted(&p.keys.rsa.token(&claims), "control").await;
    // Valid signatures by the AS's own RSA key under algorithms it could use but we do not allow.
    for alg in [Algorithm::PS256, Algorithm::PS384, Algorithm::RS384, Algorithm::RS512] {
        let header = with(p.keys.rsa.header(), json!({"alg": format!("{alg:?}")}));
        let token = sign(&header, &claims, &p.keys.rsa.encoding, alg);
        p.assert_rejected(&token, &format!("{alg:?}")).await;
    }
}

#[tokio::test]
async fn group_05_embedded_jwk_is_refused() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    let attacker = fresh_ec_key("attacker");
    // CVE-2018-0114 / jwt_tool -X i: the token carries the key that verifies it.
    for kid in [None, Some(attacker.kid.as_str()), Some(p.keys.ec.kid.as_str())] {
        let header = with(json!({"alg": "ES256", "typ": "at+jwt", "jwk": attacker.public_jwk}), json!({"kid": kid}));
        p.assert_rejected(&attacker.sign(&header, &claims), &format!("embedded jwk, kid {kid:?}")).await;
    }
    // The same attacker token without the embedded key fails too: no key of ours verifies it.
    p.assert_rejected(&attacker.token(&claims), "attacker key, no jwk").await;
}

/// A listener nobody should ever connect to; `accept` sees even a connection never served.
fn trap() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

fn assert_never_contacted(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the server fetched a URL named by a token (connection from {peer})"),
        Err(e) => panic!("listener: {e}"),
    }
}

#[tokio::test]
async fn group_06_jku_and_x5u_are_never_fetched() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    let attacker = fresh_ec_key("attacker");
    let (listener, evil) = trap();
    let cases = [
        ("jku", json!({"jku": format!("{evil}/jwks.json")})),
        ("x5u", json!({"x5u": format!("{evil}/cert.pem")})),
        ("jku + x5u", json!({"jku": format!("{evil}/jwks.json"), "x5u": format!("{evil}/cert.pem")})),
        ("x5c", json!({"x5c": [b64(b"not a certificate")]})),
    ];
    for (name, edit) in cases {
        // With the attacker's key and kid (the spoofed JWKS would hold it), and with our key's kid.
        let header = with(attacker.header(), edit.clone());
        p.assert_rejected(&attacker.sign(&header, &claims), &format!("{name}, attacker kid")).await;
        let header = with(p.keys.ec.header(), edit);
        p.assert_rejected(&p.keys.ec.sign(&header, &claims), &format!("{name}, AS kid")).await;
    }
    // The refusals are answered: anything fetched would have connected by now.
    p.assert_accepted(&p.keys.ec.token(&claims), "control after the attack").await;
    assert_never_contacted(&listener);
}

// Multi-threaded: the counting proxy must answer while this thread waits for llamagate to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_07_hostile_and_unknown_kids_and_a_flood_costs_one_fetch() {
    // llamagate fetches keys through a counting proxy; it is "down" while llamagate starts, so the
    // start-up prefetch fails and the flood below finds no key set and no recent attempt: the flood
    // itself must cause the fetch, and exactly one (the refetch throttle is 30 s, the default).
    let port = free_port();
    let auth = AuthServer::start(&format!("http://127.0.0.1:{port}")).await;
    let counter = JwksCounter::start(format!("{}/jwks", auth.issuer)).await;
    counter.set_down(true);
    let yaml = auth.oauth_yaml(&format!("  jwks_uri: {}\n", counter.url));
    let server = Server::start_with_config(port, &yaml, Some("info"));
    assert_eq!(counter.fetches(), 1, "the start-up prefetch");
    let p = Pair { keys: crate::support::forge::AsKeys::from_private_jwks(&auth.private_jwks()), auth, server };
    counter.set_down(false);
    let claims = p.claims(SMOLLM_SCOPE);

    let flood: Vec<String> = (0..100)
        .map(|i| {
            p.keys.rsa.sign(&json!({"alg": "RS256", "typ": "at+jwt", "kid": unique(&format!("flood{i}"))}), &claims)
        })
        .collect();
    let replies = futures::future::join_all(flood.iter().map(|t| p.models(t))).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_invalid_token(reply, &format!("flood kid {i}"));
    }
    assert_eq!(counter.fetches(), 2, "100 unknown kids within 30 s: one JWKS fetch");

    // The keys fetched then are in use: a good token needs no further fetch.
    p.assert_accepted(&p.keys.rsa.token(&claims), "control").await;
    let long_kid = "k".repeat(10_000);
    let kids =
        ["../../dev/null", "/etc/passwd", "' OR '1'='1' --", "kid\"; DROP TABLE keys; --", &long_kid, "no-such-kid"];
    for kid in kids {
        let header = with(p.keys.rsa.header(), json!({"kid": kid}));
        p.assert_rejected(&p.keys.rsa.sign(&header, &claims), &format!("kid {:.40}", kid)).await;
    }
    for kid in [json!(""), json!(7), json!(null), json!(["a"]), json!("k".repeat(300))] {
        let header = with(p.keys.rsa.header(), json!({"kid": kid}));
        // A missing kid is fine when one key fits the algorithm (RS256 here): that case is accepted.
        if kid.is_null() {
            p.assert_accepted(&p.keys.rsa.sign(&header, &claims), "no kid, one RSA key").await;
        } else {
            p.assert_rejected(&p.keys.rsa.sign(&header, &claims), &format!("kid {kid:.40}")).await;
        }
    }
    let second: Vec<String> = (0..100)
        .map(|i| {
            p.keys.ec.sign(&json!({"alg": "ES256", "typ": "at+jwt", "kid": unique(&format!("again{i}"))}), &claims)
        })
        .collect();
    for reply in futures::future::join_all(second.iter().map(|t| p.models(t))).await {
        assert_invalid_token(&reply, "second flood");
    }
    assert_eq!(counter.fetches(), 2, "no further JWKS fetch within the 30 s window");
}

#[tokio::test]
async fn group_08_crit_headers_are_refused() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    p.assert_accepted(&p.keys.rsa.token(&claims), "control").await;
    let cases = [
        json!({"crit": ["exp"], "exp": claims["exp"]}),
        json!({"crit": ["urn:example:unknown"], "urn:example:unknown": true}),
        json!({"crit": ["b64"], "b64": true}),
        json!({"crit": []}),
    ];
    for edit in cases {
        let header = with(p.keys.rsa.header(), edit.clone());
        p.assert_rejected(&p.keys.rsa.sign(&header, &claims), &format!("{edit}")).await;
    }
}

#[tokio::test]
async fn group_09_typ_must_be_at_jwt() {
    let p = pair().await;
    let claims = p.claims(SMOLLM_SCOPE);
    // RFC 9068 §4 also allows the full media type.
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let header = with(p.keys.ec.header(), json!({"typ": typ}));
        p.assert_accepted(&p.keys.ec.sign(&header, &claims), &format!("typ {typ}")).await;
    }
    for typ in [json!(null), json!("JWT"), json!("jwt"), json!("dpop+jwt"), json!("at+jwt2"), json!(""), json!(1)] {
        let header = with(p.keys.ec.header(), json!({"typ": typ}));
        p.assert_rejected(&p.keys.ec.sign(&header, &claims), &format!("typ {typ}")).await;
    }
}
