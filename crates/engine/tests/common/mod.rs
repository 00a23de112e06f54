//! Paths shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `shared/fixtures`, beside the checkout (CI lays `shared/` next to the clone); override with
/// `LLAMAGATE_SHARED_DIR`.
pub fn fixtures() -> PathBuf {
    let shared =
        std::env::var_os("LLAMAGATE_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared"));
    let dir = shared.join("fixtures");
    assert!(dir.is_dir(), "fixtures not found at {} (set LLAMAGATE_SHARED_DIR)", dir.display());
    dir
}

/// The tiny random-weight Llama 3 checkpoint.
pub fn tiny_llama3() -> PathBuf {
    fixtures().join("tiny-llama3")
}

/// The default model, fetched by `models/fetch.sh`; override with `LLAMAGATE_DEFAULT_MODEL`.
pub fn default_gguf() -> PathBuf {
    let path = std::env::var_os("LLAMAGATE_DEFAULT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.is_file(), "default model missing at {}: run models/fetch.sh", path.display());
    path
}

pub fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

pub fn messages(v: &serde_json::Value) -> Vec<llamagate_engine::ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}
