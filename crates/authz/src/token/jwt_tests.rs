//! Negative matrix (docs/reference/oauth-resource-server.md §B.5) groups 1–14 at the unit level, with
//! real RS256/ES256 signatures.

use super::*;
use crate::clock::ManualClock;
use crate::test_fixtures::{MockServer, TestKey, ec_key, rsa_key};
use crate::token::discovery::build_http_client;
use crate::token::jwks::JwksSettings;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const AUD: &str = "http://127.0.0.1:8321";

struct Fixture {
    mock: MockServer,
    validator: TokenValidator,
    hand: ManualClock,
    rsa: TestKey,
    ec: TestKey,
}

async fn fixture() -> Fixture {
    let mock = MockServer::start().await;
    let rsa = rsa_key(0, "rs", Algorithm::RS256);
    let ec = ec_key("es");
    mock.serve_metadata();
    mock.serve_jwks(&[&rsa, &ec]);
    let (clock, hand) = Clock::manual(NOW);
    let allowed = vec![Algorithm::RS256, Algorithm::ES256];
    let settings = JwksSettings {
        issuer: mock.base.clone(),
        jwks_uri: None,
        ttl: 300,
        refetch_interval: 30,
        allowed: allowed.clone(),
    };
    let jwks = Arc::new(JwksCache::new(build_http_client().expect("client"), settings, clock.clone()));
    let policy = JwtPolicy {
        issuer: mock.base.clone(),
        audience: AUD.into(),
        allowed,
        leeway: 60,
        expected_typ: "at+jwt".into(),
    };
    Fixture { validator: TokenValidator::new(jwks, policy, clock), mock, hand, rsa, ec }
}

impl Fixture {
    fn claims(&self) -> Value {
        json!({"iss": self.mock.base, "aud": AUD, "sub": "alice", "client_id": "free-client", "jti": "j1",
               "iat": NOW - 10, "exp": NOW + 300, "scope": "model_llama_3_2_1b safety_standard", "tier": "free"})
    }
    fn with(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = self.claims();
        edit(c.as_object_mut().expect("object"));
        c
    }
    async fn check(&self, token: &str) -> Result<Principal, TokenError> {
        self.validator.validate(token).await
    }
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_are_accepted() {
    let f = fixture().await;
    for key in [&f.rsa, &f.ec] {
        let p = f.check(&key.sign(&f.claims(), Some("at+jwt"))).await.expect("valid token");
        assert_eq!(p.subject, "alice");
        assert_eq!(p.client_id, "free-client");
        assert!(p.scopes.contains("model_llama_3_2_1b"));
        assert_eq!(p.tier.as_deref(), Some("free"));
        assert_eq!(p.expires_at, Some(NOW + 300));
        assert_eq!(p.source, TokenSource::Jwt);
        assert!(!p.is_dpop_bound());
    }
    let app_typ = f.ec.sign(&f.claims(), Some("application/at+jwt"));
    assert!(f.check(&app_typ).await.is_ok());
    let aud_list = f.with(|c| {
        c.insert("aud".into(), json!(["https://other", AUD]));
    });
    assert!(f.check(&f.ec.sign(&aud_list, Some("at+jwt"))).await.is_ok(), "aud array containing ours");
    let no_scope = f.with(|c| {
        c.remove("scope");
    });
    let p = f.check(&f.ec.sign(&no_scope, Some("at+jwt"))).await.expect("no scope is fine");
    assert!(p.scopes.is_empty());
    assert_eq!(f.mock.hits("/jwks"), 1);
}

#[tokio::test]
async fn algorithm_attacks_are_refused() {
    let f = fixture().await;
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    // 1. alg none with an empty signature (and with a null-ish signature).
    let none = format!("{}.{}.", b64(&header("none", "rs")), b64(&f.claims()));
    assert_eq!(f.check(&none).await.err(), Some(TokenError::Jose(JoseError::AlgNone)));
    // 2. HS256 signed with the RSA public key bytes (PEM-ish and JWK JSON), the key-confusion attack.
    for secret in
        [f.rsa.public_jwk["n"].as_str().expect("n").as_bytes().to_vec(), f.rsa.public_jwk.to_string().into_bytes()]
    {
        let hs = TestKey {
            alg: Algorithm::HS256,
            kid: "rs".into(),
            encoding: EncodingKey::from_secret(&secret).expect("hmac"),
            public_jwk: json!({}),
        };
        let t = hs.sign(&f.claims(), Some("at+jwt"));
        assert_eq!(f.check(&t).await.err(), Some(TokenError::Jose(JoseError::AlgSymmetric)));
    }
    // 3. RS256 header on the EC key's kid, and ES256 on the RSA key's kid.
    let rs_on_ec = f.rsa.sign_raw(&header("RS256", "es"), &f.claims());
    assert_eq!(f.check(&rs_on_ec).await.err(), Some(TokenError::Key(JwksError::AlgorithmMismatch)));
    let es_on_rs = f.ec.sign_raw(&header("ES256", "rs"), &f.claims());
    assert_eq!(f.check(&es_on_rs).await.err(), Some(TokenError::Key(JwksError::AlgorithmMismatch)));
    // 4. PS256 is not in the allow-list, even on an RSA key.
    let ps = rsa_key(0, "rs", Algorithm::PS256).sign(&f.claims(), Some("at+jwt"));
    assert_eq!(f.check(&ps).await.err(), Some(TokenError::Jose(JoseError::AlgNotAllowed)));
    // 13. ECDSA r = s = 0 ("psychic signatures", CVE-2022-21449).
    let input = format!("{}.{}", b64(&header("ES256", "es")), b64(&f.claims()));
    let zero = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert_eq!(f.check(&zero).await.err(), Some(TokenError::Jose(JoseError::BadSignature)));
    let n = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0xffu8; 64]));
    assert_eq!(f.check(&n).await.err(), Some(TokenError::Jose(JoseError::BadSignature)));
}

#[tokio::test]
async fn header_supplied_keys_are_refused_and_never_fetched() {
    let f = fixture().await;
    let evil = MockServer::start().await;
    let attacker = ec_key("es");
    evil.serve_jwks(&[&attacker]);
    // 5. Embedded jwk signed by the attacker's key.
    let mut h = header("ES256", "es");
    h["jwk"] = attacker.public_jwk.clone();
    assert_eq!(f.check(&attacker.sign_raw(&h, &f.claims())).await.err(), Some(TokenError::Jose(JoseError::HeaderKey)));
    // 6. jku / x5u pointing at a listener: refused, and the listener sees nothing.
    for (param, value) in [
        ("jku", json!(format!("{}/jwks", evil.base))),
        ("x5u", json!(format!("{}/cert", evil.base))),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut h = header("ES256", "es");
        h[param] = value;
        assert_eq!(
            f.check(&attacker.sign_raw(&h, &f.claims())).await.err(),
            Some(TokenError::Jose(JoseError::HeaderKey)),
            "{param}"
        );
    }
    assert!(evil.seen().is_empty(), "a header URL was fetched: {:?}", evil.seen());
    // 8. crit, known or not.
    for crit in [json!(["exp"]), json!(["b64"]), json!(["urn:x"])] {
        let mut h = header("ES256", "es");
        h["crit"] = crit;
        assert_eq!(f.check(&f.ec.sign_raw(&h, &f.claims())).await.err(), Some(TokenError::Jose(JoseError::Crit)));
    }
}

#[tokio::test]
async fn kid_tricks_are_lookups_that_fail() {
    let f = fixture().await;
    assert!(f.check(&f.ec.sign(&f.claims(), Some("at+jwt"))).await.is_ok());
    // 7. Path-like, SQL-ish and unknown kids are only map keys; long kids are refused outright.
    for kid in ["../../dev/null", "' OR '1'='1", "unknown", "/etc/passwd"] {
        let t = f.ec.sign_raw(&header("ES256", kid), &f.claims());
        assert_eq!(f.check(&t).await.err(), Some(TokenError::Key(JwksError::UnknownKey)), "{kid}");
    }
    let long = f.ec.sign_raw(&header("ES256", &"k".repeat(1_000)), &f.claims());
    assert_eq!(f.check(&long).await.err(), Some(TokenError::Jose(JoseError::BadKid)));
    let huge = f.ec.sign_raw(&header("ES256", &"k".repeat(10_000)), &f.claims());
    assert_eq!(
        f.check(&huge).await.err(),
        Some(TokenError::Jose(JoseError::TooLarge)),
        "10 kB header refused unparsed"
    );
    assert_eq!(f.mock.hits("/jwks"), 1, "unknown kids within 30 s of a fetch cause no refetch");
    f.hand.advance(30);
    let t = f.ec.sign_raw(&header("ES256", "still-unknown"), &f.claims());
    assert!(f.check(&t).await.is_err());
    assert_eq!(f.mock.hits("/jwks"), 2);
}

#[tokio::test]
async fn typ_must_be_an_access_token() {
    let f = fixture().await;
    // 9. Missing typ, plain JWT (an ID token), a DPoP proof's typ.
    for typ in [None, Some("JWT"), Some("dpop+jwt"), Some("at+jwt; x"), Some("application/jwt")] {
        let t = f.ec.sign(&f.claims(), typ);
        assert_eq!(f.check(&t).await.err(), Some(TokenError::WrongType), "{typ:?}");
    }
    assert!(typ_matches(Some("AT+JWT"), "at+jwt"));
    assert!(typ_matches(Some("JWT"), "jwt"));
}

#[tokio::test]
async fn time_claims_use_the_leeway() {
    let f = fixture().await;
    let sign = |c: &Value| f.ec.sign(c, Some("at+jwt"));
    // 10. Expired beyond the leeway, within it, missing; nbf and iat in the future.
    let expired = f.with(|c| {
        c.insert("exp".into(), json!(NOW - 61));
    });
    assert_eq!(f.check(&sign(&expired)).await.err(), Some(TokenError::Expired));
    let within = f.with(|c| {
        c.insert("exp".into(), json!(NOW - 59));
    });
    assert!(f.check(&sign(&within)).await.is_ok(), "expired 59 s ago is within the 60 s leeway");
    let no_exp = f.with(|c| {
        c.remove("exp");
    });
    assert_eq!(f.check(&sign(&no_exp)).await.err(), Some(TokenError::MissingClaim("exp")));
    let nbf = f.with(|c| {
        c.insert("nbf".into(), json!(NOW + 120));
    });
    assert_eq!(f.check(&sign(&nbf)).await.err(), Some(TokenError::NotYetValid));
    let nbf_ok = f.with(|c| {
        c.insert("nbf".into(), json!(NOW + 30));
    });
    assert!(f.check(&sign(&nbf_ok)).await.is_ok());
    let iat = f.with(|c| {
        c.insert("iat".into(), json!(NOW + 120));
    });
    assert_eq!(f.check(&sign(&iat)).await.err(), Some(TokenError::IssuedInFuture));
    let exp_str = f.with(|c| {
        c.insert("exp".into(), json!("9999999999"));
    });
    assert_eq!(f.check(&sign(&exp_str)).await.err(), Some(TokenError::BadClaim("exp")));
    let fractional = f.with(|c| {
        c.insert("exp".into(), json!((NOW + 100) as f64 + 0.5));
    });
    assert!(f.check(&sign(&fractional)).await.is_ok());
}

#[tokio::test]
async fn issuer_audience_and_required_claims() {
    let f = fixture().await;
    let sign = |c: &Value| f.ec.sign(c, Some("at+jwt"));
    // 11. Wrong issuer, trailing-slash issuer, wrong/missing audience.
    for iss in [json!("https://evil.example"), json!(format!("{}/", f.mock.base))] {
        let c = f.with(|c| {
            c.insert("iss".into(), iss);
        });
        assert_eq!(f.check(&sign(&c)).await.err(), Some(TokenError::WrongIssuer));
    }
    for (aud, want) in [
        (json!("http://127.0.0.1:8321/"), TokenError::WrongAudience),
        (json!(["https://a", "https://b"]), TokenError::WrongAudience),
        (json!([AUD, 5]), TokenError::BadClaim("aud")),
    ] {
        let c = f.with(|c| {
            c.insert("aud".into(), aud);
        });
        assert_eq!(f.check(&sign(&c)).await.err(), Some(want));
    }
    for claim in ["aud", "iss", "sub", "client_id", "jti", "iat"] {
        let c = f.with(|c| {
            c.remove(claim);
        });
        assert_eq!(f.check(&sign(&c)).await.err(), Some(TokenError::MissingClaim(claim)), "{claim}");
    }
    let scope_list = f.with(|c| {
        c.insert("scope".into(), json!(["a"]));
    });
    assert_eq!(f.check(&sign(&scope_list)).await.err(), Some(TokenError::BadClaim("scope")));
    let mtls = f.with(|c| {
        c.insert("cnf".into(), json!({"x5t#S256": "abc"}));
    });
    assert_eq!(f.check(&sign(&mtls)).await.err(), Some(TokenError::BadClaim("cnf")), "unverifiable binding");
    let dpop = f.with(|c| {
        c.insert("cnf".into(), json!({"jkt": "thumb"}));
    });
    let p = f.check(&sign(&dpop)).await.expect("bound token validates; binding is checked by the caller");
    assert_eq!(p.cnf_jkt.as_deref(), Some("thumb"));
}

#[tokio::test]
async fn tampering_and_foreign_issuers() {
    let f = fixture().await;
    let good = f.rsa.sign(&f.claims(), Some("at+jwt"));
    // 12. A flipped signature bit, and a payload swapped under a valid signature.
    let (input, sig) = good.rsplit_once('.').expect("dot");
    let mut raw = URL_SAFE_NO_PAD.decode(sig).expect("sig");
    raw[10] ^= 1;
    let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw));
    assert_eq!(f.check(&flipped).await.err(), Some(TokenError::Jose(JoseError::BadSignature)));
    let parts: Vec<&str> = good.split('.').collect();
    let richer = f.with(|c| {
        c.insert("scope".into(), json!("model_llama_3_1_70b"));
    });
    let swapped = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(richer.to_string()), parts[2]);
    assert_eq!(f.check(&swapped).await.err(), Some(TokenError::Jose(JoseError::BadSignature)));
    assert_eq!(f.check(&good[..good.len() - 5]).await.err(), Some(TokenError::Jose(JoseError::BadSignature)));
    assert_eq!(
        f.check(&format!("{}.{}", parts[0], parts[1])).await.err(),
        Some(TokenError::Jose(JoseError::Malformed))
    );
    assert_eq!(f.check("a.b.c.d.e").await.err(), Some(TokenError::Jose(JoseError::Encrypted)));
    // 14. Another issuer's key with the same kid: its own iss is refused, our iss fails the signature.
    let other = ec_key("es");
    let theirs = f.with(|c| {
        c.insert("iss".into(), json!("http://127.0.0.1:9401"));
    });
    assert!(f.check(&other.sign(&theirs, Some("at+jwt"))).await.is_err());
    assert_eq!(
        f.check(&other.sign(&f.claims(), Some("at+jwt"))).await.err(),
        Some(TokenError::Jose(JoseError::BadSignature))
    );
}

#[tokio::test]
async fn no_keys_is_unavailable_not_invalid() {
    let f = fixture().await;
    f.mock.set_down(true);
    let err = f.check(&f.ec.sign(&f.claims(), Some("at+jwt"))).await.expect_err("no keys");
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(err.reason(), "keys_unavailable");
}
