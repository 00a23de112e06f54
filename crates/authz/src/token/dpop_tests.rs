//! Negative matrix (docs/reference/oauth-resource-server.md §B.5) group 17 (DPoP) at the unit level.

use super::*;
use crate::clock::ManualClock;
use crate::test_fixtures::{TestKey, ec_key, rsa_key};

const NOW: u64 = 1_800_000_000;
const URL: &str = "https://llm.example/v1/chat/completions";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.e30.sig";

struct Proofs {
    key: TestKey,
    jkt: String,
    verifier: DpopVerifier,
    hand: ManualClock,
}

fn setup() -> Proofs {
    let key = ec_key("client-key");
    let jkt = thumbprint(key.public_jwk.as_object().expect("obj")).expect("thumbprint");
    let (clock, hand) = Clock::manual(NOW);
    Proofs { key, jkt, verifier: DpopVerifier::new(vec![Algorithm::ES256, Algorithm::RS256], 60, clock), hand }
}

impl Proofs {
    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public_jwk})
    }
    fn claims(&self, jti: &str) -> Value {
        json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": jti, "ath": access_token_hash(TOKEN)})
    }
    fn proof(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut h, mut c) = (self.header(), self.claims("jti-1"));
        edit(&mut h, &mut c);
        self.key.sign_raw(&h, &c)
    }
    async fn check(&self, proof: &str) -> Result<(), DpopError> {
        self.check_for(proof, "POST", URL).await
    }
    async fn check_for(&self, proof: &str, method: &str, url: &str) -> Result<(), DpopError> {
        let req = DpopRequest { method, url, access_token: TOKEN, expected_jkt: &self.jkt };
        self.verifier.verify(proof, &req).await
    }
}

#[test]
fn thumbprint_matches_rfc_7638_example() {
    let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
    assert_eq!(
        thumbprint(jwk.as_object().expect("obj")).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    assert_eq!(access_token_hash("x").len(), 43);
}

#[tokio::test]
async fn a_good_proof_passes_once() {
    let p = setup();
    let proof = p.proof(|_, _| {});
    assert_eq!(p.check(&proof).await, Ok(()));
    assert_eq!(p.check(&proof).await, Err(DpopError::Replay), "replayed jti");
    let other = p.proof(|_, c| c["jti"] = json!("jti-2"));
    assert_eq!(p.check_for(&other, "POST", "https://LLM.example:443/v1/chat/completions?stream=1#x").await, Ok(()));
    // An RSA proof key works the same way.
    let rsa = rsa_key(1, "r", Algorithm::RS256);
    let mut jwk = rsa.public_jwk.clone();
    jwk.as_object_mut().expect("obj").remove("kid");
    let rsa_jkt = thumbprint(jwk.as_object().expect("obj")).expect("jkt");
    let proof = rsa.sign_raw(&json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}), &p.claims("jti-rsa"));
    let req = DpopRequest { method: "POST", url: URL, access_token: TOKEN, expected_jkt: &rsa_jkt };
    assert_eq!(p.verifier.verify(&proof, &req).await, Ok(()));
}

#[tokio::test]
async fn proof_negatives() {
    let p = setup();
    let cases: Vec<(&str, String, DpopError)> = vec![
        ("wrong htm", p.proof(|_, c| c["htm"] = json!("GET")), DpopError::MethodMismatch),
        ("lowercase htm", p.proof(|_, c| c["htm"] = json!("post")), DpopError::MethodMismatch),
        ("wrong htu", p.proof(|_, c| c["htu"] = json!("https://llm.example/v1/models")), DpopError::UrlMismatch),
        (
            "other host",
            p.proof(|_, c| c["htu"] = json!("https://evil.example/v1/chat/completions")),
            DpopError::UrlMismatch,
        ),
        ("old iat", p.proof(|_, c| c["iat"] = json!(NOW - 61)), DpopError::IatOutOfWindow),
        ("future iat", p.proof(|_, c| c["iat"] = json!(NOW + 61)), DpopError::IatOutOfWindow),
        ("no iat", p.proof(|_, c| c["iat"] = Value::Null), DpopError::BadClaim("iat")),
        ("no jti", p.proof(|_, c| c["jti"] = Value::Null), DpopError::BadClaim("jti")),
        ("no ath", p.proof(|_, c| c["ath"] = Value::Null), DpopError::AthMismatch),
        ("wrong ath", p.proof(|_, c| c["ath"] = json!(access_token_hash("other"))), DpopError::AthMismatch),
        ("typ JWT", p.proof(|h, _| h["typ"] = json!("JWT")), DpopError::WrongType),
        ("typ at+jwt", p.proof(|h, _| h["typ"] = json!("at+jwt")), DpopError::WrongType),
        (
            "no jwk",
            p.proof(|h, _| {
                h.as_object_mut().expect("obj").remove("jwk");
            }),
            DpopError::Jose(JoseError::HeaderKey),
        ),
        ("jku", p.proof(|h, _| h["jku"] = json!("http://127.0.0.1:1/")), DpopError::Jose(JoseError::HeaderKey)),
        ("private jwk", p.proof(|h, _| h["jwk"]["d"] = json!("AAAA")), DpopError::PrivateKey),
        ("alg none", p.proof(|h, _| h["alg"] = json!("none")), DpopError::Jose(JoseError::AlgNone)),
        ("HS256", p.proof(|h, _| h["alg"] = json!("HS256")), DpopError::Jose(JoseError::AlgSymmetric)),
        ("RS256 on EC key", p.proof(|h, _| h["alg"] = json!("RS256")), DpopError::BadKey),
        ("crit", p.proof(|h, _| h["crit"] = json!(["htm"])), DpopError::Jose(JoseError::Crit)),
    ];
    for (name, proof, want) in cases {
        assert_eq!(p.check(&proof).await, Err(want), "{name}");
    }
    // Signed by one key while carrying another's jwk.
    let other = ec_key("x");
    let forged = other.sign_raw(&p.header(), &p.claims("jti-f"));
    assert_eq!(p.check(&forged).await, Err(DpopError::Jose(JoseError::BadSignature)));
    // A proof from a key other than the token's cnf.jkt.
    let mut h = p.header();
    h["jwk"] = other.public_jwk.clone();
    let unbound = other.sign_raw(&h, &p.claims("jti-u"));
    assert_eq!(p.check(&unbound).await, Err(DpopError::KeyMismatch));
    // Refused proofs did not burn their jti: the good proof with jti-1 still passes.
    p.hand.advance(30);
    let good = p.proof(|_, c| c["iat"] = json!(NOW + 30));
    assert_eq!(p.check(&good).await, Ok(()));
}

/// Two verifiers sharing one real `redis-server` are two replicas: a proof accepted by one is a
/// replay to the other, and a Redis that cannot be reached refuses proofs instead of accepting them.
#[tokio::test]
async fn replicas_sharing_redis_refuse_each_others_proofs_and_refuse_when_it_is_down() {
    let redis = llamagate_testkit::RedisServer::start();
    let p = setup();
    let replica = |clock: Clock| {
        let store = RedisReplayStore::connect(&redis.url(), "llamagate", std::time::Duration::from_millis(500))
            .expect("connect");
        DpopVerifier::new(vec![Algorithm::ES256], 60, clock).with_shared_replays(store)
    };
    let (a, b) = (replica(Clock::manual(NOW).0), replica(Clock::manual(NOW).0));
    let req = DpopRequest { method: "POST", url: URL, access_token: TOKEN, expected_jkt: &p.jkt };
    let proof = p.proof(|_, _| {});
    assert_eq!(a.verify(&proof, &req).await, Ok(()));
    assert_eq!(b.verify(&proof, &req).await, Err(DpopError::Replay), "replayed on the other replica");
    assert_eq!(a.verify(&proof, &req).await, Err(DpopError::Replay));
    let refused = p.proof(|_, c| c["htm"] = json!("GET"));
    assert_eq!(b.verify(&refused, &req).await, Err(DpopError::MethodMismatch));
    let fresh = p.proof(|_, c| c["jti"] = json!("jti-2"));
    assert_eq!(b.verify(&fresh, &req).await, Ok(()));

    redis.kill();
    let next = p.proof(|_, c| c["jti"] = json!("jti-3"));
    assert_eq!(a.verify(&next, &req).await, Err(DpopError::ReplayStoreUnavailable));
    assert_eq!(a.verify(&proof, &req).await, Err(DpopError::ReplayStoreUnavailable));
}

/// RFC 9449 §9: with nonces required, a proof needs this or the previous window's nonce; the refusal
/// does not burn the `jti`, so the client's retry with the nonce may reuse nothing but must succeed.
#[tokio::test]
async fn server_nonces_are_required_when_on() {
    let p = setup();
    let (clock, hand) = Clock::manual(NOW);
    let nonces = NonceIssuer::new(Some(b"0123456789abcdef0123456789abcdef"), clock.clone()).expect("nonces");
    let verifier = DpopVerifier::new(vec![Algorithm::ES256], 60, clock).with_nonces(nonces);
    let req = DpopRequest { method: "POST", url: URL, access_token: TOKEN, expected_jkt: &p.jkt };
    let nonce = verifier.current_nonce().expect("nonces on");
    assert_eq!(p.verifier.current_nonce(), None, "off by default");

    assert_eq!(verifier.verify(&p.proof(|_, _| {}), &req).await, Err(DpopError::UseNonce), "no nonce");
    let wrong = p.proof(|_, c| c["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(verifier.verify(&wrong, &req).await, Err(DpopError::UseNonce), "not ours");
    let not_a_string = p.proof(|_, c| c["nonce"] = json!(7));
    assert_eq!(verifier.verify(&not_a_string, &req).await, Err(DpopError::UseNonce));
    let with_nonce = p.proof(|_, c| c["nonce"] = json!(nonce));
    assert_eq!(verifier.verify(&with_nonce, &req).await, Ok(()), "the same jti, now with the nonce");
    assert_eq!(verifier.verify(&with_nonce, &req).await, Err(DpopError::Replay));

    // A window later the old nonce still passes (and the current one has rotated); two windows later
    // it does not.
    hand.advance(crate::token::dpop_nonce::WINDOW_SECONDS);
    assert_ne!(verifier.current_nonce().as_deref(), Some(nonce.as_str()));
    let later = p.proof(|_, c| {
        c["nonce"] = json!(nonce);
        c["jti"] = json!("jti-2");
        c["iat"] = json!(NOW + crate::token::dpop_nonce::WINDOW_SECONDS);
    });
    assert_eq!(verifier.verify(&later, &req).await, Ok(()));
    hand.advance(crate::token::dpop_nonce::WINDOW_SECONDS);
    let stale = p.proof(|_, c| {
        c["nonce"] = json!(nonce);
        c["jti"] = json!("jti-3");
        c["iat"] = json!(NOW + 2 * crate::token::dpop_nonce::WINDOW_SECONDS);
    });
    assert_eq!(verifier.verify(&stale, &req).await, Err(DpopError::UseNonce));
}
