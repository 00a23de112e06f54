//! The audit trail, wired: which HTTP outcomes become which audit records, and when.
//!
//! Two layers around authentication (see `app::router`):
//! - [`record_outcome`], outside authentication, gives each request an id and an [`AuditContext`]
//!   and, once the answer is known, records refusals (`security_*`) and — when the response body has
//!   been fully sent or dropped (a streamed completion ends long after its handler returns) — the
//!   `inference_response` with status, token counts, finish reason and latency;
//! - [`record_request`], inside authentication, records `inference_request` for every authenticated
//!   request before any handler runs. With `on_full: fail_closed` a request whose record cannot be
//!   queued is refused with 503 before it reaches the engine.
//!
//! Handlers add what only they know (model, real token counts) through the [`AuditContext`] in the
//! request's extensions. Records never hold the token or, unless configured, the prompt.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llamagate_authz::audit::Outcome;
use llamagate_authz::audit::Severity;
use llamagate_authz::{AuditEvent, AuditLog, AuditRecord, Principal, Tiers};

use crate::error::ApiError;

/// The header carrying the request id, echoed on every answer and written into every record.
pub const REQUEST_ID: &str = "x-request-id";

/// What the audit layers need: the log, and the tier rules to name each caller's tier (the same
/// resolution the rate limiter uses, also when limiting is off).
#[derive(Clone, Debug)]
pub struct AuditTrail {
    /// The log records go to.
    pub log: AuditLog,
    /// Picks a caller's tier from its token.
    pub tiers: Arc<Tiers>,
}

impl AuditTrail {
    fn identify(&self, record: AuditRecord, principal: &Principal) -> AuditRecord {
        let mut record = record.with_principal(principal);
        record.tier = Some(self.tiers.resolve(principal).name);
        record
    }
}

/// Why authentication refused a request; put on the response by the authentication layer so the
/// audit record can name the reason class without reading the body.
#[derive(Clone, Copy, Debug)]
pub struct AuthRefusal(pub &'static str);

/// What a handler learned that belongs in the request's audit records.
#[derive(Debug, Default)]
struct Details {
    principal: Option<Principal>,
    model: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    finish_reason: Option<String>,
    safety_refusal: Option<String>,
    error: Option<String>,
}

/// Per-request notes for the audit trail; shared by the layers, the handler and a streaming body.
#[derive(Clone, Debug, Default)]
pub struct AuditContext(Arc<Mutex<Details>>);

impl AuditContext {
    fn with<R>(&self, f: impl FnOnce(&mut Details) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update; the notes are still usable.
        let mut details = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut details)
    }

    /// The model the request asked for.
    pub fn set_model(&self, model: &str) {
        self.with(|d| d.model = Some(model.to_string()));
    }

    /// The engine's real counts and why generation ended.
    pub fn set_usage(&self, prompt_tokens: u64, completion_tokens: u64, finish_reason: &str) {
        self.with(|d| {
            d.prompt_tokens = Some(prompt_tokens);
            d.completion_tokens = Some(completion_tokens);
            d.finish_reason = Some(finish_reason.to_string());
        });
    }

    /// A failure after the response started (e.g. the engine failed mid-stream).
    pub fn set_error(&self, error: &str) {
        self.with(|d| d.error = Some(error.to_string()));
    }

    /// A content-safety refusal: the violated categories (comma-joined), written as the
    /// `security_safety_refusal` record's reason.
    pub fn set_safety_refusal(&self, categories: &str) {
        self.with(|d| d.safety_refusal = Some(categories.to_string()));
    }
}

/// Outermost audit layer: request id, context, refusal records and the response record.
pub async fn record_outcome(State(trail): State<AuditTrail>, mut request: Request, next: Next) -> Response {
    let log = trail.log.clone();
    let started = Instant::now();
    let request_id = request_id(&request);
    let route = format!("{} {}", request.method(), request.uri().path());
    let context = AuditContext::default();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    request.extensions_mut().insert(context.clone());

    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status();
    let base = |event, outcome| {
        let mut record = AuditRecord::new(event, outcome);
        record.request_id = Some(request_id.clone());
        record.route = Some(route.clone());
        record.status = Some(status.as_u16());
        record
    };

    let Some(principal) = context.with(|d| d.principal.clone()) else {
        // Not authenticated: a refusal by the authentication layer, or a public route (not audited).
        if let Some(AuthRefusal(reason)) = response.extensions().get::<AuthRefusal>().copied() {
            let event = match (status.as_u16(), reason) {
                (503, _) => AuditEvent::SecurityAuthUnavailable,
                (_, "dpop_replay") => AuditEvent::SecurityDpopReplay,
                _ => AuditEvent::SecurityInvalidToken,
            };
            let outcome = if status.is_server_error() { Outcome::Failed } else { Outcome::Refused };
            let mut record = base(event, outcome);
            record.reason = Some(reason.to_string());
            record.latency_ms = Some(elapsed_ms(started));
            write(&log, record);
        }
        return response;
    };

    let refusal = match status {
        StatusCode::FORBIDDEN => Some((AuditEvent::SecurityInsufficientScope, "insufficient_scope".to_string())),
        StatusCode::TOO_MANY_REQUESTS => Some((AuditEvent::SecurityRateLimited, "rate_limited".to_string())),
        _ => context.with(|d| d.safety_refusal.clone()).map(|c| (AuditEvent::SecuritySafetyRefusal, c)),
    };
    if let Some((event, reason)) = &refusal {
        let mut record = trail.identify(base(*event, Outcome::Refused), &principal);
        record.model = context.with(|d| d.model.clone());
        record.reason = Some(reason.clone());
        write(&log, record);
    }

    // Policy refusals are `refused`; any other error (a bad body, an unknown model, a server fault) is
    // `failed`.
    let outcome = if refusal.is_some() {
        Outcome::Refused
    } else if status.is_client_error() || status.is_server_error() {
        Outcome::Failed
    } else {
        Outcome::Allowed
    };
    let mut record = trail.identify(base(AuditEvent::InferenceResponse, outcome), &principal);
    if refusal.is_some() {
        record.severity = Severity::Warn;
    } else if status.is_server_error() {
        record.severity = Severity::Error;
    }
    let pending = PendingResponse { log, record: Some(record), context, started };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(AuditedBody { inner: body, pending }))
}

/// Inner audit layer: the `inference_request` record for an authenticated request, before the
/// handler runs.
pub async fn record_request(State(trail): State<AuditTrail>, request: Request, next: Next) -> Response {
    let (Some(principal), Some(context)) =
        (request.extensions().get::<Principal>().cloned(), request.extensions().get::<AuditContext>().cloned())
    else {
        return next.run(request).await;
    };
    let mut record = trail.identify(AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed), &principal);
    record.request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(String::from);
    record.route = Some(format!("{} {}", request.method(), request.uri().path()));
    context.with(|d| d.principal = Some(principal));
    if trail.log.record(record).is_err() && trail.log.fails_closed() {
        return ApiError::Unavailable("the audit log is not keeping up; try again shortly".into()).into_response();
    }
    next.run(request).await
}

/// The id of this request: the caller's `x-request-id` when it is short and plain, else a new one.
fn request_id(request: &Request) -> String {
    let supplied = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok());
    match supplied {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => format!("req-{:032x}", rand::random::<u128>()),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn write(log: &AuditLog, record: AuditRecord) {
    if let Err(error) = log.record(record) {
        tracing::error!(%error, "audit record dropped");
    }
}

/// The `inference_response` record, written once when the body ends or is dropped.
struct PendingResponse {
    log: AuditLog,
    record: Option<AuditRecord>,
    context: AuditContext,
    started: Instant,
}

impl PendingResponse {
    fn finish(&mut self) {
        let Some(mut record) = self.record.take() else { return };
        let late_refusal = self.context.with(|d| {
            record.model = d.model.clone();
            record.prompt_tokens = d.prompt_tokens;
            record.completion_tokens = d.completion_tokens;
            record.finish_reason = d.finish_reason.clone();
            record.reason = d.error.clone();
            d.safety_refusal.clone()
        });
        record.latency_ms = Some(elapsed_ms(self.started));
        // A stream cut by the output safety check was refused after its status went out: its refusal
        // record is written now, and the response record says `refused` like any other refusal.
        if let Some(categories) = late_refusal.filter(|_| record.decision == Outcome::Allowed) {
            let mut refusal = record.clone();
            refusal.event = AuditEvent::SecuritySafetyRefusal;
            refusal.decision = Outcome::Refused;
            refusal.severity = Severity::Warn;
            refusal.reason = Some(categories);
            refusal.stamp_now();
            write(&self.log, refusal);
            record.decision = Outcome::Refused;
            record.severity = Severity::Warn;
        }
        record.stamp_now();
        write(&self.log, record);
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        // A generation cut short has already noted `cancelled` through its usage report (the body,
        // which owns the generation, is dropped before this).
        self.finish();
    }
}

/// A response body that writes its request's `inference_response` record when it ends (or, if the
/// client went away first, when it is dropped).
struct AuditedBody {
    inner: Body,
    pending: PendingResponse,
}

impl HttpBody for AuditedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body that reports its end, so the end is either `None` or the last frame.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.pending.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
