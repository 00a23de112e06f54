//! The cost of authenticating one request when the signing key is already cached (the steady state:
//! no network, the JWKS was fetched once).
//!
//! `cargo bench -p llamagate-authz --bench token_validation`
//!
//! - `jwt/{RS256,ES256}`: [`TokenValidator::validate`] — header rules, key lookup, signature, claims.
//! - `authenticator/{RS256,ES256}`: [`Authenticator::authenticate`] from raw `Authorization` header
//!   bytes to a [`llamagate_authz::Principal`]: the whole authentication sequence the server's layer
//!   runs per request (query check, header parsing, validation, DPoP binding rule). The server adds
//!   only the collection of header slices, one URL `format!` and an extension insert around it.
//! - `authenticator/refused, bad signature`: the price of a forged RS256 token.
//! - `signature/{alg}/{ring,rust_crypto}`: the signature check alone, with the `ring` verifier the
//!   crate uses and with `jsonwebtoken`'s pure-Rust one it replaced — measured side by side so the
//!   comparison holds even on a busy machine.
//!
//! Keys are generated at start and served once from an in-process JWKS endpoint on 127.0.0.1.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use llamagate_authz::token::discovery::build_http_client;
use llamagate_authz::token::jwks::JwksSettings;
use llamagate_authz::token::jwt::JwtPolicy;
use llamagate_authz::{AuthRequest, Authenticator, Clock, JwksCache, OAuthConfig, TokenValidator};
use serde_json::{Value, json};

const AUDIENCE: &str = "http://127.0.0.1:8321";

struct Signer {
    alg: Algorithm,
    kid: &'static str,
    key: EncodingKey,
}

impl Signer {
    fn rsa() -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::PrivateKey::new(&mut UnwrapErr(SysRng), 2048).expect("rsa keygen");
        let der = key.to_pkcs1_der().expect("der");
        Self { alg: Algorithm::RS256, kid: "rs-bench", key: EncodingKey::from_rsa_der(der.as_bytes()) }
    }

    fn ec() -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let secret = <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut UnwrapErr(SysRng));
        let der = secret.to_pkcs8_der().expect("pkcs8");
        Self { alg: Algorithm::ES256, kid: "es-bench", key: EncodingKey::from_ec_der(der.as_bytes()) }
    }

    fn public_jwk(&self) -> Value {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&self.key, self.alg).expect("jwk")).expect("json");
        jwk["kid"] = json!(self.kid);
        jwk
    }

    /// An RFC 9068 access token as oidc-provider issues it (same claims, `typ`, `kid`).
    fn token(&self, issuer: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": "bench-client", "client_id": "bench-client",
            "scope": "model_smollm2_135m safety_standard", "tier": "free", "jti": "Sx4gYxPZ0Vf7",
            "iat": now, "exp": now + 86_400});
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.into());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

/// Serves `jwks` at `http://127.0.0.1:<port>/jwks` on `runtime`; returns the issuer URL.
fn serve_jwks(runtime: &tokio::runtime::Runtime, jwks: Value) -> String {
    runtime.block_on(async move {
        let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        issuer
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let issuer = serve_jwks(&runtime, json!({"keys": [rsa.public_jwk(), ec.public_jwk()]}));
    let cfg = OAuthConfig {
        auth_server_uri: issuer.clone(),
        stack_uri: AUDIENCE.into(),
        jwks_uri: Some(format!("{issuer}/jwks")),
        // Longer than the run: every iteration finds the key cached, as almost every request does.
        jwks_cache_ttl: 86_400,
        ..OAuthConfig::default()
    };
    cfg.validate().expect("config");

    let settings = JwksSettings {
        issuer: issuer.clone(),
        jwks_uri: cfg.jwks_uri.clone(),
        ttl: cfg.jwks_cache_ttl,
        refetch_interval: cfg.jwks_refetch_interval,
        allowed: cfg.algorithms(),
    };
    let jwks = Arc::new(JwksCache::new(build_http_client().expect("client"), settings, Clock::system()));
    runtime.block_on(jwks.prefetch()).expect("prefetch");
    let validator_keys = jwks.clone();
    let validator = TokenValidator::new(jwks, JwtPolicy::from_config(&cfg), Clock::system());
    let authenticator = Authenticator::from_config(&cfg, Clock::system()).expect("authenticator");
    runtime.block_on(authenticator.prefetch()).expect("prefetch");

    let mut group = c.benchmark_group("signature");
    for signer in [&rsa, &ec] {
        let token = signer.token(&issuer);
        let (input, signature) = token.rsplit_once('.').expect("jws");
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature).expect("b64");
        let pinned = runtime.block_on(validator_keys.key_for(Some(signer.kid), signer.alg)).expect("key");
        let jwk: Jwk = serde_json::from_value(signer.public_jwk()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        assert!(pinned.verify(signer.alg, input.as_bytes(), &raw));
        group.bench_function(format!("{:?}/ring", signer.alg), |b| {
            b.iter(|| assert!(pinned.verify(signer.alg, input.as_bytes(), &raw)))
        });
        group.bench_function(format!("{:?}/rust_crypto", signer.alg), |b| {
            b.iter(|| {
                assert!(
                    jsonwebtoken::crypto::verify(signature, input.as_bytes(), &decoding, signer.alg).expect("verify")
                )
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("jwt");
    for signer in [&rsa, &ec] {
        let token = signer.token(&issuer);
        runtime.block_on(validator.validate(&token)).expect("valid");
        group.bench_function(format!("{:?}", signer.alg), |b| {
            b.to_async(&runtime).iter(|| async { validator.validate(&token).await.expect("valid") })
        });
    }
    group.finish();

    let url = format!("{AUDIENCE}/v1/chat/completions");
    let mut group = c.benchmark_group("authenticator");
    for signer in [&rsa, &ec] {
        let header = format!("Bearer {}", signer.token(&issuer));
        let authorization = [header.as_bytes()];
        let request = AuthRequest { authorization: &authorization, dpop: &[], method: "POST", url: &url, query: None };
        runtime.block_on(authenticator.authenticate(&request)).expect("authenticated");
        group.bench_function(format!("{:?}", signer.alg), |b| {
            b.to_async(&runtime).iter(|| async { authenticator.authenticate(&request).await.expect("authenticated") })
        });
    }
    let mut forged = format!("Bearer {}", rsa.token(&issuer));
    forged.replace_range(forged.len() - 8.., "AAAAAAAA");
    let authorization = [forged.as_bytes()];
    let request = AuthRequest { authorization: &authorization, dpop: &[], method: "POST", url: &url, query: None };
    group.bench_function("refused, bad signature", |b| {
        b.to_async(&runtime).iter(|| async { authenticator.authenticate(&request).await.expect_err("refused") })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
