//! [`DevServer`]: `llamagate serve --dev` in a working directory that holds its `stack.yaml` — an
//! authenticated server that is its own token issuer — and [`dev_token`], `llamagate token` for it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `serve --dev` process on one engine thread; killed when dropped.
pub struct DevServer {
    child: Child,
    /// `http://127.0.0.1:<port>`, which is also the issuer.
    pub base: String,
}

impl DevServer {
    /// Starts `bin serve --dev` with `dir/stack.yaml` on `port` (0: any) and extra environment
    /// variables; the development key is created in `dir`. Panics when the server does not start.
    pub fn start(bin: &Path, dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(["--threads", "1", "serve", "--config", "stack.yaml", "--dev", "--port", &port.to_string()])
            .current_dir(dir)
            .env_remove("LLAMAGATE_DEV_KEY_FILE")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run llamagate");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(base) = line.trim().strip_prefix("llamagate listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start: {line:?}");
        };
        // Keep draining stdout (the banner, audit records on stdout) so the server never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stdout.take(u64::MAX), &mut std::io::sink()));
        Self { child, base }
    }

    /// The process id (for reading its memory use under load).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|port| port.parse().ok()).expect("base ends in a port")
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

/// A development token from `bin token --config stack.yaml --issuer <issuer> <args>` run in `dir`
/// (where [`DevServer::start`] keeps the key). Panics with the command's error when it fails.
pub fn dev_token(bin: &Path, dir: &Path, issuer: &str, args: &[&str]) -> String {
    let output = Command::new(bin)
        .args(["token", "--config", "stack.yaml", "--issuer", issuer])
        .args(args)
        .current_dir(dir)
        .env_remove("LLAMAGATE_DEV_KEY_FILE")
        .output()
        .expect("cannot run llamagate token");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
