//! Starts the real `llamagate serve` binary on a free port with a temporary config, and talks to it.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod dev;
pub mod fault;
pub mod forge;
pub mod limits;
pub mod oauth;
pub mod proxy;
pub mod remote;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The id the default model is served under in tests; it contains `/` to exercise both spellings.
pub const MODEL_ID: &str = "local/smollm2-135m-instruct";

/// Body limit in test configs: small, so the 413 test does not have to send megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub use llamagate_testkit::default_model;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    _config_dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An HTTP client for it.
    pub client: reqwest::Client,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `llamagate --threads 1 serve` on the default model and waits until it listens.
    pub fn start() -> Self {
        Self::start_with_log_filter(None)
    }

    /// Like [`Server::start`], with `RUST_LOG` set to `filter` and the server's log captured.
    pub fn start_with_log_filter(filter: Option<&str>) -> Self {
        Self::start_with_config(0, "oauth_config:\n  enable_auth: false\n", filter)
    }

    /// Starts the server on `port` (0: any) with this YAML (e.g. an `oauth_config` section) appended
    /// to the test config.
    pub fn start_with_config(port: u16, extra_yaml: &str, filter: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stack.yaml");
        let yaml = format!(
            "server:\n  host: 127.0.0.1\n  port: {port}\n  max_body_bytes: {MAX_BODY_BYTES}\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n{extra_yaml}",
            default_model().display()
        );
        std::fs::write(&config, yaml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_llamagate"));
        command.args(["--threads", "1", "serve", "--config"]).arg(&config).stdout(Stdio::piped());
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter).stderr(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            // Drained on a thread so a chatty server never blocks on a full pipe.
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(base) = line.trim().strip_prefix("llamagate listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(std::time::Duration::from_millis(200));
            panic!("server did not start: {line:?}\nlog:\n{}", log.lock().unwrap());
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        Self { child, _config_dir: dir, base, client, log }
    }

    /// The directory holding the server's config file.
    pub fn config_dir(&self) -> &std::path::Path {
        self._config_dir.path()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON and returns the status and the parsed body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(self.url(path)).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// GETs a path and returns the status and the parsed body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// What the server has logged so far (only with [`Server::start_with_log_filter`]).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait(&mut self) -> bool {
        self.child.wait().unwrap().success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON events of an SSE body, in order; `[DONE]` is returned as the string "[DONE]".
pub fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| if data == "[DONE]" { Value::String(data.into()) } else { serde_json::from_str(data).unwrap() })
        .collect()
}

/// The sorted keys of a JSON object, for comparing shapes with the reference.
pub fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// Asserts the Llama Stack error envelope with this status.
pub fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert!(body["error"]["message"].is_string(), "not the error envelope: {body}");
}

/// Runs `llamagate serve` with a config and returns (success, stderr) once it exits.
pub fn serve_once(yaml_tail: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stack.yaml");
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n{yaml_tail}",
        default_model().display()
    );
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llamagate"))
        .args(["--threads", "1", "serve", "--config"])
        .arg(&config)
        .env_remove("LLAMA_STACK_OAUTH_ENABLE_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the server started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}
