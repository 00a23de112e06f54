//! A hub id resolves through the standard Hugging Face cache, offline. Its own test binary: it sets
//! `HF_HOME` and `HF_HUB_OFFLINE` for the process.

mod common;

use common::*;
use llamagate_engine::{EngineError, Model, ModelOptions, ModelSource};

#[test]
fn hub_id_loads_offline_from_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--test-org--tiny-llama3");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for entry in std::fs::read_dir(tiny_llama3()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
    }
    // SAFETY: this test binary has one test, so nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let reference = read_json(tiny_llama3().join("reference.json"));
    let case = &reference["cases"][1];
    for spec in ["test-org/tiny-llama3", &format!("test-org/tiny-llama3@{commit}")] {
        let model = Model::load(&ModelSource::parse(spec).unwrap(), &ModelOptions::default()).unwrap();
        let ids = model.tokenize(case["prompt_text"].as_str().unwrap()).unwrap();
        assert_eq!(ids, common::ids(&case["prompt_ids"]));
        let logits = model.logits(&ids).unwrap();
        let expected = floats(&case["last_logits"]);
        let diff = logits.last().unwrap().iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-3, "{spec}: {diff}");
    }
    // Offline with nothing cached: a clear error naming the cache, no network attempt.
    let err = Model::load(&ModelSource::parse("test-org/absent").unwrap(), &ModelOptions::default()).unwrap_err();
    assert!(matches!(err, EngineError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}
