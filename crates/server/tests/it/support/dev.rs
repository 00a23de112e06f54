//! `llamagate serve --dev` in a temporary working directory, and `llamagate token` for it: an
//! authenticated server without an external authorization server.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `serve --dev` process; killed when dropped.
pub struct DevServer {
    child: Child,
    /// `http://127.0.0.1:<port>`, which is also the issuer.
    pub base: String,
}

impl DevServer {
    /// Starts `serve --dev` with `dir/stack.yaml` on `port` (0: any).
    pub fn start(dir: &Path, port: u16) -> Self {
        Self::start_with_env(dir, port, &[])
    }

    /// As [`DevServer::start`], with extra environment variables for the server.
    pub fn start_with_env(dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llamagate"))
            .args(["--threads", "1", "serve", "--config", "stack.yaml", "--dev", "--port", &port.to_string()])
            .current_dir(dir)
            .env_remove("LLAMAGATE_DEV_KEY_FILE")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(base) = line.trim().strip_prefix("llamagate listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start: {line:?}");
        };
        // Keep draining stdout (the banner, audit records on stdout) so the server never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stdout.take(u64::MAX), &mut std::io::sink()));
        Self { child, base }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A development token for subject alice from `llamagate token` run in `dir` (premium tier).
pub fn token(dir: &Path, issuer: &str, extra: &[&str]) -> String {
    token_for(dir, issuer, "alice", extra)
}

/// A development token for `sub` from `llamagate token` run in `dir` (premium tier).
pub fn token_for(dir: &Path, issuer: &str, sub: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_llamagate"))
        .args(["token", "--config", "stack.yaml", "--issuer", issuer, "--tier", "premium", "--sub", sub])
        .args(extra)
        .current_dir(dir)
        .env_remove("LLAMAGATE_DEV_KEY_FILE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}
