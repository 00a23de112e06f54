//! Where the repository keeps what the tests read.

use std::path::PathBuf;

/// The workspace root (this crate lives at `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model, as `models/fetch.sh` lays it out (or `LLAMAGATE_DEFAULT_MODEL`). Panics with
/// the command that fetches it when it is missing: a test that needs the model must not pass without
/// it.
pub fn default_model() -> PathBuf {
    let path = std::env::var_os("LLAMAGATE_DEFAULT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.is_file(), "default model missing at {}: run models/fetch.sh", path.display());
    path
}

/// The `llamagate` binary for tests of other packages than the server (Cargo builds a binary only for
/// its own package's tests): `$LLAMAGATE_BIN`, else `target/debug/llamagate`, which a workspace test
/// run builds. Panics when neither exists.
pub fn llamagate_bin() -> PathBuf {
    let path = std::env::var_os("LLAMAGATE_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
        target.join("debug/llamagate")
    });
    assert!(path.is_file(), "no llamagate binary at {}: run cargo build -p llamagate-server", path.display());
    path
}
