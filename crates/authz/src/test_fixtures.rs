//! Test-only fixtures: signing keys generated at test time (never committed) and a tiny
//! authorization server on 127.0.0.1 that records every request it gets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A private signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_jwk: Value,
}

impl TestKey {
    /// Signs `claims` with this key's alg and kid plus any extra header fields.
    pub fn sign(&self, claims: &Value, typ: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(String::from);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Signs with a raw header object (for headers jsonwebtoken would not produce).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).expect("sign");
        format!("{input}.{sig}")
    }
}

fn with_kid(jwk: Jwk, kid: &str) -> Value {
    let mut v = serde_json::to_value(jwk).expect("jwk json");
    v["kid"] = json!(kid);
    v
}

fn rsa_der(slot: usize) -> Vec<u8> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    // RSA key generation is slow in debug builds, so each test binary makes at most three.
    static KEYS: [OnceLock<Vec<u8>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[slot]
        .get_or_init(|| {
            let key = rsa::PrivateKey::new(&mut UnwrapErr(SysRng), 2048).expect("rsa keygen");
            key.to_pkcs1_der().expect("der").as_bytes().to_vec()
        })
        .clone()
}

/// An RSA key (`slot` 0..3 picks one of three distinct keys) used with `alg` (RS256 or PS256).
pub fn rsa_key(slot: usize, kid: &str, alg: Algorithm) -> TestKey {
    let encoding = EncodingKey::from_rsa_der(&rsa_der(slot));
    let jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
    TestKey { alg, kid: kid.into(), public_jwk: with_kid(jwk, kid), encoding }
}

/// A fresh P-256 key for ES256.
pub fn ec_key(kid: &str) -> TestKey {
    use p256::pkcs8::EncodePrivateKey;
    let secret = <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut UnwrapErr(SysRng));
    let der = secret.to_pkcs8_der().expect("pkcs8");
    let encoding = EncodingKey::from_ec_der(der.as_bytes());
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("jwk");
    TestKey { alg: Algorithm::ES256, kid: kid.into(), public_jwk: with_kid(jwk, kid), encoding }
}

/// One request as the mock server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, (u16, String)>,
    seen: Vec<Seen>,
    down: bool,
}

/// A recording HTTP server on 127.0.0.1 with canned answers per path.
#[derive(Clone)]
pub struct MockServer {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl MockServer {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move {
                let mut s = state.lock().expect("lock");
                let path = uri.path().to_string();
                let body = String::from_utf8_lossy(&body).into_owned();
                s.seen.push(Seen { method, path: path.clone(), headers, body });
                if s.down {
                    return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                match s.routes.get(&path) {
                    Some((status, body)) => (StatusCode::from_u16(*status).expect("status"), body.clone()),
                    None => (StatusCode::NOT_FOUND, String::new()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { base, state }
    }

    /// Answers `path` with `status` and `body`.
    pub fn set(&self, path: &str, status: u16, body: &Value) {
        self.state.lock().expect("lock").routes.insert(path.into(), (status, body.to_string()));
    }

    /// Serves RFC 8414 metadata naming this server as issuer and its `/jwks`.
    pub fn serve_metadata(&self) {
        let meta = json!({"issuer": self.base, "jwks_uri": format!("{}/jwks", self.base),
            "introspection_endpoint": format!("{}/introspect", self.base)});
        self.set("/.well-known/oauth-authorization-server", 200, &meta);
    }

    /// Serves `keys` at `/jwks`.
    pub fn serve_jwks(&self, keys: &[&TestKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.public_jwk.clone()).collect();
        self.set("/jwks", 200, &json!({ "keys": keys }));
    }

    /// Makes every answer a 503 (or restores normal answers).
    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
    }

    /// How many requests hit `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().expect("lock").seen.iter().filter(|s| s.path == path).count()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }
}
