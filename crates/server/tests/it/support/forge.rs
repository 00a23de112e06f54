//! Forging tokens for the negative matrix (§B.5): with the authorization server's own private keys
//! (`OP_KEYS_OUT`), so a refusal can only come from the rule under test and not from a bad
//! signature, or with fresh attacker keys. Headers are written as raw JSON because the attacks need
//! headers no JWT library would produce.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A value no other call returns, for `jti`s.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `header.claims.signature` with the signature over the first two parts by `key` under `alg`.
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

/// `header.claims.` with a given raw signature.
pub fn with_signature(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64_json(header), b64_json(claims), b64(signature))
}

/// A private signing key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public JWK (private members removed).
    pub public_jwk: Value,
}

impl SigningKey {
    /// The header a well-behaved issuer writes: `alg`, `typ: at+jwt`, `kid`.
    pub fn header(&self) -> Value {
        json!({"alg": format!("{:?}", self.alg), "typ": "at+jwt", "kid": self.kid})
    }

    /// Signs `claims` under a (possibly hostile) `header` with this key and its own algorithm.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign(header, claims, &self.encoding, self.alg)
    }

    /// A token exactly as the issuer would sign it.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

/// The authorization server's signing keys, read from its private JWKS.
pub struct AsKeys {
    pub rsa: SigningKey,
    pub ec: SigningKey,
}

impl AsKeys {
    pub fn from_private_jwks(jwks: &Value) -> Self {
        let keys = jwks["keys"].as_array().unwrap();
        let find = |kty: &str| keys.iter().find(|k| k["kty"] == kty).unwrap();
        let (rsa, ec) = (find("RSA"), find("EC"));
        Self {
            rsa: SigningKey {
                kid: rsa["kid"].as_str().unwrap().into(),
                alg: Algorithm::RS256,
                encoding: EncodingKey::from_rsa_der(&rsa_private_der(rsa)),
                public_jwk: public_only(rsa),
            },
            ec: SigningKey {
                kid: ec["kid"].as_str().unwrap().into(),
                alg: Algorithm::ES256,
                encoding: ec_encoding_key(&unb64(ec["d"].as_str().unwrap())),
                public_jwk: public_only(ec),
            },
        }
    }
}

/// The public members of a JWK.
fn public_only(jwk: &Value) -> Value {
    let mut public = jwk.clone();
    let object = public.as_object_mut().unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        object.remove(member);
    }
    public
}

/// A fresh P-256 key (an attacker's, or a DPoP client's).
pub fn fresh_ec_key(kid: &str) -> SigningKey {
    fresh_ec_key_with_d(kid).0
}

/// The private JWK of a P-256 key (with `d`), for the "proof key with private material" case.
pub fn private_ec_jwk(key: &SigningKey, d: &[u8]) -> Value {
    let mut jwk = key.public_jwk.clone();
    jwk["d"] = json!(b64(d));
    jwk
}

fn ec_encoding_key(d: &[u8]) -> EncodingKey {
    let secret = p256::SecretKey::from_slice(d).unwrap();
    EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes())
}

/// A fresh P-256 key together with its scalar `d`.
pub fn fresh_ec_key_with_d(kid: &str) -> (SigningKey, Vec<u8>) {
    let secret = <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut UnwrapErr(SysRng));
    let d = secret.to_bytes().to_vec();
    let encoding = ec_encoding_key(&d);
    let mut public_jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap()).unwrap();
    public_jwk["kid"] = json!(kid);
    (SigningKey { kid: kid.into(), alg: Algorithm::ES256, encoding, public_jwk }, d)
}

/// RFC 9449 `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    b64(&Sha256::digest(access_token.as_bytes()))
}

/// Claims the authorization server would issue to `client` (RFC 9068 §2.2).
pub fn claims(issuer: &str, audience: &str, client: &str, scope: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "aud": audience, "sub": client, "client_id": client, "scope": scope,
           "iat": now, "exp": now + 300, "jti": unique("forged")})
}

// --- DER, just enough to turn the JWK members into the key formats jsonwebtoken reads. ---

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.is_empty() { vec![0] } else { trimmed };
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    der(0x02, &content)
}

fn der_uints(jwk: &Value, members: &[&str]) -> Vec<u8> {
    members.iter().flat_map(|m| der_uint(&unb64(jwk[*m].as_str().unwrap()))).collect()
}

/// PKCS#1 `RSAPrivateKey` from a private RSA JWK.
fn rsa_private_der(jwk: &Value) -> Vec<u8> {
    let mut content = der_uint(&[0]);
    content.extend(der_uints(jwk, &["n", "e", "d", "p", "q", "dp", "dq", "qi"]));
    der(0x30, &content)
}

/// The RSA public key of a JWK as PEM, in the two spellings a confused verifier might load as an
/// HMAC secret: PKCS#1 (`RSA PUBLIC KEY`) and SubjectPublicKeyInfo (`PUBLIC KEY`).
pub fn rsa_public_pems(jwk: &Value) -> [String; 2] {
    let pkcs1 = der(0x30, &der_uints(jwk, &["n", "e"]));
    // AlgorithmIdentifier rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
    let algorithm = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bits = vec![0];
    bits.extend(&pkcs1);
    let mut spki = algorithm.to_vec();
    spki.extend(der(0x03, &bits));
    let spki = der(0x30, &spki);
    let pem = |label: &str, bytes: &[u8]| {
        let body = STANDARD.encode(bytes);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    };
    [pem("RSA PUBLIC KEY", &pkcs1), pem("PUBLIC KEY", &spki)]
}
