//! Shared by the rate-limit end-to-end tests: `serve --dev` processes with a rate-limit config,
//! development tokens for a chosen subject and scopes, and a real `redis-server` on a free port.

use std::path::Path;

use serde_json::{Value, json};

pub use super::MODEL_ID;
use super::default_model;
pub use super::dev::DevServer;
pub use llamagate_testkit::RedisServer;

/// The default model's family scope, which every token needs to use it.
pub const MODEL_SCOPE: &str = "model_smollm2_135m";

/// A test tier: 50 requests per hour, so nothing visibly refills while a test runs.
pub const BURST_TIER_YAML: &str = "    tiers:\n      burst: {requests: 50, tokens: 1000000, window_seconds: 3600}\n    \
                                   scope_tiers:\n      burst_access: burst\n";

/// Writes `dir/stack.yaml`: the default model, and `rate_limits` holding `rate_limits_yaml`
/// (lines indented by four spaces).
pub fn write_config(dir: &Path, rate_limits_yaml: &str) {
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n\
         oauth_config:\n  enable_audit_logging: false\n  rate_limits:\n{rate_limits_yaml}",
        default_model().display()
    );
    std::fs::write(dir.join("stack.yaml"), yaml).unwrap();
}

/// A token from `llamagate token` for `server`, subject `sub` (client `dev-client`), with the model's
/// scope plus `scopes`.
pub fn token(dir: &Path, server: &DevServer, sub: &str, scopes: &[&str]) -> String {
    let mut args = vec!["--sub", sub, "--scope", MODEL_SCOPE];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    llamagate_testkit::dev_token(super::dev::bin(), dir, &server.base, &args)
}

/// A status, the headers and the JSON body of one answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// A header as a string (panics when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header; {:?}", self.headers)).to_str().unwrap()
    }

    /// A header as a number.
    pub fn number(&self, name: &str) -> u64 {
        self.header(name).parse().unwrap()
    }
}

/// POSTs `body` to `path` with `token`.
pub async fn post(client: &reqwest::Client, server: &DevServer, token: &str, path: &str, body: &Value) -> Answer {
    let response = client.post(server.url(path)).bearer_auth(token).json(body).send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    Answer { status, headers, body: response.json().await.unwrap() }
}

/// GETs `path` with `token` (or none).
pub async fn get(client: &reqwest::Client, server: &DevServer, token: Option<&str>, path: &str) -> Answer {
    let mut request = client.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    Answer { status, headers, body: response.json().await.unwrap() }
}

/// A cheap completion: a two-token prompt, one generated token.
pub fn tiny_completion() -> Value {
    json!({ "model": MODEL_ID, "prompt": "Hi", "max_tokens": 1, "temperature": 0 })
}

/// Sends `count` cheap completions at once, request `i` to `servers[i % n]` with `tokens[i % n]`.
pub async fn burst(client: &reqwest::Client, servers: &[&DevServer], tokens: &[String], count: usize) -> Vec<Answer> {
    let body = tiny_completion();
    let requests = (0..count)
        .map(|i| post(client, servers[i % servers.len()], &tokens[i % servers.len()], "/v1/completions", &body));
    futures::future::join_all(requests).await
}

/// A `redis-server` on a free loopback port, started by the test; shut down when dropped.
/// An HTTP client (installs the ring provider reqwest is built to expect).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
