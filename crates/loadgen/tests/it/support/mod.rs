//! A fake OpenAI-compatible endpoint for the tool's own tests: what it answers depends on the bearer
//! token, so a test can make some tenants fail in known ways, and it counts what it received so the
//! tool's report can be checked against the server's side.
//!
//! Tokens: none or `bad` → 401, `noscope` → 403, `limited` → 429, `busy` → 503, `boom` → 500,
//! `halfway` → 429 on every second request, `cut` → a stream that stops before `[DONE]`, `broken` →
//! a stream with an error event, anything else → 200. Streams send a role chunk, then
//! [`TEXT_CHUNKS`] text chunks [`GAP`] apart after a [`FIRST_DELAY`], then usage (unless the token is
//! `nousage`) and `[DONE]`; a stream the client hangs up on is counted in [`Seen::abandoned`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use llamagate_loadgen::scenario::TenantSpec;
use serde_json::{Value, json};

/// A tenant that sends a fixed token (or none).
pub fn tenant(tier: &str, weight: f64, token: Option<&str>) -> TenantSpec {
    TenantSpec { token: token.map(str::to_string), ..TenantSpec::named(tier, weight) }
}

/// Text chunks per streamed answer.
pub const TEXT_CHUNKS: usize = 4;
/// Delay before the first text chunk.
pub const FIRST_DELAY: Duration = Duration::from_millis(40);
/// Delay between text chunks.
pub const GAP: Duration = Duration::from_millis(10);
/// `usage.completion_tokens` reported (deliberately not the chunk count, to see which one is used).
pub const USAGE_TOKENS: u64 = 5;

/// What the fake server saw.
#[derive(Default)]
pub struct Seen {
    /// Requests per token (`""` for none).
    pub by_token: Mutex<HashMap<String, u64>>,
    /// Bodies received (the last 1000).
    pub bodies: Mutex<Vec<Value>>,
    /// The size of each body received, in bytes (the first 1000).
    pub body_sizes: Mutex<Vec<usize>>,
    /// Streams dropped before their last event: the client went away.
    pub abandoned: AtomicU64,
    halfway: AtomicU64,
}

impl Seen {
    /// Requests that carried this token.
    pub fn count(&self, token: &str) -> u64 {
        self.by_token.lock().unwrap().get(token).copied().unwrap_or(0)
    }
    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_token.lock().unwrap().values().sum()
    }
}

/// A running fake server.
pub struct Fake {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// What it saw.
    pub seen: Arc<Seen>,
}

/// Starts the fake server on a free port, in the current runtime.
pub async fn start() -> Fake {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/v1/completions", post(handle))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url, seen }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": { "message": message } }))).into_response()
}

async fn handle(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    *seen.by_token.lock().unwrap().entry(token.clone()).or_default() += 1;
    {
        let mut sizes = seen.body_sizes.lock().unwrap();
        if sizes.len() < 1000 {
            sizes.push(body.len());
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    {
        let mut bodies = seen.bodies.lock().unwrap();
        if bodies.len() < 1000 {
            bodies.push(body.clone());
        }
    }
    match token.as_str() {
        "" | "bad" => return error(StatusCode::UNAUTHORIZED, "invalid_token"),
        "noscope" => return error(StatusCode::FORBIDDEN, "insufficient_scope"),
        "limited" => return error(StatusCode::TOO_MANY_REQUESTS, "rate limited"),
        "busy" => return error(StatusCode::SERVICE_UNAVAILABLE, "engine busy"),
        "boom" => return error(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        "halfway" if seen.halfway.fetch_add(1, Ordering::SeqCst) % 2 == 1 => {
            return error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        }
        _ => {}
    }
    let chat = body.get("messages").is_some();
    if body["stream"] != json!(true) {
        let choice = if chat {
            json!({ "index": 0, "message": { "role": "assistant", "content": "a b c" }, "finish_reason": "stop" })
        } else {
            json!({ "index": 0, "text": "a b c", "finish_reason": "stop" })
        };
        return axum::Json(json!({ "choices": [choice], "usage": { "completion_tokens": 3 } })).into_response();
    }
    stream(token, chat, seen)
}

/// Counts a stream as abandoned when it is dropped before its last event was taken.
struct Watch {
    seen: Arc<Seen>,
    finished: bool,
}

impl Watch {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The streamed answer as a body that sleeps between events.
fn stream(token: String, chat: bool, seen: Arc<Seen>) -> Response {
    let text = |t: &str| {
        if chat {
            json!({ "choices": [{ "index": 0, "delta": { "content": t } }] })
        } else {
            json!({ "choices": [{ "index": 0, "text": t }] })
        }
    };
    let mut events: Vec<(Duration, String)> = Vec::new();
    if chat {
        events.push((
            Duration::ZERO,
            json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "content": "" } }] }).to_string(),
        ));
    }
    for i in 0..TEXT_CHUNKS {
        events.push((if i == 0 { FIRST_DELAY } else { GAP }, text(&format!("t{i} ")).to_string()));
    }
    match token.as_str() {
        "cut" => {}
        "broken" => events.push((Duration::ZERO, json!({ "error": { "message": "engine failed" } }).to_string())),
        other => {
            if other != "nousage" {
                events.push((
                    Duration::ZERO,
                    json!({ "choices": [], "usage": { "completion_tokens": USAGE_TOKENS } }).to_string(),
                ));
            }
            events.push((Duration::ZERO, "[DONE]".to_string()));
        }
    }
    let watch = Watch { seen, finished: false };
    let body = futures::stream::unfold((events.into_iter(), watch), |(mut events, mut watch)| async move {
        let Some((delay, data)) = events.next() else {
            watch.finish();
            return None;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, Infallible>(Bytes::from(format!("data: {data}\n\n"))), (events, watch)))
    });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(body)).into_response()
}
