//! End to end against the real `llamagate serve --dev` on the default model, with tokens minted by
//! `llamagate token` through `token_cmd`: a premium tenant, one whose token lacks the model's scope
//! and one without a token.
//!
//! Cargo cannot build another package's binary for this test, so it uses `target/debug/llamagate`
//! (which a workspace test run builds; `cargo build -p llamagate-server`) or `$LLAMAGATE_BIN`, and
//! fails naming the fix when neither exists or the default model is not fetched (`models/fetch.sh`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use llamagate_loadgen::scenario::{Api, MaxTokens, TenantSpec};
use llamagate_loadgen::{Live, Scenario, run_scenario};
use llamagate_testkit::{DevServer, default_model, llamagate_bin};

const MODEL_ID: &str = "smollm2-135m-instruct";

/// A scratch directory holding `stack.yaml` (the default model, then `oauth_yaml`) and a one-prompt file
/// (a one-word prompt keeps the CPU generation short), with the dev server started in it.
struct Setup {
    server: DevServer, // stopped before the directory goes
    dir: tempfile::TempDir,
    bin: PathBuf,
    prompts: PathBuf,
}

impl Setup {
    /// Fails, naming the fix, when the binary is not built or the model not fetched.
    fn start(oauth_yaml: &str) -> Self {
        let (bin, model) = (llamagate_bin(), default_model());
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n{oauth_yaml}",
            model.display()
        );
        std::fs::write(dir.path().join("stack.yaml"), yaml).unwrap();
        let prompts = dir.path().join("prompts.jsonl");
        std::fs::write(&prompts, "{\"prompt\": \"Hi\"}\n").unwrap();
        let server = DevServer::start(&bin, dir.path(), 0, &[]);
        Self { server, dir, bin, prompts }
    }

    /// A `--tokens-cmd`-style shell command that mints a development token for the server.
    fn token_cmd(&self, extra: &str) -> String {
        format!(
            "cd '{}' && '{}' token --config stack.yaml --issuer {} {extra}",
            self.dir.path().display(),
            self.bin.display(),
            self.server.base
        )
    }
}

fn tenant(tier: &str, weight: f64, cmd: Option<String>) -> TenantSpec {
    TenantSpec { token_cmd: cmd, ..TenantSpec::named(tier, weight) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_against_the_real_server() {
    let setup = Setup::start("oauth_config:\n  enable_auth: false\n");
    let scenario = Scenario {
        url: Some(setup.server.base.clone()),
        model: Some(MODEL_ID.into()),
        requests: Some(6),
        concurrency: Some(3),
        prompts: Some(setup.prompts.clone()),
        max_tokens: Some(MaxTokens { min: 4, max: 4 }),
        temperature: Some(0.0),
        tenants: Some(vec![
            tenant("premium", 1.0, Some(setup.token_cmd("--tier premium --sub load-e2e"))),
            tenant("wrong-scope", 1.0, Some(setup.token_cmd("--tier premium --scope model_something_else"))),
            tenant("anonymous", 1.0, None),
        ]),
        ..Default::default()
    };
    let report = run_scenario(&scenario, Arc::new(Live::default())).await.unwrap();
    let tier = |name: &str| &report.tiers.iter().find(|t| t.tier == name).unwrap().report;
    assert_eq!(report.overall.requests, 6, "{:?}", report.errors);
    let premium = tier("premium");
    assert!(premium.requests > 0, "seed 42 picks the premium tenant");
    assert_eq!(premium.ok, premium.requests, "{:?}", report.errors);
    assert!((premium.ok..=4 * premium.ok).contains(&premium.output_tokens), "{premium:?}");
    assert_eq!(premium.ttft_ms.unwrap().count, premium.ok);
    assert_eq!(tier("wrong-scope").status["forbidden_403"], tier("wrong-scope").requests);
    assert_eq!(tier("anonymous").status["unauthorized_401"], tier("anonymous").requests);

    // Text completions, not streamed: the token count comes from the body's usage.
    let plain = Scenario {
        api: Some(Api::Completions),
        requests: Some(1),
        concurrency: Some(1),
        stream: Some(false),
        tenants: Some(vec![tenant("premium", 1.0, Some(setup.token_cmd("--tier premium")))]),
        ..scenario
    };
    let report = run_scenario(&plain, Arc::new(Live::default())).await.unwrap();
    assert_eq!(report.overall.ok, 1, "{:?}", report.errors);
    assert!((1..=4).contains(&report.overall.output_tokens), "{:?}", report.overall);
}

/// The report's counts against what the server itself recorded: its audit log and `/metrics`, and the
/// 429s of a rate-limited tier against that tier's configured limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_the_servers_audit_log_metrics_and_limits() {
    const FREE_REQUESTS: u64 = 3;
    // Free: 3 requests per hour, so no request comes back during the run; premium stays unlimited here.
    let setup = Setup::start(&format!(
        "oauth_config:\n  rate_limits:\n    tiers:\n      free: {{requests: {FREE_REQUESTS}, tokens: 100000, window_seconds: 3600}}\n  \
         audit:\n    path: audit.log\n"
    ));
    let premium_cmd = setup.token_cmd("--sub paying --scope model_smollm2_135m --scope premium_access");
    let scenario = Scenario {
        url: Some(setup.server.base.clone()),
        model: Some(MODEL_ID.into()),
        requests: Some(14),
        concurrency: Some(2),
        prompts: Some(setup.prompts.clone()),
        max_tokens: Some(MaxTokens { min: 2, max: 2 }),
        temperature: Some(0.0),
        tenants: Some(vec![
            tenant("premium", 1.0, Some(premium_cmd.clone())),
            tenant("free", 3.0, Some(setup.token_cmd("--sub thrifty"))),
            tenant("anonymous", 1.0, None),
        ]),
        ..Default::default()
    };
    let report = run_scenario(&scenario, Arc::new(Live::default())).await.unwrap();
    let tier = |name: &str| &report.tiers.iter().find(|t| t.tier == name).unwrap().report;
    let (premium, free, anonymous) = (tier("premium"), tier("free"), tier("anonymous"));
    assert_eq!(report.overall.requests, 14, "{:?}", report.errors);
    assert!(free.requests > FREE_REQUESTS, "the seeded mix sends the free tenant past its limit: {free:?}");
    assert_eq!(free.ok, FREE_REQUESTS, "{:?}", report.errors);
    assert_eq!(free.status["rate_limited_429"], free.requests - FREE_REQUESTS);
    assert_eq!(premium.ok, premium.requests, "{:?}", report.errors);
    assert_eq!(anonymous.status["unauthorized_401"], anonymous.requests);
    let (ok, limited, unauthorized) =
        (report.overall.ok, report.overall.status["rate_limited_429"], report.overall.status["unauthorized_401"]);
    assert_eq!(ok + limited + unauthorized, 14);

    // The server's metrics (an operator route) count the same answers on the chat route.
    let operator_cmd = setup.token_cmd("--sub ops --scope llamagate_operator");
    let operator_token =
        String::from_utf8(Command::new("sh").arg("-c").arg(&operator_cmd).output().unwrap().stdout).unwrap();
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", setup.server.base))
        .bearer_auth(operator_token.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chat_answers = |status: u16| {
        let prefix = format!(
            "llamagate_http_requests_total{{method=\"POST\",route=\"/v1/chat/completions\",status=\"{status}\"}} "
        );
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!((chat_answers(200), chat_answers(429), chat_answers(401)), (ok, limited, unauthorized), "{metrics}");

    // And so does its audit log (the response records are written as each response ends).
    let audit_path = setup.dir.path().join("audit.log");
    let count = |event: &str, status: u64| {
        std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["event"] == event && r["status"] == status && r["route"] == "POST /v1/chat/completions")
            .count() as u64
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("inference_response", 200) < ok && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count("inference_response", 200), ok);
    assert_eq!(count("inference_response", 429), limited);
    assert_eq!(count("security_rate_limited", 429), limited);
    assert_eq!(count("security_invalid_token", 401), unauthorized);
}
