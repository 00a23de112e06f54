//! The development issuer behind `llamagate serve --dev` and `llamagate token`: one persistent ES256
//! key in a local, git-ignored file, so a newcomer can run an authenticated server without an
//! authorization server.
//!
//! The key file (default [`DEFAULT_KEY_FILE`], mode 0600) holds the private key (PKCS#8 PEM) and its
//! `kid`; it is created on first use by whichever of `serve --dev` and `token` runs first, and reused
//! afterwards, so tokens minted earlier stay valid across restarts. The server publishes only the
//! public key (`/.well-known/jwks.json`) and RFC 8414 metadata naming itself as the issuer. This is
//! for local development only: anyone who can read the key file can mint any token.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where the key lives, relative to the working directory, unless `--key-file`/`--dev-key-file` say otherwise.
pub const DEFAULT_KEY_FILE: &str = ".llamagate/dev-issuer.json";

/// Path of the public key set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The key file's content.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Always `ES256`.
    alg: String,
    /// Key id, in the tokens' header and the JWKS.
    kid: String,
    /// The P-256 private key, PKCS#8 PEM.
    private_key_pem: String,
}

/// The loaded signing key.
pub struct DevIssuer {
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// `http://<host>:<port>`: the development issuer's identifier, which is also the server's own URL.
pub fn issuer_url(host: &str, port: u16) -> String {
    if host.contains(':') { format!("http://[{host}]:{port}") } else { format!("http://{host}:{port}") }
}

impl DevIssuer {
    /// Reads the key file, creating it (and its directory) with a fresh key when it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            create(path)?;
        }
        refuse_shared_key(path)?;
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: KeyFile = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a llamagate dev issuer key file; delete it to start over", path.display())
        })?;
        anyhow::ensure!(file.alg == "ES256", "{}: unsupported alg `{}`", path.display(), file.alg);
        let encoding = EncodingKey::from_ec_pem(file.private_key_pem.as_bytes())
            .with_context(|| format!("{}: bad private key", path.display()))?;
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).context("cannot derive the public key")?;
        let mut public_jwk = serde_json::to_value(jwk)?;
        public_jwk["kid"] = json!(file.kid);
        public_jwk["alg"] = json!("ES256");
        public_jwk["use"] = json!("sig");
        // Only the public part is ever published.
        if let Some(map) = public_jwk.as_object_mut() {
            map.remove("d");
        }
        Ok(Self { kid: file.kid, encoding, public_jwk })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set served at [`JWKS_PATH`].
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`, ES256, this key's `kid`).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("cannot sign the token")
    }
}

/// What the server publishes in development mode: the issuer metadata and the public key set.
#[derive(Debug)]
pub struct Published {
    /// The RFC 8414 document served at `/.well-known/oauth-authorization-server`.
    pub metadata: Value,
    /// The JWKS served at [`JWKS_PATH`].
    pub jwks: Value,
}

/// RFC 8414 metadata for the development issuer.
pub fn metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": [],
        "grant_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [],
    })
}

/// The claims of a development token.
pub struct TokenClaims<'a> {
    /// `iss`, and `aud` (the development server is its own issuer and resource).
    pub issuer: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// The scopes, joined with spaces into `scope`.
    pub scopes: &'a [String],
    /// `tier`, when given.
    pub tier: Option<&'a str>,
    /// Lifetime in seconds.
    pub ttl: u64,
    /// Whether the lifetime ended [`EXPIRED_AGO`] seconds ago, for testing a server's refusal.
    pub expired: bool,
}

/// How long ago an expired development token's lifetime ended: an hour, well past the largest clock
/// leeway a server may allow (`oauth_config.clock_leeway` is at most 300 s), so every server refuses it.
pub const EXPIRED_AGO: u64 = 3600;

impl TokenClaims<'_> {
    /// The JSON claims, with `iat`, `exp` and a random `jti`.
    pub fn to_json(&self) -> anyhow::Result<Value> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let exp = if self.expired { now.saturating_sub(EXPIRED_AGO) } else { now.saturating_add(self.ttl) };
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": self.subject,
            "client_id": self.client_id,
            "scope": self.scopes.join(" "),
            "iat": exp.saturating_sub(self.ttl),
            "exp": exp,
            "jti": random_hex(16)?,
        });
        if let Some(tier) = self.tier {
            claims["tier"] = json!(tier);
        }
        Ok(claims)
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a fresh key; if another process created the file meanwhile, its key wins.
/// A signing key others can read can sign tokens for anyone: refuse one that is readable or writable
/// by the group or others (created 0600; `chmod 600` it back).
fn refuse_shared_key(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{} is readable or writable by other users (mode {:o}): anyone who can read it can sign tokens; \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

fn create(path: &Path) -> anyhow::Result<()> {
    use getrandom::SysRng;
    use getrandom::rand_core::UnwrapErr;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secret = <p256::SecretKey as p256::elliptic_curve::Generate>::generate_from_rng(&mut UnwrapErr(SysRng));
    let pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("cannot encode the key: {e}"))?;
    let file =
        KeyFile { alg: "ES256".into(), kid: format!("dev-{}", random_hex(8)?), private_key_pem: pem.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut out) => {
            out.write_all(serde_json::to_string_pretty(&file)?.as_bytes())?;
            out.write_all(b"\n")?;
            eprintln!("llamagate: created a development signing key in {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".llamagate/dev-issuer.json");
        let first = DevIssuer::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let second = DevIssuer::load_or_create(&path).unwrap();
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.jwks(), second.jwks());
        let jwk = &first.jwks()["keys"][0];
        assert_eq!((jwk["kty"].as_str(), jwk["alg"].as_str()), (Some("EC"), Some("ES256")));
        assert!(jwk.get("d").is_none(), "{jwk}");
    }

    #[test]
    fn tokens_carry_the_rfc_9068_header_and_claims() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(&dir.path().join("k.json")).unwrap();
        let scopes = vec!["a".to_string(), "b".to_string()];
        let claims = TokenClaims {
            issuer: "http://127.0.0.1:8321",
            subject: "alice",
            client_id: "dev-client",
            scopes: &scopes,
            tier: Some("premium"),
            ttl: 60,
            expired: false,
        };
        let json = claims.to_json().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(json["exp"].as_u64().unwrap() - json["iat"].as_u64().unwrap(), 60);
        assert!(json["exp"].as_u64().unwrap() >= now + 59, "{json}");
        // An expired token's whole lifetime lies further back than any leeway a server allows.
        let expired = TokenClaims { expired: true, ..claims }.to_json().unwrap();
        assert_eq!(expired["exp"].as_u64().unwrap() - expired["iat"].as_u64().unwrap(), 60);
        assert!(expired["exp"].as_u64().unwrap() + 300 < now, "{expired}");
        let token = issuer.sign(&claims.to_json().unwrap()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
        assert_eq!(issuer_url("::1", 1), "http://[::1]:1");
    }
}
