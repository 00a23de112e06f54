//! [`Settlement`]: the last step of a generation — its real token counts charged to the caller's
//! budget, the metrics and the audit record, as one step.
//!
//! The pipeline builds a settlement from the rate-limit [`Admission`] once the engine has the request;
//! the response (plain or streamed) owns it from then on. It is settled exactly once: at the end, with
//! the engine's summary; or, when the response is dropped first (client gone, stream cancelled, engine
//! failure), on drop, with the prompt and the tokens generated so far, as `cancelled` — so nothing
//! generated goes unbilled or unaudited.

use std::sync::Arc;

use axum::http::HeaderMap;
use llamagate_engine::GenerationSummary;

use crate::gate::audit_notes::AuditNotes;
use crate::gate::caller::Caller;
use crate::gate::limits::Admission;
use crate::gate::metrics::Metrics;
use crate::http::error::insert_headers;

/// One generation's accounts: the budget reservation and the usage report.
#[derive(Debug)]
pub struct Settlement {
    admission: Admission,
    report: UsageReport,
}

impl Settlement {
    /// The accounts of `caller`'s generation on `model`, whose budget `admission` holds.
    pub fn new(admission: Admission, caller: &Caller, metrics: Arc<Metrics>, model: &str, prompt_tokens: u64) -> Self {
        let report = UsageReport {
            notes: caller.notes().cloned(),
            metrics,
            model: model.to_string(),
            prompt_tokens,
            completion_tokens: 0,
            reported: false,
        };
        Self { admission, report }
    }

    /// The rate-limit fields of the response (none when unmetered).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(status) = self.admission.status() {
            insert_headers(&mut headers, llamagate_authz::ratelimit::headers::status_headers(status));
        }
        headers
    }

    /// The engine accepted the request: from now on a drop charges at least the prompt.
    pub fn started(&mut self) {
        self.admission.started();
    }

    /// One more token was generated (streaming), so a drop charges and reports it too.
    pub fn generated_token(&mut self) {
        self.admission.generated_token();
        self.report.completion_tokens += 1;
    }

    /// The generation failed after the response started; the drop that follows charges what was
    /// generated, and the audit record carries `reason`.
    pub fn failed(&mut self, reason: &str) {
        if let Some(notes) = &self.report.notes {
            notes.set_error(reason);
        }
        self.report.report("error");
    }

    /// Charges the engine's real counts to the budget (refunding the rest of the reservation), the
    /// metrics and the audit record.
    pub async fn settle(mut self, summary: &GenerationSummary) {
        let usage = summary.usage;
        self.report.prompt_tokens = usage.prompt_tokens as u64;
        self.report.completion_tokens = usage.completion_tokens as u64;
        self.report.report(summary.finish_reason.as_str());
        self.report.metrics.observe_generation(&self.report.model, &summary.timings, usage.completion_tokens);
        self.admission.settle((usage.prompt_tokens + usage.completion_tokens) as u64).await;
    }
}

/// Delivers one generation's token counts to the metrics and the audit notes, once.
#[derive(Debug)]
struct UsageReport {
    notes: Option<AuditNotes>,
    metrics: Arc<Metrics>,
    model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    reported: bool,
}

impl UsageReport {
    fn report(&mut self, finish_reason: &str) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        self.metrics.count_tokens(&self.model, self.prompt_tokens, self.completion_tokens);
        if let Some(notes) = &self.notes {
            notes.set_usage(self.prompt_tokens, self.completion_tokens, finish_reason);
        }
    }
}

impl Drop for UsageReport {
    fn drop(&mut self) {
        self.report("cancelled");
    }
}
