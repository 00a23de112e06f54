//! What every integration test module reads: the fixture and model paths, and the JSON accessors for
//! the reference files.

use std::path::{Path, PathBuf};

/// The engine's reference fixtures, inside the checkout (`tests/fixtures/README.md` says where they
/// come from).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tiny random-weight Llama 3 checkpoint.
pub fn tiny_llama3() -> PathBuf {
    fixtures().join("tiny-llama3")
}

/// Copies every file of [`tiny_llama3`] into `to`, for tests that load a damaged or relocated copy.
pub fn copy_tiny_llama3(to: &Path) {
    for entry in std::fs::read_dir(tiny_llama3()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The default model, fetched by `models/fetch.sh`; override with `LLAMAGATE_DEFAULT_MODEL`.
pub use llamagate_testkit::default_model as default_gguf;

/// The JSON file at `path`.
pub fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A JSON array of numbers, as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// A JSON array of chat messages.
pub fn messages(v: &serde_json::Value) -> Vec<llamagate_engine::ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}
