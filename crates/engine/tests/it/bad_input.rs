//! Bad model files and configs give clear errors, never a panic.

use crate::support::*;
use llamagate_engine::{EngineError, Model, ModelOptions, ModelSource};

fn load(source: ModelSource) -> Result<Model, EngineError> {
    Model::load(&source, &ModelOptions::default())
}

#[test]
fn missing_files_are_io_errors() {
    assert!(matches!(ModelSource::parse("/no/such/model.gguf"), Err(EngineError::Io { .. })));
    let err = load(ModelSource::Gguf("/no/such/model.gguf".into())).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = load(ModelSource::HfDir(dir.path().into())).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn truncated_and_corrupt_gguf_are_invalid_models() {
    let bytes = std::fs::read(default_gguf()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated-data", bytes[..bytes.len() / 2].to_vec()),
        ("truncated-header", bytes[..1000].to_vec()),
        ("bad-magic", [b"XXXX".as_slice(), &bytes[4..4096]].concat()),
        // A string length in the header claims ~2^62 bytes: must not try to allocate it.
        ("huge-length", {
            let mut b = bytes[..4096].to_vec();
            b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
            b
        }),
        ("empty", Vec::new()),
    ];
    for (name, content) in cases {
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, content).unwrap();
        let err = load(ModelSource::Gguf(path)).unwrap_err();
        assert!(matches!(err, EngineError::InvalidModel { .. }), "{name}: {err}");
    }
}

#[test]
fn corrupt_safetensors_is_an_invalid_model() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny_llama3(dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    for content in [bytes[..bytes.len() - 100].to_vec(), b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage".to_vec()] {
        std::fs::write(&weights, content).unwrap();
        let err = load(ModelSource::HfDir(dir.path().into())).unwrap_err();
        assert!(matches!(err, EngineError::InvalidModel { .. }), "{err}");
    }
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny_llama3(dir.path());
    let config = dir.path().join("config.json");
    let mut json = read_json(config.clone());
    json["model_type"] = "mistral".into();
    json["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    std::fs::write(&config, json.to_string()).unwrap();
    let err = load(ModelSource::HfDir(dir.path().into())).unwrap_err();
    assert!(matches!(err, EngineError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("mistral"), "{err}");
}
