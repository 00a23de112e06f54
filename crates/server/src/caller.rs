//! [`Caller`]: who is asking, as the layers in front of the handlers established it — the validated
//! token's principal and the request's audit notes — and [`UsageReport`], which carries a
//! generation's real token counts to the audit record and the metrics.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use llamagate_authz::Principal;
use llamagate_engine::GenerationSummary;

use crate::audit::AuditContext;
use crate::metrics::Metrics;

/// The caller of a handler. Both parts are absent when authentication is off.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    principal: Option<Principal>,
    audit: Option<AuditContext>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            principal: parts.extensions.get::<Principal>().cloned(),
            audit: parts.extensions.get::<AuditContext>().cloned(),
        })
    }
}

impl Caller {
    /// The validated token's principal.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Notes the model the request is for, for its audit records.
    pub fn note_model(&self, model: &str) {
        if let Some(audit) = &self.audit {
            audit.set_model(model);
        }
    }

    /// Notes a content-safety refusal (the violated categories, comma-joined) for the audit trail.
    pub fn note_safety_refusal(&self, categories: &str) {
        if let Some(audit) = &self.audit {
            audit.set_safety_refusal(categories);
        }
    }

    /// A report of this caller's generation on `model` with a prompt of `prompt_tokens`.
    pub fn usage_report(&self, metrics: Arc<Metrics>, model: &str, prompt_tokens: u64) -> UsageReport {
        UsageReport {
            audit: self.audit.clone(),
            metrics,
            model: model.to_string(),
            prompt_tokens,
            completion_tokens: 0,
            reported: false,
        }
    }
}

/// Delivers one generation's token counts, once: at the end with the engine's summary, or — when the
/// response is dropped first (client gone) — with the tokens generated so far, as `cancelled`.
#[derive(Debug)]
pub struct UsageReport {
    audit: Option<AuditContext>,
    metrics: Arc<Metrics>,
    model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    reported: bool,
}

impl UsageReport {
    /// One more token was generated.
    pub fn generated_token(&mut self) {
        self.completion_tokens += 1;
    }

    /// The generation finished with the engine's real counts.
    pub fn finished(&mut self, summary: &GenerationSummary) {
        let usage = summary.usage;
        self.prompt_tokens = usage.prompt_tokens as u64;
        self.completion_tokens = usage.completion_tokens as u64;
        self.report(summary.finish_reason.as_str());
    }

    /// The generation failed after the response started.
    pub fn failed(&mut self, reason: &str) {
        if let Some(audit) = &self.audit {
            audit.set_error(reason);
        }
        self.report("error");
    }

    fn report(&mut self, finish_reason: &str) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        self.metrics.count_tokens(&self.model, self.prompt_tokens, self.completion_tokens);
        if let Some(audit) = &self.audit {
            audit.set_usage(self.prompt_tokens, self.completion_tokens, finish_reason);
        }
    }
}

impl Drop for UsageReport {
    fn drop(&mut self) {
        self.report("cancelled");
    }
}
