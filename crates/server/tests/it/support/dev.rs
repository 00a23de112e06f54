//! `llamagate serve --dev` in a temporary working directory, and `llamagate token` for it: an
//! authenticated server without an external authorization server (`llamagate_testkit`, with this
//! package's own binary).

use std::path::Path;

pub use llamagate_testkit::DevServer;

/// Writes `dir/stack.yaml`: the default model, and `oauth_config: {enable_auth: false}`, which
/// `serve --dev` turns into its own issuer's settings.
pub fn write_default_config(dir: &Path) {
    write_config_with_server_keys(dir, "");
}

/// As [`write_default_config`], with more `server:` keys (`server_yaml`, lines indented by two spaces).
pub fn write_config_with_server_keys(dir: &Path, server_yaml: &str) {
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\n{server_yaml}models:\n  - id: {}\n    source: {}\n    context_length: 1024\n\
         oauth_config:\n  enable_auth: false\n",
        super::MODEL_ID,
        super::default_model().display()
    );
    std::fs::write(dir.join("stack.yaml"), yaml).expect("write stack.yaml");
}

/// The binary Cargo built for this package's tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_llamagate"))
}

/// Starts `serve --dev` with `dir/stack.yaml` on `port` (0: any).
pub fn start(dir: &Path, port: u16) -> DevServer {
    start_with_env(dir, port, &[])
}

/// As [`start`], with extra environment variables for the server.
pub fn start_with_env(dir: &Path, port: u16, env: &[(&str, &str)]) -> DevServer {
    DevServer::start(bin(), dir, port, env)
}

/// A development token for subject alice from `llamagate token` run in `dir` (premium tier).
pub fn token(dir: &Path, issuer: &str, extra: &[&str]) -> String {
    token_for(dir, issuer, "alice", extra)
}

/// A development token for `sub` from `llamagate token` run in `dir` (premium tier).
pub fn token_for(dir: &Path, issuer: &str, sub: &str, extra: &[&str]) -> String {
    let args = [&["--tier", "premium", "--sub", sub][..], extra].concat();
    llamagate_testkit::dev_token(bin(), dir, issuer, &args)
}
