//! A fault-injecting HTTP proxy in front of a real upstream (llama.cpp's `llama-server`): an axum
//! (hyper) server on a free loopback port that forwards every request to the upstream with `reqwest`
//! and streams the answer back — unless the test scripted a [`ProxyFault`] for it.
//!
//! Faults are taken one per generation request (`POST`), in order; `GET` requests (the health probe's
//! `/models`) pass through untouched, so probes do not eat a script. [`FaultProxy::fail_all`] turns
//! every request, probes included, into one status until it is switched back: an upstream that is
//! down, then recovers. The real server produces the answers, so what the gate sees is a real
//! stream with a real fault in it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// What one generation request meets.
#[derive(Clone, Debug)]
pub enum ProxyFault {
    /// Waits this long, then forwards.
    Delay(Duration),
    /// Answers this status itself (with `Retry-After: 1`); the upstream is not called.
    Status(u16),
    /// Forwards, then breaks the connection after this many bytes of the answer's body (once the status
    /// line and those bytes were sent: the answer has started).
    ResetAfter(usize),
    /// Forwards, and puts bytes that are not UTF-8 into the answer's body once this many bytes passed.
    GarbageAfter(usize),
}

#[derive(Default)]
struct ProxyState {
    upstream: String,
    faults: Mutex<VecDeque<ProxyFault>>,
    fail_all: Mutex<Option<u16>>,
    /// Generation requests (`POST`) received, faulted or not.
    requests: AtomicUsize,
    /// Other requests (`GET`: health probes) received.
    probes: AtomicUsize,
    /// The JSON bodies forwarded to the upstream, in order.
    forwarded: Mutex<Vec<serde_json::Value>>,
    client: reqwest::Client,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>/v1`: the upstream's `/v1` behind the proxy.
    pub base_url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream_base_url` (`http://host:port/v1`).
    pub async fn start(upstream_base_url: &str) -> Self {
        let upstream = upstream_base_url.trim_end_matches("/v1").to_string();
        let state = Arc::new(ProxyState { upstream, ..ProxyState::default() });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, state, task }
    }

    /// Adds faults for the next generation requests.
    pub fn push(&self, faults: &[ProxyFault]) {
        self.state.faults.lock().unwrap().extend(faults.iter().cloned());
    }

    /// Answers every request (probes included) with `status`, or, with `None`, forwards again.
    pub fn fail_all(&self, status: Option<u16>) {
        *self.state.fail_all.lock().unwrap() = status;
    }

    /// Generation requests (`POST`) received so far, faulted or forwarded.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Other requests (health probes) received so far.
    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    /// The JSON bodies forwarded to the upstream so far.
    pub fn forwarded(&self) -> Vec<serde_json::Value> {
        self.state.forwarded.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes that break any parser of the answer: not UTF-8, not JSON, not an SSE field.
const GARBAGE: &[u8] = b"\xff\xfe\x00garbage\x01\n\n";

fn refusal(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body = r#"{"error":{"message":"injected by the fault proxy"}}"#;
    (status, [(header::RETRY_AFTER, "1"), (header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let generation = request.method() == axum::http::Method::POST;
    let counter = if generation { &state.requests } else { &state.probes };
    counter.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *state.fail_all.lock().unwrap() {
        return refusal(status);
    }
    let (parts, body) = request.into_parts();
    let fault = if generation { state.faults.lock().unwrap().pop_front() } else { None };
    let mut after = None;
    match fault {
        Some(ProxyFault::Status(status)) => return refusal(status),
        Some(ProxyFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(fault) => after = Some(fault),
        None => {}
    }
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    if let Ok(json) = serde_json::from_slice(&body) {
        state.forwarded.lock().unwrap().push(json);
    }
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream = state.client.request(parts.method.clone(), format!("{}{path}", state.upstream)).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        // The body may change length, so it is sent chunked.
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let mut upstream_body = answer.bytes_stream();
    let stream = async_stream::stream! {
        let mut passed = 0usize;
        let mut injected = false;
        while let Some(frame) = upstream_body.next().await {
            let Ok(frame) = frame else {
                yield Err(std::io::Error::other("the upstream broke off"));
                return;
            };
            match &after {
                Some(ProxyFault::ResetAfter(limit)) if passed + frame.len() >= *limit => {
                    yield Ok(frame.slice(..limit - passed));
                    // A pause lets hyper put the status line and those bytes on the wire (it writes when
                    // the body is pending), so the break comes after the answer started; then an error
                    // ends the body without its last chunk: the client sees a broken connection.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    yield Err(std::io::Error::other("reset by the fault proxy"));
                    return;
                }
                Some(ProxyFault::GarbageAfter(limit)) if !injected && passed + frame.len() >= *limit => {
                    passed += frame.len();
                    injected = true;
                    yield Ok(frame);
                    yield Ok(Bytes::from_static(GARBAGE));
                }
                _ => {
                    passed += frame.len();
                    yield Ok::<Bytes, std::io::Error>(frame);
                }
            }
        }
    };
    response.body(Body::from_stream(stream)).unwrap()
}
