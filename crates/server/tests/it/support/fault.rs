//! A fault-injecting OpenAI-compatible upstream: an axum server on a free loopback port that answers each
//! request with the next scripted [`Fault`], or, once the script is spent, with a well-formed answer of
//! three pieces and `usage` (a stream or one body, as the request's `stream` asks). It counts the requests it received, so tests can tell how often llamagate
//! tried.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// What one request gets.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status, an error body whose message names an address and a key (which must not reach the
    /// client), and `Retry-After: 1`.
    Status(u16),
}

/// The text of a well-formed answer's pieces.
pub const PIECES: [&str; 3] = ["Par", "is", "."];

#[derive(Default)]
struct Script {
    faults: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    /// The `Authorization` header of each request, in order (empty when absent).
    authorizations: Mutex<Vec<String>>,
}

/// The running upstream; stops when dropped.
pub struct FaultyUpstream {
    /// `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    /// Starts it with `faults` for the first requests.
    pub async fn start(faults: &[Fault]) -> Self {
        let script = Arc::new(Script { faults: Mutex::new(faults.iter().cloned().collect()), ..Script::default() });
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/completions", post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, script, task }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.script.requests.load(Ordering::SeqCst)
    }

    /// The `Authorization` header of each request received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.script.authorizations.lock().unwrap().clone()
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

async fn answer(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    body: axum::Json<serde_json::Value>,
) -> Response {
    let streamed = body["stream"] == serde_json::json!(true);
    script.requests.fetch_add(1, Ordering::SeqCst);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    script.authorizations.lock().unwrap().push(authorization.to_string());
    let fault = script.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Status(code)) => {
            let body =
                r#"{"error":{"message":"overloaded at http://10.9.8.7:8000/v1 with key sk-upstream-test-7c1f9e2d4b"}}"#;
            let status = StatusCode::from_u16(code).unwrap();
            (status, [(header::RETRY_AFTER, "1"), (header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        None if !streamed => {
            let content = PIECES.concat();
            axum::Json(serde_json::json!({
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            }))
            .into_response()
        }
        None => {
            let mut events: String = PIECES.iter().map(|piece| chunk(piece)).collect();
            events.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
            events.push_str(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n",
            );
            events.push_str("data: [DONE]\n\n");
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from(events)).into_response()
        }
    }
}
