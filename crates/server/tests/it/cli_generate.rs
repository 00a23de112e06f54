//! `llamagate generate` on the default model, as a user runs it.

use std::path::PathBuf;
use std::process::Command;

fn default_model() -> PathBuf {
    let path = std::env::var_os("LLAMAGATE_DEFAULT_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(path.is_file(), "default model missing at {}: run models/fetch.sh", path.display());
    path
}

#[test]
fn generate_answers_a_factual_question_and_reports_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_llamagate"))
        .args(["--threads", "1", "generate", "--max-tokens", "24", "--prompt", "Name three primary colors."])
        .arg("--model")
        .arg(default_model())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.to_lowercase().contains("red"), "{stdout}");
    assert!(stderr.contains("prompt_tokens=35"), "{stderr}");
    assert!(stderr.contains("tok/s"), "{stderr}");
}

#[test]
fn missing_model_is_a_clear_error_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_llamagate"))
        .args(["generate", "--model", "/no/such/model.gguf", "--prompt", "hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/no/such/model.gguf"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
