//! Where each model runs: its own device and thread count from the config, and a clear refusal to
//! start when the device is not there.

use serde_json::json;

use crate::support::{MODEL_ID, Server, serve_once};

/// An authorization server nobody answers on (port 9, discard): the start does not need it.
const UNREACHABLE_AUTH: &str =
    "oauth_config:\n  auth_server_uri: http://127.0.0.1:9\n  stack_uri: http://127.0.0.1:8321\n";

#[test]
fn a_model_on_a_device_this_build_or_machine_lacks_stops_the_start_with_the_model_named() {
    // The test build has no GPU backend (and Linux no Metal): each is refused, never run on the CPU.
    for device in ["cuda", "cuda:1", "metal"] {
        let (ok, stderr) = serve_once(&format!("    device: {device}\n{UNREACHABLE_AUTH}"));
        assert!(!ok, "{device}: started");
        assert!(stderr.contains(&format!("models[0] ({MODEL_ID})")), "{device}: {stderr}");
        let named = if device == "metal" { "Metal requested" } else { "CUDA requested" };
        assert!(stderr.contains(named), "{device}: {stderr}");
    }
    // A misspelt device is refused before any model loads, with the choices named.
    let (ok, stderr) = serve_once(&format!("    device: gpu0\n{UNREACHABLE_AUTH}"));
    assert!(!ok);
    assert!(stderr.contains("models[0].device") && stderr.contains("cuda:N"), "{stderr}");
}

#[tokio::test]
async fn a_model_on_the_cpu_with_its_own_threads_serves_from_its_own_engine_threads() {
    let server =
        Server::start_with_config(0, "    device: cpu\n    threads: 2\noauth_config:\n  enable_auth: false\n", None);
    let body = json!({"model": MODEL_ID, "prompt": "The sky is", "max_tokens": 4, "temperature": 0});
    let (status, answer) = server.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    // `--threads 1` leaves the shared team without helpers; the model's team of two has one.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap();
    let helpers = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "llamagate-cpu-1")
        .count();
    assert_eq!(helpers, 1);
}
