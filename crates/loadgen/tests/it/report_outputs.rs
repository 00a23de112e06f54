//! The binary end to end against the fake endpoint: the JSON report's schema, the SVG chart, and the
//! bundled scenario files with command-line overrides.

use std::path::{Path, PathBuf};
use std::process::Command;

use llamagate_loadgen::report::SCHEMA;
use llamagate_loadgen::{Plan, Scenario};
use serde_json::Value;

use crate::support;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/scenarios")
}

/// Runs `llamagate-load` with these arguments off the runtime's threads; returns stdout.
async fn load(args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_llamagate-load")).args(&args).env_remove("LLAMAGATE_LOAD_TOKEN").output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> =
        v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_and_svg_chart() {
    let fake = support::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (json, chart) = (dir.path().join("report.json"), dir.path().join("chart.svg"));
    let token_file = dir.path().join("tokens.tsv");
    std::fs::write(&token_file, "# tier weight token\npremium\t3\tgood\nfree\t1\tlimited\n").unwrap();
    let args = [
        "--url",
        &fake.url,
        "--token-file",
        token_file.to_str().unwrap(),
        "-n",
        "40",
        "-c",
        "4",
        "--max-tokens",
        "4..8",
        "--json",
        json.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
        "--quiet",
    ];
    let stdout = load(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(stdout.contains("all tiers: 40 requests"), "{stdout}");
    assert!(stdout.contains("tier premium") && stdout.contains("tier free"), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], SCHEMA);
    assert_eq!(keys(&report), ["config", "errors", "overall", "schema", "sending_s", "tiers", "timeline", "wall_s"]);
    assert_eq!(
        keys(&report["config"]),
        [
            "api",
            "concurrency",
            "duration_s",
            "max_tokens",
            "model",
            "rate",
            "requests",
            "scenario",
            "seed",
            "stream",
            "tenants",
            "url"
        ]
    );
    assert_eq!(report["config"]["max_tokens"], serde_json::json!({"min": 4, "max": 8}));
    assert_eq!(
        report["config"]["tenants"][0],
        serde_json::json!({"tier": "premium", "weight": 3.0, "authenticated": true})
    );
    let tier_keys = [
        "failed",
        "http_status",
        "inter_token_ms",
        "latency_ms",
        "ok",
        "ok_per_s",
        "output_tokens",
        "output_tokens_per_s",
        "request_output_tokens_per_s",
        "requests",
        "requests_per_s",
        "resent",
        "status",
        "ttft_ms",
    ];
    assert_eq!(keys(&report["overall"]), tier_keys);
    assert_eq!(
        keys(&report["overall"]["status"]),
        [
            "disconnected",
            "forbidden_403",
            "ok",
            "other_status",
            "rate_limited_429",
            "server_error_5xx",
            "transport",
            "unauthorized_401",
            "unavailable_503"
        ]
    );
    assert_eq!(keys(&report["overall"]["ttft_ms"]), ["count", "max", "mean", "p50", "p90", "p99"]);
    assert_eq!(report["overall"]["requests"], 40);
    let premium = &report["tiers"][0];
    assert_eq!(premium["tier"], "premium");
    assert_eq!(premium["requests"].as_u64().unwrap(), fake.seen.count("good"));
    assert_eq!(report["tiers"][1]["status"]["rate_limited_429"].as_u64().unwrap(), fake.seen.count("limited"));
    assert_eq!(report["tiers"][1]["http_status"]["429"].as_u64().unwrap(), fake.seen.count("limited"));
    let second = &report["timeline"][0];
    assert_eq!(keys(second), ["failed", "latency_ms", "ok", "output_tokens", "t_s", "ttft_ms"]);
    assert_eq!(keys(&second["latency_ms"]), ["p50", "p90", "p99"]);
    let timeline_total: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ok"].as_u64().unwrap() + s["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline_total, 40);

    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for label in ["latency p50", "latency p99", "TTFT p50", "ok req/s", "failed req/s", "output tok/s"] {
        assert!(svg.contains(label), "chart lacks {label:?}");
    }
    assert!(svg.contains("<polyline") || svg.contains("<path"), "chart has no lines");
}

#[test]
fn bundled_scenarios_are_valid() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            let plan = Plan::resolve(&scenario).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(plan.name.is_some(), "{} has no name", path.display());
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // The soak is long by definition; every other standard run stays short.
            let longest = if name == "soak.yaml" { 20 * 60 } else { 60 };
            assert!(plan.duration.is_some_and(|d| d.as_secs() <= longest), "{name}: keep standard runs short");
            names.push(name);
        }
    }
    names.sort();
    assert_eq!(names, ["concurrent-8.yaml", "remote-64.yaml", "single-stream.yaml", "soak.yaml", "tier-mix.yaml"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_file_with_overrides() {
    let fake = support::start().await;
    let scenario = scenarios_dir().join("concurrent-8.yaml");
    let args = [
        "--scenario",
        scenario.to_str().unwrap(),
        "--url",
        &fake.url,
        "--token",
        "good",
        "--requests",
        "16",
        "--quiet",
    ];
    let stdout = load(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(stdout.starts_with("[concurrent-8]"), "{stdout}");
    assert!(stdout.contains("concurrency 8"), "{stdout}");
    assert!(stdout.contains("all tiers: 16 requests, 16 ok"), "{stdout}");
    assert_eq!(fake.seen.count("good"), 16);
}
