//! JWS signature verification with `ring`.
//!
//! Why not `jsonwebtoken`'s own verifier: its pure-Rust backend made the signature check almost all of
//! what authentication costs, and `ring` (already in the tree for TLS; assembly bignum and P-256 code)
//! checks the same signatures 3.5–4.5× faster (`signature/*` rows in benches/RESULTS.md).
//! `jsonwebtoken` still parses JWKs, and signs the tests' tokens.
//!
//! A [`VerifyingKey`] is built once per JWKS key (or DPoP proof key); the algorithm passed to
//! [`VerifyingKey::verify`] has already been checked against the key's pinned algorithms, and a
//! mismatch between the algorithm and the key type fails closed here as well.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// Public key material in the form `ring` verifies with.
pub(crate) enum VerifyingKey {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed SEC1 point (`04 || x || y`) on P-256 or P-384.
    Ec { curve: EllipticCurve, point: Vec<u8> },
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
}

fn decode(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok()
}

/// A big-endian integer without leading zero bytes (`ring` refuses them in RSA components).
fn unsigned(value: &str) -> Option<Vec<u8>> {
    let bytes = decode(value)?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some(bytes[first..].to_vec())
}

impl VerifyingKey {
    /// The key of a public JWK, or `None` when its members are not well-formed.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Option<Self> {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => Some(Self::Rsa { n: unsigned(&p.n)?, e: unsigned(&p.e)? }),
            AlgorithmParameters::EllipticCurve(p) => {
                let size = match p.curve {
                    EllipticCurve::P256 => 32,
                    EllipticCurve::P384 => 48,
                    _ => return None,
                };
                let (x, y) = (decode(&p.x)?, decode(&p.y)?);
                if x.len() != size || y.len() != size {
                    return None;
                }
                let point = [&[0x04][..], &x, &y].concat();
                Some(Self::Ec { curve: p.curve.clone(), point })
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                decode(&p.x).filter(|x| x.len() == 32).map(Self::Ed25519)
            }
            _ => None,
        }
    }

    /// True when `signature` (the raw JWS signature bytes) is valid for `message` under `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Rsa { n, e } => {
                let params = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature).is_ok()
            }
            Self::Ec { curve, point } => {
                // JWS uses the fixed-width r || s encoding (RFC 7518 §3.4), never ASN.1 DER.
                let params = match (curve, alg) {
                    (EllipticCurve::P256, Algorithm::ES256) => &sig::ECDSA_P256_SHA256_FIXED,
                    (EllipticCurve::P384, Algorithm::ES384) => &sig::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point).verify(message, signature).is_ok()
            }
            Self::Ed25519(key) => {
                alg == Algorithm::EdDSA && UnparsedPublicKey::new(&sig::ED25519, key).verify(message, signature).is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{ec_key, rsa_key};

    fn key(jwk: &serde_json::Value) -> VerifyingKey {
        VerifyingKey::from_jwk(&serde_json::from_value(jwk.clone()).expect("jwk")).expect("key")
    }

    fn parts(token: &str) -> (&str, Vec<u8>) {
        let (input, signature) = token.rsplit_once('.').expect("jws");
        (input, URL_SAFE_NO_PAD.decode(signature).expect("b64"))
    }

    #[test]
    fn verifies_what_jsonwebtoken_signs_and_nothing_else() {
        let claims = serde_json::json!({"sub": "x"});
        for (test_key, other) in
            [(rsa_key(0, "r", Algorithm::RS256), Algorithm::PS256), (ec_key("e"), Algorithm::ES384)]
        {
            let verifying = key(&test_key.public_jwk);
            let token = test_key.sign(&claims, Some("at+jwt"));
            let (input, signature) = parts(&token);
            assert!(verifying.verify(test_key.alg, input.as_bytes(), &signature));
            assert!(!verifying.verify(other, input.as_bytes(), &signature), "another algorithm");
            assert!(!verifying.verify(Algorithm::HS256, input.as_bytes(), &signature), "HMAC never");
            assert!(!verifying.verify(test_key.alg, b"tampered", &signature));
        }
        let ps = rsa_key(0, "p", Algorithm::PS256);
        let token = ps.sign(&claims, None);
        let (input, signature) = parts(&token);
        assert!(key(&ps.public_jwk).verify(Algorithm::PS256, input.as_bytes(), &signature));
    }

    #[test]
    fn ecdsa_edge_signatures_fail() {
        let ec = ec_key("e");
        let verifying = key(&ec.public_jwk);
        let token = ec.sign(&serde_json::json!({"sub": "x"}), None);
        let (input, signature) = parts(&token);
        assert!(!verifying.verify(Algorithm::ES256, input.as_bytes(), &[0; 64]), "r = s = 0 (CVE-2022-21449)");
        let der = [&[0x30, 0x44, 0x02, 0x20][..], &signature[..32], &[0x02, 0x20], &signature[32..]].concat();
        assert!(!verifying.verify(Algorithm::ES256, input.as_bytes(), &der), "ASN.1 DER is not JWS");
    }

    #[test]
    fn rsa_components_with_leading_zeros_are_accepted() {
        let rsa = rsa_key(0, "r", Algorithm::RS256);
        let mut padded = rsa.public_jwk.clone();
        let n = URL_SAFE_NO_PAD.decode(padded["n"].as_str().expect("n")).expect("b64");
        padded["n"] = serde_json::json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat()));
        let token = rsa.sign(&serde_json::json!({"sub": "x"}), None);
        let (input, signature) = parts(&token);
        assert!(key(&padded).verify(Algorithm::RS256, input.as_bytes(), &signature));
    }
}
