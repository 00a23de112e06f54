//! The audit log end to end: a scripted sequence of allowed, refused (401, 403, 429, safety) and failed requests against the
//! real `serve --dev` binary yields exactly the expected records in order; `llamagate audit verify`
//! accepts the log and names the line after an edit, a deletion or a reordering; no token used in the
//! run appears in the log; and 1,000 concurrent requests lose no record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::dev::{self, DevServer, token, token_for};
use crate::support::{MODEL_ID, default_model};
use serde_json::{Value, json};

fn write_config(dir: &Path, audit_path: &Path) {
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n\
         oauth_config:\n  enable_auth: true\n  enable_rate_limiting: true\n  rate_limits:\n    tiers:\n      \
         free: {{requests: 2, tokens: 100000}}\n  audit:\n    path: {}\n    checkpoint_path: {}\n\
         shields:\n  - id: llama-guard\n    model: {MODEL_ID}\n    scores_file: scores.json\n",
        default_model().display(),
        audit_path.display(),
        dir.join("anchor").join("audit.checkpoint").display()
    );
    std::fs::write(dir.join("stack.yaml"), yaml).unwrap();
    // The TEST-ONLY guard double (docs/safety.md): fixed scores instead of a classifier.
    let scores = r#"{"rules": [{"contains": "storm the castle", "scores": {"S1": 0.95}}]}"#;
    std::fs::write(dir.join("scores.json"), scores).unwrap();
}

fn start(dir: &Path) -> DevServer {
    dev::start_with_env(dir, 0, &[("LLAMAGATE_ALLOW_TEST_GUARD", "1")])
}

/// A server auditing to `audit.log` in a fresh directory (kept alive by the returned handle), and a
/// token for it.
fn audited_server() -> (tempfile::TempDir, PathBuf, DevServer, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.log");
    write_config(dir.path(), &audit_path);
    let server = start(dir.path());
    let good = token(dir.path(), &server.base, &[]);
    (dir, audit_path, server, good)
}

/// The records written so far, waiting (briefly) until there are at least `at_least`: the response
/// record is written when the response body ends, just after the client has read it.
fn records(path: &Path, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify(paths: &[&Path]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_llamagate")).arg("audit").arg("verify").args(paths).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// (event, status, reason) of a record, the part the scripted sequence pins down.
fn summary(record: &Value) -> (String, u64, String) {
    (
        record["event"].as_str().unwrap().to_string(),
        record["status"].as_u64().unwrap_or(0),
        record["reason"].as_str().unwrap_or("").to_string(),
    )
}

fn s(event: &str, status: u64, reason: &str) -> (String, u64, String) {
    (event.to_string(), status, reason.to_string())
}

#[tokio::test]
async fn a_scripted_run_is_audited_exactly_and_the_chain_detects_tampering() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let audit_path: PathBuf = dir.path().join("logs/audit.log");
    write_config(dir.path(), &audit_path);
    let server = start(dir.path());
    let client = reqwest::Client::new();
    let good = token(dir.path(), &server.base, &[]);
    let wrong_scope = token_for(dir.path(), &server.base, "bob", &["--scope", "model_something_else"]);
    // Greedy, so the reply is the same every run (it runs past 3 tokens: finish_reason "length").
    let chat = |stream: bool| json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3, "temperature": 0, "stream": stream});

    // 1. allowed: list models.
    let r = client.get(server.url("/v1/models")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    r.bytes().await.unwrap();
    // 2. refused: no token; 3. refused: a forged token.
    assert_eq!(client.get(server.url("/v1/models")).send().await.unwrap().status(), 401);
    let forged = format!("{}x", &good[..good.len() - 1]);
    assert_eq!(client.get(server.url("/v1/models")).bearer_auth(&forged).send().await.unwrap().status(), 401);
    // 4. refused: valid token without the model's scope.
    let r = client.post(server.url("/v1/chat/completions")).bearer_auth(&wrong_scope).json(&chat(false)).send().await;
    assert_eq!(r.unwrap().status(), 403);
    // 5. allowed: a chat completion, and 6. a streamed one.
    let r = client.post(server.url("/v1/chat/completions")).bearer_auth(&good).json(&chat(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let usage = r.json::<Value>().await.unwrap()["usage"].clone();
    let r = client.post(server.url("/v1/chat/completions")).bearer_auth(&good).json(&chat(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // 7. refused: alice's tier allows two generations a minute.
    let r = client.post(server.url("/v1/chat/completions")).bearer_auth(&good).json(&chat(false)).send().await;
    assert_eq!(r.unwrap().status(), 429);
    // 8. refused: content over carol's safety level (basic_user: violence above 0.3).
    let carol = token_for(dir.path(), &server.base, "carol", &[]);
    let unsafe_chat = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "How do I storm the castle?"}], "max_tokens": 3});
    let r =
        client.post(server.url("/v1/chat/completions")).bearer_auth(&carol).json(&unsafe_chat).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "content_policy_violation");
    // 9. failed: a body that is not a chat request.
    let r = client.post(server.url("/v1/chat/completions")).bearer_auth(&good).json(&json!({"model": 5})).send().await;
    assert_eq!(r.unwrap().status(), 400);

    let log = records(&audit_path, 19);
    let got: Vec<_> = log.iter().map(summary).collect();
    let expected = vec![
        s("inference_request", 0, ""),
        s("inference_response", 200, ""),
        s("security_invalid_token", 401, "no_token"),
        s("security_invalid_token", 401, got[3].2.as_str()),
        s("inference_request", 0, ""),
        s("security_insufficient_scope", 403, "insufficient_scope"),
        s("inference_response", 403, ""),
        s("inference_request", 0, ""),
        s("inference_response", 200, ""),
        s("inference_request", 0, ""),
        s("inference_response", 200, ""),
        s("inference_request", 0, ""),
        s("security_rate_limited", 429, "rate_limited"),
        s("inference_response", 429, ""),
        s("inference_request", 0, ""),
        s("security_safety_refusal", 400, "violence"),
        s("inference_response", 400, ""),
        s("inference_request", 0, ""),
        s("inference_response", 400, ""),
    ];
    assert_eq!(got, expected, "{log:#?}");
    assert_ne!(got[3].2, "", "a forged token's record names the reason class");

    // Who, what, how it ended.
    assert_eq!(log[0]["request_id"], request_id.as_str());
    assert_eq!(log[0]["subject"], "alice");
    assert_eq!(log[0]["route"], "GET /v1/models");
    assert!(log[0]["scopes"].as_array().unwrap().iter().any(|s| s == "model_smollm2_135m"), "{}", log[0]);
    assert!(log[0]["issuer"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert_eq!((log[1]["decision"].as_str(), log[1]["severity"].as_str()), (Some("allowed"), Some("info")));
    assert_eq!((log[5]["subject"].as_str(), log[5]["decision"].as_str()), (Some("bob"), Some("refused")));
    assert_eq!(log[5]["model"], MODEL_ID);
    assert_eq!(log[8]["model"], MODEL_ID);
    assert_eq!(log[8]["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(log[8]["completion_tokens"], usage["completion_tokens"]);
    assert_eq!(log[8]["finish_reason"], "length");
    assert!(log[10]["completion_tokens"].as_u64().unwrap() > 0, "{}", log[10]);
    assert_eq!(
        (log[12]["decision"].as_str(), log[12]["tier"].as_str()),
        (Some("refused"), Some("free")),
        "{}",
        log[12]
    );
    assert_eq!(log[13]["decision"], "refused");
    assert_eq!((log[15]["subject"].as_str(), log[15]["decision"].as_str()), (Some("carol"), Some("refused")));
    assert_eq!(log[16]["decision"], "refused");
    assert_eq!(log[18]["decision"], "failed");
    for record in &log {
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    // No token (nor its signature) is in the log, and no prompt text either.
    let text = std::fs::read_to_string(&audit_path).unwrap();
    for secret in [&good, &wrong_scope, &forged, &carol] {
        assert!(!text.contains(secret.as_str()));
        assert!(!text.contains(secret.rsplit('.').next().unwrap()));
    }
    assert!(!text.contains("Say hi") && !text.contains("storm the castle"));

    // The chain verifies; one edited, deleted or moved line makes it fail at that line.
    drop(server);
    let (ok, out) = verify(&[&audit_path]);
    assert!(ok, "{out}");
    assert!(out.contains("19 records"), "{out}");
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let tampered = dir.path().join("tampered.log");
    let write = |lines: &[String]| std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();

    let mut edited = lines.clone();
    edited[4] = edited[4].replace("\"alice\"", "\"mallory\"").replace("\"bob\"", "\"mallory\"");
    assert_ne!(edited[4], lines[4]);
    write(&edited);
    let (ok, out) = verify(&[&tampered]);
    assert!(!ok && out.contains("tampered.log:5:") && out.contains("modified"), "{out}");

    let mut deleted = lines.clone();
    deleted.remove(6);
    write(&deleted);
    let (ok, out) = verify(&[&tampered]);
    assert!(!ok && out.contains("tampered.log:7:") && out.contains("chain broken"), "{out}");

    let mut reordered = lines.clone();
    reordered.swap(8, 9);
    write(&reordered);
    let (ok, out) = verify(&[&tampered]);
    assert!(!ok && out.contains("tampered.log:9:"), "{out}");

    // The checkpoint kept outside the log pins both ends: the intact log matches it; without its
    // newest records, or starting later than it should, it does not (the chain alone cannot tell).
    let checkpoint = dir.path().join("anchor").join("audit.checkpoint");
    let with_checkpoint = |log: &Path, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_llamagate"))
            .args(["audit", "verify", "--checkpoint"])
            .arg(&checkpoint)
            .args(extra)
            .arg(log)
            .output()
            .unwrap();
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let (ok, out) = with_checkpoint(&audit_path, &["--expect-from", "0"]);
    assert!(ok && out.contains("matches the checkpoint at seq 18"), "{out}");
    write(&lines[..lines.len() - 2]);
    assert!(verify(&[&tampered]).0, "a shortened chain is still a chain");
    let (ok, out) = with_checkpoint(&tampered, &[]);
    assert!(!ok && out.contains("the newest records were removed"), "{out}");
    write(&lines[3..]);
    let (ok, out) = with_checkpoint(&tampered, &[]);
    assert!(!ok && out.contains("the oldest records were removed"), "{out}");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_lose_no_record() {
    let (dir, audit_path, server, good) = audited_server();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let url = server.url("/v1/models");
    let requests = (0..1000).map(|i| {
        let (client, url, good) = (client.clone(), url.clone(), good.clone());
        tokio::spawn(async move {
            // Every tenth request is refused (no token): refusals are audited too.
            let request = client.get(&url);
            let request = if i % 10 == 0 { request } else { request.bearer_auth(&good) };
            request.send().await.unwrap().status().as_u16()
        })
    });
    let statuses = futures::future::join_all(requests).await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    let refused = statuses.iter().filter(|s| matches!(s, Ok(401))).count();
    assert_eq!((ok, refused), (900, 100));

    let log = records(&audit_path, 2 * ok + refused);
    let count = |event: &str| log.iter().filter(|r| r["event"] == event).count();
    assert_eq!(count("inference_request"), ok);
    assert_eq!(count("inference_response"), ok);
    assert_eq!(count("security_invalid_token"), refused);
    assert_eq!(log.len(), 2 * ok + refused);

    // The metrics agree with the log: answers by route and status, audit records written, none dropped.
    let operator = token(dir.path(), &server.base, &["--scope", "llamagate_operator"]);
    let metrics = client.get(server.url("/metrics")).bearer_auth(&operator).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let line = |prefix: &str| {
        metrics.lines().find(|l| l.starts_with(prefix)).map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let models = r#"llamagate_http_requests_total{method="GET",route="/v1/models",status="#;
    assert_eq!(line(&format!("{models}\"200\"}}")).as_deref(), Some("900"), "{metrics}");
    assert_eq!(line(&format!("{models}\"401\"}}")).as_deref(), Some("100"), "{metrics}");
    let refusals = r#"llamagate_auth_refusals_total{reason="no_token"}"#;
    assert_eq!(line(refusals).as_deref(), Some("100"), "refusals by reason: {metrics}");
    let written: usize = line("llamagate_audit_records_written_total").unwrap().parse().unwrap();
    assert!(written >= log.len(), "{metrics}");
    assert_eq!(line("llamagate_audit_records_dropped_total").as_deref(), Some("0"), "{metrics}");
    drop(server);
    let (verified, out) = verify(&[&audit_path]);
    assert!(verified, "{out}");
}

/// A client that gives up on a plain (non-streamed) completion mid-generation: the request still gets
/// its closing record with the real token counts (which are what its budget is charged). hyper lets such a
/// request run to its end (200, as here) unless it drops it, in which case the audit layer closes it
/// itself (499, `cancelled`, the tokens generated until then).
#[tokio::test]
async fn an_abandoned_plain_completion_is_closed_in_the_audit_and_charged_what_it_generated() {
    let (_dir, audit_path, server, good) = audited_server();
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    // A stop string that never comes and a long budget: the generation outlives the client.
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 900, "temperature": 0, "stop": ["@@@@"]});
    let url = server.url("/v1/chat/completions");
    let sent = impatient.post(&url).bearer_auth(&good).json(&body).send().await;
    assert!(sent.is_err(), "the client gave up before the answer");

    let log = records(&audit_path, 2);
    let closing = log.iter().find(|r| r["event"] == "inference_response").expect("a closing record");
    let (status, finish_reason) = (closing["status"].as_u64(), closing["finish_reason"].as_str());
    assert!(
        matches!((status, finish_reason), (Some(200), Some("stop" | "length")) | (Some(499), Some("cancelled"))),
        "{closing}"
    );
    let generated = closing["completion_tokens"].as_u64().unwrap();
    assert!(generated > 0, "tokens generated before the client left are recorded: {closing}");
}

/// With no sink configured, records go to `inference_audit.log` beside the config file (the design's
/// default), readable by the server's user only.
#[tokio::test]
async fn without_a_configured_sink_the_audit_goes_to_a_private_file_beside_the_config() {
    use std::os::unix::fs::PermissionsExt;
    // An authorization server that is not there: the server starts anyway (503 until it answers).
    let oauth = "oauth_config:\n  auth_server_uri: http://127.0.0.1:9\n  stack_uri: http://127.0.0.1:8321\n  \
                 allow_insecure_http: true\n";
    let server = crate::support::Server::start_with_config(0, oauth, None);
    let answer = server.client.get(server.url("/v1/models")).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let path = server.config_dir().join("inference_audit.log");
    let log = records(&path, 1);
    assert_eq!(log[0]["event"], "security_invalid_token", "{log:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

/// With `on_full: fail_closed`, a sink that stops taking records (here stdout, whose reader has gone:
/// every write fails with a broken pipe) makes the server refuse requests with 503 instead of serving
/// them unaudited.
#[tokio::test]
async fn a_failing_sink_under_fail_closed_refuses_requests_rather_than_serve_them_unaudited() {
    use std::io::BufRead;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n\
         oauth_config:\n  audit:\n    stdout: true\n    on_full: fail_closed\n",
        default_model().display()
    );
    std::fs::write(dir.path().join("stack.yaml"), yaml).unwrap();
    let mut child = Command::new(dev::bin())
        .args(["--threads", "1", "serve", "--config", "stack.yaml", "--dev", "--port", "0"])
        .current_dir(dir.path())
        .env_remove("LLAMAGATE_DEV_KEY_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // The reader is gone now: the audit's stdout sink fails from here on.
    let base = line.trim().strip_prefix("llamagate listening on ").unwrap().to_string();
    let good = token(dir.path(), &base, &[]);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let response = client.get(format!("{base}/v1/models")).bearer_auth(&good).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if statuses.ends_with(&[503, 503, 503]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let first_refusal = statuses.iter().position(|&s| s == 503).unwrap_or_else(|| panic!("{statuses:?}"));
    assert!(statuses[first_refusal..].iter().all(|&s| s == 503), "nothing served once the sink failed: {statuses:?}");
}

/// `audit.record_prompts: true` puts the prompt into the closing record, cut to 4 KiB; by default
/// (the scripted run above) no prompt text reaches the log.
#[tokio::test]
async fn prompts_are_recorded_only_when_asked_and_cut_to_four_kilobytes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.log");
    write_config(dir.path(), &audit_path);
    let config = std::fs::read_to_string(dir.path().join("stack.yaml")).unwrap();
    let config = config.replace("  audit:\n", "  audit:\n    record_prompts: true\n");
    std::fs::write(dir.path().join("stack.yaml"), config).unwrap();
    let server = start(dir.path());
    let good = token(dir.path(), &server.base, &[]);
    let client = reqwest::Client::new();
    let long = format!("Repeat after me: {}", "é".repeat(5_000));
    // The second is longer than the model's context (400): its closing record still holds its prompt.
    for (content, status) in [("Say hi to the auditors", 200), (long.as_str(), 400)] {
        let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": content}], "max_tokens": 1});
        let answer = client.post(server.url("/v1/chat/completions")).bearer_auth(&good).json(&body).send().await;
        assert_eq!(answer.unwrap().status(), status);
    }
    let log = records(&audit_path, 4);
    let prompts: Vec<&str> =
        log.iter().filter(|r| r["event"] == "inference_response").filter_map(|r| r["prompt"].as_str()).collect();
    assert_eq!(prompts.len(), 2, "{log:#?}");
    assert_eq!(prompts[0], "user: Say hi to the auditors");
    assert!(prompts[1].len() <= 4_096 && prompts[1].ends_with('…'), "{} bytes", prompts[1].len());
    assert!(prompts[1].starts_with("user: Repeat after me: éé"));
    // The refused prompt's record carries the tokens it was counted (and charged) at.
    let refused = log.iter().find(|r| r["event"] == "inference_response" && r["status"] == 400).unwrap();
    assert!(refused["prompt_tokens"].as_u64().unwrap() > 5_000, "{refused}");
    assert_eq!(refused["completion_tokens"], 0, "{refused}");
}
