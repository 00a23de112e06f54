//! Sending one request and measuring it.
//!
//! One [`reqwest::Client`] (one connection pool) serves the whole run: connections are kept alive and
//! reused, as a real client fleet behind a load balancer would, so the numbers measure the server
//! and not TCP handshakes. Nagle's algorithm is off so small SSE chunks are not delayed on our side.
//!
//! A response is read to its end in every case — error bodies too — so the connection returns to
//! the pool and the latency covers the whole answer. The exception is a tenant that hangs up on
//! purpose (`disconnect_after`): its request is dropped mid-way, which closes its connection, as a
//! browser tab closed in the middle of an answer does.
//!
//! A request that fails before any byte of an answer — a refused connection, or a pooled keep-alive
//! connection the server had already closed ("connection closed before message completed", seen on
//! llama.cpp's server at 8 concurrent streams) — is sent again, up to [`MAX_RESENDS`] times, and counted
//! (`resent` in the report): such a failure says nothing about the server under test, and a real client
//! retries it too.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use crate::scenario::{Disconnect, Plan};
use crate::sse::{SseParser, StreamError, StreamEvent, StreamTally, Usage};
use crate::stats::{Class, Failure, Outcome};

/// Sends requests to one endpoint.
#[derive(Clone)]
pub struct LoadClient {
    http: reqwest::Client,
    url: String,
    stream: bool,
}

/// A non-streamed completion's body (only what we read).
#[derive(Deserialize)]
struct PlainBody {
    #[serde(default)]
    usage: Option<Usage>,
}

impl LoadClient {
    /// A client for the plan's endpoint.
    pub fn new(plan: &Plan) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(plan.timeout)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .user_agent(concat!("llamagate-load/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, url: format!("{}{}", plan.url, plan.api.path()), stream: plan.stream })
    }

    /// Sends one request and reports how it went; `run_start` anchors `finished_at`. With
    /// `disconnect`, the request is abandoned at that point unless it was complete by then.
    pub async fn send(
        &self,
        tenant: usize,
        authorization: Option<&HeaderValue>,
        body: Vec<u8>,
        disconnect: Option<Disconnect>,
        run_start: Instant,
    ) -> Outcome {
        let started = Instant::now();
        let mut request =
            self.http.post(&self.url).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut outcome = Outcome {
            tenant,
            class: Class::Transport,
            status: None,
            finished_at: Duration::ZERO,
            latency: Duration::ZERO,
            ttft: None,
            inter_token: Vec::new(),
            output_tokens: 0,
            error: None,
            resent: 0,
        };
        let first_token = disconnect == Some(Disconnect::FirstToken);
        let exchange = self.exchange(request, started, first_token, &mut outcome);
        match disconnect {
            Some(Disconnect::After(after)) => {
                // Dropping the unfinished exchange drops its connection: the server sees the hang-up.
                if tokio::time::timeout(after, exchange).await.is_err() {
                    outcome.class = Class::Disconnected;
                    outcome.error = None;
                }
            }
            _ => exchange.await,
        }
        let finished = Instant::now();
        outcome.latency = finished.saturating_duration_since(started);
        outcome.finished_at = finished.saturating_duration_since(run_start);
        outcome
    }

    /// Sends the request and reads its answer into `outcome`; with `first_token`, stops reading (and
    /// drops the connection) after the first text chunk of a stream.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        started: Instant,
        first_token: bool,
        outcome: &mut Outcome,
    ) {
        let sent = loop {
            // The body is bytes, so the request always clones.
            let Some(attempt) = request.try_clone() else { break request.send().await };
            match attempt.send().await {
                Err(e) if outcome.resent < MAX_RESENDS && unanswered(&e) => outcome.resent += 1,
                sent => break sent,
            }
        };
        match sent {
            Err(e) => outcome.error = Some(describe(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                outcome.status = Some(status);
                outcome.class = Class::of_status(status);
                if outcome.class != Class::Ok {
                    // Drain the body so the connection can be reused; its text is the error message.
                    let text = response.text().await.unwrap_or_default();
                    outcome.error = Some(http_failure(status, &text));
                } else if self.stream {
                    read_stream(response, started, first_token, outcome).await;
                } else {
                    read_plain(response, outcome).await;
                }
            }
        }
    }
}

/// Sends of one request after the first, at most, when it fails before any answer byte.
pub const MAX_RESENDS: u32 = 2;

/// Whether `e` failed the request before any byte of an answer arrived: the connection was refused, or
/// a reused connection turned out closed before the response began.
fn unanswered(e: &reqwest::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains("connection closed before message completed") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Reads a whole non-streamed answer; the token count is its `usage.completion_tokens`.
async fn read_plain(response: reqwest::Response, outcome: &mut Outcome) {
    match response.bytes().await {
        Err(e) => {
            outcome.class = Class::Transport;
            outcome.error = Some(describe(&e));
        }
        Ok(bytes) => match serde_json::from_slice::<PlainBody>(&bytes) {
            Ok(body) => outcome.output_tokens = body.usage.and_then(|u| u.completion_tokens).unwrap_or(0),
            Err(e) => {
                outcome.class = Class::Transport;
                outcome.error = Some(Failure::new("unreadable body", e.to_string()));
            }
        },
    }
}

/// Reads an SSE answer chunk by chunk, timing each text chunk as it arrives; with `first_token`,
/// hangs up (drops the response) as soon as one text chunk has arrived.
async fn read_stream(mut response: reqwest::Response, started: Instant, first_token: bool, outcome: &mut Outcome) {
    let mut parser = SseParser::new();
    let mut tally = StreamTally::new(started);
    let mut failure: Option<StreamError> = None;
    loop {
        if first_token && tally.ttft().is_some() && !tally.is_done() {
            outcome.class = Class::Disconnected;
            outcome.ttft = tally.ttft();
            outcome.output_tokens = tally.output_tokens();
            return;
        }
        match response.chunk().await {
            Err(e) => {
                outcome.class = Class::Transport;
                outcome.error = Some(describe(&e));
                break;
            }
            Ok(None) => break,
            Ok(Some(bytes)) => {
                let now = Instant::now();
                parser.push(&bytes, |data| {
                    if failure.is_none() && !tally.is_done() {
                        match tally.on_data(data, now) {
                            Ok(StreamEvent::Quiet | StreamEvent::Text | StreamEvent::Done) => {}
                            Err(e) => failure = Some(e),
                        }
                    }
                });
            }
        }
    }
    outcome.ttft = tally.ttft();
    outcome.output_tokens = tally.output_tokens();
    if outcome.class != Class::Ok {
        return;
    }
    match failure {
        Some(StreamError::Server(message)) => {
            outcome.class = Class::Transport;
            outcome.error = Some(Failure::new("error event in stream", truncate(&message)));
        }
        Some(StreamError::Malformed(message)) => {
            outcome.class = Class::Transport;
            outcome.error = Some(Failure::new("malformed stream chunk", message));
        }
        None if !tally.is_done() => {
            outcome.class = Class::Transport;
            outcome.error = Some(Failure::new("stream ended without [DONE]", ""));
        }
        None => outcome.inter_token = tally.into_gaps(),
    }
}

/// The error body's `error.type` (OpenAI and Llama Stack envelopes), e.g. `rate_limit_exceeded`.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// An error status, grouped by status and the body's `error.type` (not its message, which may hold
/// request-specific details such as a retry time).
fn http_failure(status: u16, body: &str) -> Failure {
    let kind = match serde_json::from_str::<ErrorEnvelope>(body).ok().and_then(|e| e.error.kind) {
        Some(kind) => format!("HTTP {status} {kind}"),
        None => format!("HTTP {status}"),
    };
    Failure::new(kind, first_line(body))
}

/// A reqwest error in one line, with its kind (timeouts and refused connections read differently).
fn describe(e: &reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Failure::new(kind, truncate(&message))
}

fn first_line(text: &str) -> String {
    truncate(text.lines().next().unwrap_or_default())
}

/// Keeps error messages short enough for a report line.
fn truncate(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_failures_group_by_status_and_error_type() {
        let body = r#"{"error":{"code":"429","message":"Retry in 5 s.","type":"rate_limit_exceeded"}}"#;
        let failure = http_failure(429, body);
        assert_eq!(failure.kind, "HTTP 429 rate_limit_exceeded");
        assert_eq!(failure.detail, body);
        assert_eq!(http_failure(401, r#"{"error":{"message":"no"}}"#).kind, "HTTP 401");
        assert_eq!(http_failure(502, "<html>bad gateway</html>").kind, "HTTP 502");
    }
}
