//! A REAL authorization server for the end-to-end tests: node `oidc-provider` (`tests/oauth-as`,
//! installed by scripts/setup-sdk.sh) started on a free port, plus the small tools the OAuth tests
//! share: a JWKS proxy that counts fetches, HTTP calls that keep the challenge headers, and the
//! assertions on RFC 6750 refusals. Nothing is skipped: if node or the authorization server cannot
//! start, the test fails with its output.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{MODEL_ID, Server};

/// The scope the default model needs (its family default).
pub const SMOLLM_SCOPE: &str = "model_smollm2_135m";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A port that was free a moment ago (the server's URL must be known before it starts: it is the
/// authorization server's resource URL and the tokens' audience).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A client for the authorization server that keeps no idle connections: node closes an idle
/// keep-alive connection after 5 s, and a request sent on it just then fails with "connection closed
/// before message completed" (seen in CI on `/token`).
fn as_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a plain reqwest client")
}

/// The test's own reqwest needs a TLS provider even for plain http.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running `node tests/oauth-as/start-op.mjs`; killed when dropped. Its private signing keys are
/// written to [`AuthServer::keys_path`] (`OP_KEYS_OUT`) so tests can forge correctly signed tokens.
pub struct AuthServer {
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    /// The port it listens on; kept across [`AuthServer::restart`] so the issuer stays the same.
    pub port: u16,
    /// `http://127.0.0.1:<port>`: the issuer.
    pub issuer: String,
    /// The resource URL the tokens are issued for (llamagate's `stack_uri`).
    pub resource: String,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl AuthServer {
    pub async fn start(resource: &str) -> Self {
        Self::start_with(resource, &[]).await
    }

    /// Starts it with extra environment (`OP_POLICY`, `AT_TTL`, `OP_KIDS`, …; see start-op.mjs).
    pub async fn start_with(resource: &str, env: &[(&str, &str)]) -> Self {
        install_crypto();
        let port = free_port();
        let mut auth = Self {
            child: None,
            output: Arc::new(Mutex::new(String::new())),
            port,
            issuer: format!("http://127.0.0.1:{port}"),
            resource: resource.to_string(),
            http: as_client(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dir: tempfile::tempdir().unwrap(),
        };
        auth.spawn().await;
        auth
    }

    /// The private JWKS the running process signs with.
    pub fn keys_path(&self) -> PathBuf {
        self.dir.path().join("private-jwks.json")
    }

    /// Starts the process and waits for its discovery document. A start that hangs (seen once in CI: node
    /// printed its banner and never listened) is killed and tried again, on a fresh port when this is the
    /// first start (nothing depends on the issuer yet) and on the same port for a restart.
    async fn spawn(&mut self) {
        let first_start = self.child.is_none() && self.output.lock().unwrap().is_empty();
        for attempt in 1..=3 {
            match self.try_spawn().await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(log) if attempt < 3 => {
                    eprintln!("the authorization server did not start (attempt {attempt}), trying again:\n{log}");
                    if first_start {
                        self.port = free_port();
                        self.issuer = format!("http://127.0.0.1:{}", self.port);
                    }
                    self.output.lock().unwrap().clear();
                }
                Err(log) => panic!("the authorization server did not answer discovery in 3 tries:\n{log}"),
            }
        }
    }

    /// One start: the running child once discovery answers, or what it printed when it did not within
    /// 40 s (node and oidc-provider start slowly on a loaded 2-core CI machine, but not that slowly).
    async fn try_spawn(&mut self) -> Result<Child, String> {
        let dir = repo_root().join("tests/oauth-as");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}: run scripts/setup-sdk.sh (or npm install there)",
            dir.display()
        );
        let _ = std::fs::remove_file(self.keys_path());
        let mut child = Command::new("node")
            .arg("start-op.mjs")
            .current_dir(&dir)
            .env("OP_HOST", "127.0.0.1")
            .env("OP_PORT", self.port.to_string())
            .env("RS_URL", &self.resource)
            .env("OP_KEYS_OUT", self.keys_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (needed for the authorization server): {e}"));
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("the authorization server exited ({status}):\n{}", self.log()));
            }
            let answer = tokio::time::timeout(Duration::from_secs(5), self.http.get(&discovery).send()).await;
            if let Ok(Ok(response)) = answer
                && response.status().is_success()
            {
                let doc: Value = response.json().await.unwrap();
                assert_eq!(doc["issuer"], self.issuer.as_str(), "{doc}");
                return Ok(child);
            }
            if started.elapsed() > Duration::from_secs(40) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no discovery answer in 40 s:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process (the authorization server is down until [`AuthServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Pooled connections to the old process are dead.
        self.http = as_client();
    }

    /// A plain restart on the same port: the same issuer with fresh signing keys (new kids), as
    /// after a key rotation. Opaque tokens are forgotten (in-memory adapter).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The private JWKS (`OP_KEYS_OUT`) of the running process.
    pub fn private_jwks(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.keys_path()).unwrap()).unwrap()
    }

    /// A client-credentials token for `resource` (the resource URL, or it plus `/es256` or
    /// `/opaque`), as the JSON token response. `dpop` is a DPoP proof for the token endpoint.
    pub async fn token_response(
        &self,
        client: &str,
        secret: &str,
        resource: &str,
        scope: &str,
        dpop: Option<&str>,
    ) -> Value {
        let body =
            format!("grant_type=client_credentials&resource={}&scope={}", form_encode(resource), form_encode(scope));
        let mut request = self
            .http
            .post(self.token_endpoint())
            .basic_auth(client, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(proof) = dpop {
            request = request.header("dpop", proof);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert!(status.is_success(), "token request failed ({status}): {json}\n{}", self.log());
        json
    }

    pub async fn token(&self, client: &str, secret: &str, resource: &str, scope: &str) -> Value {
        self.token_response(client, secret, resource, scope, None).await
    }

    pub async fn access_token(&self, client: &str, secret: &str, suffix: &str, scope: &str) -> String {
        let resource = format!("{}{suffix}", self.resource);
        let json = self.token(client, secret, &resource, scope).await;
        json["access_token"].as_str().unwrap().to_string()
    }

    /// `{issuer}/token`, also the `htu` of a DPoP proof for it.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// Revokes `token` at the authorization server (RFC 7009); only its own client may.
    pub async fn revoke(&self, client: &str, secret: &str, token: &str) {
        let response = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth(client, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}&token_type_hint=access_token", form_encode(token)))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "revocation failed: {}", response.status());
    }

    /// The `oauth_config` section pointing at this authorization server.
    pub fn oauth_yaml(&self, extra: &str) -> String {
        format!(
            "oauth_config:\n  enable_auth: true\n  auth_server_uri: {}\n  stack_uri: {}\n  enforce_model_permissions: true\n{extra}",
            self.issuer, self.resource
        )
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `application/x-www-form-urlencoded` for the few characters our values hold.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".into(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A request's status, `WWW-Authenticate` values and JSON body.
pub async fn call(request: reqwest::RequestBuilder) -> (u16, Vec<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenges =
        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, challenges, body)
}

/// Asserts a refusal: the status, the Llama Stack error envelope carrying the OAuth error code,
/// and the Bearer challenge (RFC 6750 §3) with that `error` and the RFC 9728 `resource_metadata`.
/// `error: None` is the bare challenge of a request without credentials.
pub fn assert_refused(reply: &(u16, Vec<String>, Value), status: u16, error: Option<&str>, case: &str) {
    let (got, challenges, body) = reply;
    assert_eq!(*got, status, "{case}: {body} {challenges:?}");
    assert!(body["error"]["message"].is_string(), "{case}: not the error envelope: {body}");
    let bearer = challenges.iter().find(|c| c.starts_with("Bearer ")).unwrap_or_else(|| {
        panic!("{case}: no Bearer challenge: {challenges:?}");
    });
    assert!(bearer.starts_with("Bearer realm=\"llamagate\""), "{case}: {bearer}");
    assert!(bearer.contains("resource_metadata=\"http://127.0.0.1:"), "{case}: {bearer}");
    match error {
        Some(code) => {
            assert_eq!(body["error"]["type"], code, "{case}: {body}");
            assert!(bearer.contains(&format!("error=\"{code}\"")), "{case}: {bearer}");
            assert!(bearer.contains("error_description=\""), "{case}: {bearer}");
        }
        None => assert!(!bearer.contains("error="), "{case}: no error code without credentials: {bearer}"),
    }
}

/// 401 `invalid_token`, the answer to every unacceptable token (§B.5 default).
pub fn assert_invalid_token(reply: &(u16, Vec<String>, Value), case: &str) {
    assert_refused(reply, 401, Some("invalid_token"), case);
}

/// 403 `insufficient_scope` naming the scope that would have been enough.
pub fn assert_insufficient_scope(reply: &(u16, Vec<String>, Value), scope: &str, case: &str) {
    assert_refused(reply, 403, Some("insufficient_scope"), case);
    assert!(reply.1[0].contains(&format!("scope=\"{scope}\"")), "{case}: {:?}", reply.1);
}

pub fn chat_body() -> Value {
    json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0})
}

pub fn model_ids(body: &Value) -> Vec<&str> {
    body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect()
}

/// Starts the authorization server, then llamagate on the port its resource URL names.
pub async fn start_pair(extra_oauth_yaml: &str) -> (AuthServer, Server) {
    start_pair_with(&[], "", extra_oauth_yaml).await
}

/// Like [`start_pair`] with environment for the authorization server and extra models
/// (`  - id: …` lines appended to the config's model list).
pub async fn start_pair_with(as_env: &[(&str, &str)], extra_models: &str, extra_oauth: &str) -> (AuthServer, Server) {
    let port = free_port();
    let auth = AuthServer::start_with(&format!("http://127.0.0.1:{port}"), as_env).await;
    let yaml = format!("{extra_models}{}", auth.oauth_yaml(extra_oauth));
    let server = Server::start_with_config(port, &yaml, Some("info"));
    assert_eq!(server.base, auth.resource, "the server must listen on its stack_uri");
    (auth, server)
}

/// A reverse proxy for the authorization server's JWKS that counts every fetch, so tests can point
/// llamagate's `jwks_uri` at it and assert how often keys are fetched. It can also play "down".
pub struct JwksCounter {
    /// `http://127.0.0.1:<port>/jwks`, for `oauth_config.jwks_uri`.
    pub url: String,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksCounter {
    /// Proxies `GET /jwks` to `target` (the authorization server's `jwks_uri`).
    pub async fn start(target: String) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (counter, is_down) = (hits.clone(), down.clone());
        let http = as_client();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (counter, is_down, http, target) = (counter.clone(), is_down.clone(), http.clone(), target.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if is_down.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    match http.get(&target).send().await {
                        Ok(r) => (axum::http::StatusCode::OK, r.text().await.unwrap_or_default()),
                        Err(_) => (axum::http::StatusCode::BAD_GATEWAY, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, hits, down }
    }

    /// JWKS fetches so far (answered or not).
    pub fn fetches(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answer 503 (as an unreachable authorization server would) or forward again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// What [`call`] returns: status, `WWW-Authenticate` values, JSON body.
pub type Reply = (u16, Vec<String>, Value);

/// The authorization server, llamagate in front of it, and the AS's private keys for forging.
pub struct Pair {
    pub auth: AuthServer,
    pub server: Server,
    pub keys: super::forge::AsKeys,
}

impl Pair {
    /// See [`start_pair_with`].
    pub async fn start(as_env: &[(&str, &str)], extra_models: &str, extra_oauth: &str) -> Self {
        let (auth, server) = start_pair_with(as_env, extra_models, extra_oauth).await;
        let keys = super::forge::AsKeys::from_private_jwks(&auth.private_jwks());
        Self { auth, server, keys }
    }

    /// Claims exactly as the AS issues them to `smollm-client` with `scope`.
    pub fn claims(&self, scope: &str) -> Value {
        super::forge::claims(&self.auth.issuer, &self.auth.resource, "smollm-client", scope)
    }

    /// `GET /v1/models` with `Authorization: Bearer <token>`.
    pub async fn models(&self, token: &str) -> Reply {
        call(self.server.client.get(self.server.url("/v1/models")).bearer_auth(token)).await
    }

    /// The token is accepted and reaches the default model (a control: the forging is sound).
    pub async fn assert_accepted(&self, token: &str, case: &str) {
        let (status, _, body) = self.models(token).await;
        assert_eq!(status, 200, "{case}: {body}\n{}", self.server.log());
        assert_eq!(model_ids(&body), [MODEL_ID], "{case}");
    }

    /// The token is refused with 401 `invalid_token`.
    pub async fn assert_rejected(&self, token: &str, case: &str) {
        assert_invalid_token(&self.models(token).await, case);
    }
}
