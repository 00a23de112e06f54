//! The audit trail, wired: which HTTP outcomes become which audit records, and when.
//!
//! Two layers around authentication (see [`crate::http::router::router`]):
//! - [`record_outcome`], outside authentication, gives each request an id and an [`AuditNotes`]
//!   and, once the answer is known, records refusals (`security_*`) and — when the response body has
//!   been fully sent or dropped (a streamed completion ends long after its handler returns) — the
//!   `inference_response` with status, token counts, finish reason and latency;
//! - [`record_request`], inside authentication, records `inference_request` for every authenticated
//!   request before any handler runs. With `on_full: fail_closed` a request whose record cannot be
//!   queued is refused with 503 before it reaches the engine.
//!
//! The layers inside add what only they know (the caller, the model, real token counts) through the
//! [`AuditNotes`] in the request's extensions. Records never hold the token or, unless configured, the prompt.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llamagate_authz::audit::Outcome;
use llamagate_authz::audit::Severity;
use llamagate_authz::{AuditEvent, AuditLog, AuditRecord, Principal};

use crate::gate::audit_notes::{AuditNotes, AuthRefusal};
use crate::gate::caller::Caller;
use crate::gate::edge::bounded;
use crate::http::error::ApiError;

/// The header carrying the request id, echoed on every answer and written into every record.
pub const REQUEST_ID: &str = "x-request-id";

/// `record` with the caller's identity and tier (as the authentication layer resolved it, the same
/// tier the rate limiter charges).
fn identify(record: AuditRecord, principal: &Principal, tier: Option<String>) -> AuditRecord {
    let mut record = record.with_principal(principal);
    record.tier = tier;
    record
}

/// Outermost audit layer: request id, context, refusal records and the response record.
pub async fn record_outcome(State(log): State<AuditLog>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(&request);
    let route = format!("{} {}", request.method(), bounded(request.uri().path()));
    let context = AuditNotes::new(log.records_prompts());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    request.extensions_mut().insert(context.clone());

    // Dropped with this future if the client goes away before the answer is ready (a plain generation
    // still running): then it writes the request's closing record itself.
    let mut abandoned = Abandoned {
        log: log.clone(),
        context: context.clone(),
        request_id: request_id.clone(),
        route: route.clone(),
        started,
        armed: true,
    };
    let mut response = next.run(request).await;
    abandoned.armed = false;
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

    let (Some(principal), tier) = context.with(|d| (d.principal.clone(), d.tier.clone())) else {
        // Not authenticated: a refusal by the authentication layer, or a public route (not audited).
        if let Some(AuthRefusal { reason, principal }) = response.extensions().get::<AuthRefusal>().cloned() {
            let event = match (status.as_u16(), reason) {
                (503, _) => AuditEvent::SecurityAuthUnavailable,
                (_, "dpop_replay") => AuditEvent::SecurityDpopReplay,
                _ => AuditEvent::SecurityInvalidToken,
            };
            let outcome = if status.is_server_error() { Outcome::Failed } else { Outcome::Refused };
            let mut record = base(event, outcome);
            // A valid token whose DPoP proof was refused: the record names whose token it was.
            if let Some(principal) = &principal {
                record = record.with_principal(principal);
            }
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
        let mut record = identify(base(*event, Outcome::Refused), &principal, tier.clone());
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
    let mut record = identify(base(AuditEvent::InferenceResponse, outcome), &principal, tier);
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
pub async fn record_request(State(log): State<AuditLog>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>();
    let (Some(principal), Some(context)) =
        (caller.and_then(Caller::principal).cloned(), request.extensions().get::<AuditNotes>().cloned())
    else {
        return next.run(request).await;
    };
    let tier = caller.and_then(Caller::tier_name).map(String::from);
    let allowed = AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed);
    let mut record = identify(allowed, &principal, tier.clone());
    record.request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(String::from);
    record.route = Some(format!("{} {}", request.method(), bounded(request.uri().path())));
    context.set_caller(&principal, tier.as_deref());
    if log.record_async(record).await.is_err() && log.fails_closed() {
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

/// The closing record of an authenticated request whose client went away before its answer was
/// ready: status 499 (client closed the request), with the tokens generated and charged until then.
struct Abandoned {
    log: AuditLog,
    context: AuditNotes,
    request_id: String,
    route: String,
    started: Instant,
    armed: bool,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (Some(principal), tier) = self.context.with(|d| (d.principal.clone(), d.tier.clone())) else { return };
        let mut record = identify(AuditRecord::new(AuditEvent::InferenceResponse, Outcome::Failed), &principal, tier);
        record.request_id = Some(std::mem::take(&mut self.request_id));
        record.route = Some(std::mem::take(&mut self.route));
        record.status = Some(CLIENT_CLOSED_REQUEST);
        self.context.with(|d| d.error.get_or_insert_with(|| "client disconnected".to_string()).clone());
        // Written on drop, with the generation's usage as its settlement left it.
        drop(PendingResponse {
            log: self.log.clone(),
            record: Some(record),
            context: self.context.clone(),
            started: self.started,
        });
    }
}

/// The status an abandoned request is recorded with (nginx's "client closed request").
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The `inference_response` record, written once when the body ends or is dropped.
struct PendingResponse {
    log: AuditLog,
    record: Option<AuditRecord>,
    context: AuditNotes,
    started: Instant,
}

impl PendingResponse {
    fn finish(&mut self) {
        let Some(mut record) = self.record.take() else { return };
        let late_refusal = self.context.with(|d| {
            record.model = d.model.clone();
            record.prompt = d.prompt.take();
            record.prompt_tokens = d.prompt_tokens;
            record.completion_tokens = d.completion_tokens;
            record.finish_reason = d.finish_reason.clone();
            record.provider = d.provider.clone();
            record.usage_source = d.usage_source.map(String::from);
            record.prompt_count = d.prompt_count.map(String::from);
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
