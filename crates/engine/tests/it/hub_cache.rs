//! A hub id resolves through the standard Hugging Face cache, offline. The test needs `HF_HOME` and
//! `HF_HUB_OFFLINE` set for the whole process, which other tests in this binary must not see: it lays out
//! the cache, then runs itself again in a child process with that environment, where the loads happen.

use crate::support::*;
use llamagate_engine::{EngineError, Model, ModelOptions, ModelSource};

/// Set in the child process this test starts; its value is the commit the cache's `refs/main` names.
const CHILD_COMMIT: &str = "LLAMAGATE_HUB_CACHE_TEST_COMMIT";

#[test]
fn hub_id_loads_offline_from_the_cache() {
    match std::env::var(CHILD_COMMIT) {
        Ok(commit) => load_from_cache(&commit),
        Err(_) => run_in_child_with_cache(),
    }
}

/// Lays `tiny-llama3` out as a hub cache in a temporary `HF_HOME` and runs this test again there.
fn run_in_child_with_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--test-org--tiny-llama3");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    copy_tiny_llama3(&snapshot);
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hub_cache::hub_id_loads_offline_from_the_cache", "--test-threads=1", "--nocapture"])
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .env(CHILD_COMMIT, commit)
        .output()
        .unwrap();
    // `--exact` with a stale name would run nothing and still succeed: the child must report its one test.
    let ran = String::from_utf8_lossy(&child.stdout).contains("1 passed");
    assert!(
        child.status.success() && ran,
        "the child process loading from the hub cache failed ({}):\n{}{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
}

/// In the child: the hub ids load from the cache alone, and an absent one fails naming the cache.
fn load_from_cache(commit: &str) {
    let reference = read_json(tiny_llama3().join("reference.json"));
    let case = &reference["cases"][1];
    for spec in ["test-org/tiny-llama3", &format!("test-org/tiny-llama3@{commit}")] {
        let model = Model::load(&ModelSource::parse(spec).unwrap(), &ModelOptions::default()).unwrap();
        let ids = model.tokenize(case["prompt_text"].as_str().unwrap()).unwrap();
        assert_eq!(ids, crate::support::ids(&case["prompt_ids"]));
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
