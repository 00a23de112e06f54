//! The edge against hostile request lines, on the real binary: made-up methods are refused before any
//! state and never become metric labels, a huge path is cut before it reaches an audit record, and the
//! operator routes need the operator scope besides a valid token.

use std::path::Path;

use serde_json::Value;

use crate::support::dev::{self, token};
use crate::support::{Server, assert_error};

/// Sends a raw request line over TCP (reqwest refuses most made-up methods) and returns the status.
async fn raw_status(base: &str, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn made_up_methods_are_refused_and_never_become_metric_labels() {
    let server = Server::start();
    for i in 0..200 {
        let method = format!("X{}{i}", "M".repeat(2_000));
        assert_eq!(raw_status(&server.base, &method, &format!("/nope/{i}")).await, 501);
    }
    let response = server.client.request(reqwest::Method::from_bytes(b"BREW").unwrap(), server.url("/v1/models"));
    let response = response.send().await.unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json::<Value>().await.unwrap(), 501);

    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let request_lines: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("llamagate_http_requests_total{")).collect();
    assert!(request_lines.len() <= 4, "{request_lines:#?}");
    assert!(metrics.len() < 4_096, "the exposition stays small: {} bytes", metrics.len());
    assert!(!metrics.contains("MMMM") && !metrics.contains("BREW") && !metrics.contains("/nope"), "{metrics}");
}

/// The audit log's lines once at least `at_least` of them contain `event` (the writer runs off the
/// request path, so records land shortly after the answers).
fn audit_records(path: &Path, event: &str, at_least: usize) -> Vec<String> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|line| line.contains(event)).count() >= at_least {
            return text.lines().map(String::from).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("fewer than {at_least} `{event}` records in {}", path.display());
}

#[tokio::test]
async fn a_refusal_record_holds_at_most_a_cut_path_and_operator_routes_need_the_operator_scope() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    dev::write_default_config(dir.path());
    let server = dev::start(dir.path(), 0);
    let client = reqwest::Client::new();

    // A 401 for a 60,000-byte path: its audit record keeps at most a cut copy of it.
    let long_path = format!("/v1/{}", "a".repeat(60_000));
    assert_eq!(raw_status(&server.base, "GET", &long_path).await, 401);
    let audit_log = dir.path().join(".llamagate/audit.log");
    let records = audit_records(&audit_log, "security_invalid_token", 1);
    let refusal = records.iter().find(|r| r.contains("security_invalid_token")).expect("the 401 is audited");
    assert!(refusal.len() <= 1_024, "{} bytes", refusal.len());
    assert!(refusal.contains("aaaa…"), "{refusal}");

    // A valid token without the operator scope: 403 on every operator route, with the challenge.
    let user = token(dir.path(), &server.base, &[]);
    let admin = [
        "/v1alpha/admin/providers",
        "/v1alpha/admin/inspect/routes",
        "/v1alpha/admin/health",
        "/v1alpha/admin/version",
    ];
    let operator_only = ["/metrics", "/v1/providers", "/v1/providers/llamagate", "/v1/inspect/routes", "/openapi.json"];
    for path in operator_only.iter().chain(&admin) {
        let response = client.get(server.url(path)).bearer_auth(&user).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("insufficient_scope") && challenge.contains("llamagate_operator"), "{challenge}");
    }
    // The same caller's own API still works.
    let models = client.get(server.url("/v1/models")).bearer_auth(&user).send().await.unwrap();
    assert_eq!(models.status(), 200);
    // With the operator scope, the operator routes answer.
    let operator = token(dir.path(), &server.base, &["--scope", "llamagate_operator"]);
    for path in ["/metrics", "/v1/providers", "/v1/inspect/routes", "/openapi.json", "/docs/"].iter().chain(&admin) {
        let response = client.get(server.url(path)).bearer_auth(&operator).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // The refusals are audited with the caller's identity.
    let records = audit_records(&audit_log, "security_insufficient_scope", 9);
    let scope_refusals: Vec<&String> = records.iter().filter(|r| r.contains("security_insufficient_scope")).collect();
    assert_eq!(scope_refusals.len(), 9, "{records:#?}");
    assert!(scope_refusals.iter().all(|r| r.contains("\"alice\"")), "{scope_refusals:#?}");

    // A model id of 60,000 bytes (the client's text, noted before the model is looked up): its audit
    // record keeps a cut copy.
    let huge_model = "m".repeat(60_000);
    let chat = serde_json::json!({"model": huge_model, "messages": [{"role": "user", "content": "hi"}]});
    let response = client.post(server.url("/v1/chat/completions")).bearer_auth(&user).json(&chat).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let records = audit_records(&audit_log, "\"status\":404", 1);
    let record = records.iter().find(|r| r.contains("\"status\":404")).unwrap();
    assert!(record.len() <= 1_024, "{} bytes", record.len());
}

/// Opens a connection to `base` from the loopback address `from` (the host has all of 127/8).
async fn connect_from(from: &str, base: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(base.trim_start_matches("http://").parse().unwrap()).await.unwrap()
}

/// Whether the server closed `stream` (reads end) within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an answer (408, say) before the close
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn half_sent_requests_are_closed_and_one_peer_cannot_hold_every_connection() {
    use tokio::io::AsyncWriteExt;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    dev::write_config_with_server_keys(dir.path(), "  header_read_timeout_seconds: 1\n  max_connections_per_ip: 20\n");
    let server = dev::start(dir.path(), 0);

    // Twenty half-sent requests from one address: each holds a place until the header timeout.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = connect_from("127.0.0.2", &server.base).await;
        stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(stream);
    }
    // The twenty-first from that address is closed at once; another address is served meanwhile.
    let mut extra = connect_from("127.0.0.2", &server.base).await;
    assert!(closed_within(&mut extra, std::time::Duration::from_millis(500)).await, "over the per-address cap");
    let health = reqwest::get(server.url("/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    // The half-sent ones are closed by the header timeout (1 s here).
    for stream in &mut slow {
        assert!(closed_within(stream, std::time::Duration::from_secs(5)).await, "closed after the header timeout");
    }
    // Their places are free again.
    let mut again = connect_from("127.0.0.2", &server.base).await;
    again.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut again, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// An address that keeps sending refused credentials is answered 429 for a while without its
/// credentials being read; other addresses are not affected.
#[tokio::test]
async fn an_address_that_keeps_failing_authentication_is_refused_unread() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    dev::write_config_with_server_keys(dir.path(), "  max_auth_failures_per_minute_per_ip: 5\n");
    let server = dev::start(dir.path(), 0);
    let good = token(dir.path(), &server.base, &[]);
    let from = |address: &str| {
        let address: std::net::IpAddr = address.parse().unwrap();
        reqwest::Client::builder().local_address(address).build().unwrap()
    };
    let (guesser, neighbour) = (from("127.0.0.2"), from("127.0.0.3"));
    let status = |client: &reqwest::Client, token: &str| {
        let request = client.get(server.url("/v1/models")).bearer_auth(token.to_string());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for i in 0..6 {
        assert_eq!(status(&guesser, &format!("guess-{i}")).await, 401, "refusal {i}");
    }
    let response = guesser.get(server.url("/v1/models")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(response.status(), 429, "even a good token is not read now");
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(status(&neighbour, &good).await, 200, "another address is served");
    assert_eq!(status(&neighbour, "guess").await, 401);
}
