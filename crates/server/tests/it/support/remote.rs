//! The remote-provider tests' processes: llama.cpp's real `llama-server` on the default model (built by
//! models/tools/build.sh into .bench/llamacpp-min/bin/), and `llamagate serve --dev` with a Llama Stack
//! run-config pointing at it, its log kept in a file so tests can read (and grep) it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::default_model;
use super::oauth::{free_port, install_crypto, repo_root};

/// The key llama-server demands and llamagate sends: it must never show in llamagate's log or audit.
pub const UPSTREAM_KEY: &str = "sk-upstream-test-7c1f9e2d4b";

/// The scope the remote model needs (configured as its `required_scope`).
pub const REMOTE_SCOPE: &str = "model_remote_smollm";

/// `llama-server`: `$LLAMA_SERVER_BIN`, else `.bench/llamacpp-min/bin/llama-server`. Panics with the
/// command that builds it: a test that needs it must not pass without it.
pub fn llama_server_bin() -> PathBuf {
    let path = std::env::var_os("LLAMA_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".bench/llamacpp-min/bin/llama-server"));
    assert!(path.is_file(), "no llama-server at {}: run models/tools/build.sh", path.display());
    path
}

/// A running `llama-server` on the default model, one thread, requiring [`UPSTREAM_KEY`]; killed when
/// dropped.
pub struct LlamaServer {
    child: Child,
    /// `http://127.0.0.1:<port>/v1`, the OpenAI-compatible root.
    pub base_url: String,
    port: u16,
    _log_dir: tempfile::TempDir,
}

impl LlamaServer {
    /// Starts it and waits until `/health` answers 200 (the model is loaded).
    pub async fn start() -> Self {
        install_crypto();
        let port = free_port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(log_dir.path().join("llama-server.log")).unwrap();
        let child = Command::new(llama_server_bin())
            .arg("-m")
            .arg(default_model())
            .args(["-t", "1", "-c", "2048", "-np", "2", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api-key", UPSTREAM_KEY, "--metrics", "--no-webui", "--no-warmup"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot run llama-server");
        let server = Self { child, base_url: format!("http://127.0.0.1:{port}/v1"), port, _log_dir: log_dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let health = client.get(format!("http://127.0.0.1:{port}/health")).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            assert!(Instant::now() < deadline, "llama-server did not become healthy in 120 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `llamacpp:prompt_tokens_total`: prompt tokens it processed so far (it moves with every request it
    /// serves).
    pub async fn prompt_tokens_total(&self) -> f64 {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .bearer_auth(UPSTREAM_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("llamacpp:prompt_tokens_total "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no prompt_tokens_total in:\n{text}"))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A URL where nothing listens: a port that was free a moment ago.
pub fn dead_base_url() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

/// `llamagate serve --dev` in its own directory, with stderr (`RUST_LOG=info`) in `gate.log` and audit
/// records in `.llamagate/audit.log`; killed when dropped.
pub struct Gate {
    child: Child,
    dir: tempfile::TempDir,
    /// The environment it was started with: `llamagate token` reads the same config and needs it too.
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:<port>`, also the development issuer.
    pub base: String,
}

impl Gate {
    /// Writes `stack.yaml` from `yaml` and starts the server with the upstream key in its environment.
    pub fn start(yaml: &str) -> Self {
        Self::start_with_env(yaml, &[])
    }

    /// As [`Gate::start`], with more environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(yaml, env, &["--dev"])
    }

    /// `llamagate serve` without `--dev`: authentication is what `yaml` configures.
    pub fn start_without_dev(yaml: &str) -> Self {
        Self::spawn(yaml, &[], &[])
    }

    fn spawn(yaml: &str, env: &[(&str, &str)], extra_args: &[&str]) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stack.yaml"), yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("gate.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_llamagate"))
            .args(["--threads", "1", "serve", "--config", "stack.yaml", "--port", "0"])
            .args(extra_args)
            .current_dir(dir.path())
            .env_remove("LLAMAGATE_DEV_KEY_FILE")
            .env("LLAMACPP_API_KEY", UPSTREAM_KEY)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot run llamagate");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(base) = line.trim().strip_prefix("llamagate listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("gate.log")).unwrap_or_default();
            panic!("llamagate did not start: {line:?}\n{log}");
        };
        std::thread::spawn(move || std::io::copy(&mut stdout.take(u64::MAX), &mut std::io::sink()));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self { child, dir, env, base }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A development token for `sub` with these scopes.
    pub fn token(&self, sub: &str, scopes: &[&str]) -> String {
        let mut args = vec!["--sub", sub];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let output = Command::new(env!("CARGO_BIN_EXE_llamagate"))
            .args(["token", "--config", "stack.yaml", "--issuer", &self.base])
            .args(&args)
            .current_dir(self.dir.path())
            .env_remove("LLAMAGATE_DEV_KEY_FILE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("cannot run llamagate token");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gate.log")).unwrap_or_default()
    }

    /// The audit records written so far, one JSON object each. Waits a moment for a response record:
    /// it is written when the response body ends, after the client has read it.
    pub async fn audit(&self) -> Vec<serde_json::Value> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::read_to_string(self.dir.path().join(".llamagate/audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The audit file's text, for grepping.
    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".llamagate/audit.log")).unwrap_or_default()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run-config with one remote `llama-cpp-server` provider over `base_urls` serving `remote/smollm2`
/// (scope [`REMOTE_SCOPE`]), a second provider `down` over `down_urls` serving `remote/down`, and a
/// 1,000-token-per-hour `metered` tier for the `metered_access` scope. No local model: the gate loads
/// nothing itself. Health probes are off: these tests watch the breakers that requests trip.
/// URLs as the items of a YAML flow list (`"a", "b"`), for a provider's `base_url: [...]`.
pub fn yaml_list(urls: &[&str]) -> String {
    urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ")
}

pub fn run_yaml(base_urls: &[&str], down_urls: &[&str]) -> String {
    let list = yaml_list;
    format!(
        r#"version: 2
image_name: llamagate-remote-test
apis: [inference]
server:
  host: 127.0.0.1
  port: 0
providers:
  inference:
    - provider_id: llamacpp
      provider_type: remote::llama-cpp-server
      config:
        base_url: [{}]
        api_key: ${{env.LLAMACPP_API_KEY:=}}
        connect_timeout_seconds: 2
        breaker_failures: 1
        breaker_cooldown_seconds: 600
        health_check_interval_seconds: 0
    - provider_id: down
      provider_type: remote::passthrough
      config:
        base_url: [{}]
        api_key: ${{env.LLAMACPP_API_KEY:=}}
        max_retries: 1
        breaker_failures: 1
        breaker_cooldown_seconds: 600
        health_check_interval_seconds: 0
  vector_io:
    - provider_id: faiss
      provider_type: inline::faiss
registered_resources:
  models:
    - model_id: remote/smollm2
      provider_id: llamacpp
      provider_model_id: smollm2
      model_type: llm
      required_scope: {REMOTE_SCOPE}
    - model_id: remote/down
      provider_id: down
      required_scope: {REMOTE_SCOPE}
oauth_config:
  enable_auth: false
  rate_limits:
    backend: memory
    tiers:
      metered: {{requests: 100, tokens: 1000, window_seconds: 3600}}
    scope_tiers:
      metered_access: metered
"#,
        list(base_urls),
        list(down_urls)
    )
}
