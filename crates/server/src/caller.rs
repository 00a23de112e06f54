//! [`Caller`]: who is asking, as the layers in front of the handlers established it — the validated
//! token's principal, its tier and the request's audit notes — and [`UsageReport`], which carries a
//! generation's real token counts to the audit record and the metrics.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use llamagate_authz::{Principal, Tier};
use llamagate_engine::GenerationSummary;

use crate::audit::AuditContext;
use crate::metrics::Metrics;

/// The caller of a handler. Every part is absent when authentication is off.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    principal: Option<Principal>,
    /// The principal's tier, as the authentication layer resolved it.
    tier: Option<Tier>,
    audit: Option<AuditContext>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            principal: parts.extensions.get::<Principal>().cloned(),
            tier: parts.extensions.get::<Tier>().cloned(),
            audit: parts.extensions.get::<AuditContext>().cloned(),
        })
    }
}

impl Caller {
    /// The validated token's principal.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The engine-queue priority of this caller's generations: its tier's `priority`, or 0 (the
    /// lowest) without authentication, since an anonymous caller has no tier to earn more.
    pub fn priority(&self) -> u8 {
        self.tier.as_ref().map_or(0, |tier| tier.limits.priority)
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

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use llamagate_authz::principal::TokenSource;
    use llamagate_authz::ratelimit::RateLimitConfig;
    use llamagate_authz::{Scopes, Tiers};

    use super::*;

    async fn caller_of(request: Request<()>) -> Caller {
        let (mut parts, ()) = request.into_parts();
        let Ok(caller) = Caller::from_request_parts(&mut parts, &()).await;
        caller
    }

    fn principal(scopes: &str) -> Principal {
        Principal {
            subject: "alice".into(),
            client_id: "app".into(),
            scopes: Scopes::parse(scopes),
            issuer: "https://as.example".into(),
            expires_at: None,
            token_id: None,
            cnf_jkt: None,
            tier: None,
            source: TokenSource::Jwt,
            claims: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_tiers_configured_priority_is_the_callers() {
        let yaml = "tiers:\n  gold: {requests: 5, tokens: 500, priority: 9}\nscope_tiers:\n  gold_access: gold\n";
        let config: RateLimitConfig = yaml_serde::from_str(yaml).unwrap();
        let tiers = Tiers::from_config(&config, "free");
        // What the authentication layer puts into the request for a `gold_access` token.
        let request =
            Request::builder().extension(principal("gold_access")).extension(tiers.resolve(&principal("gold_access")));
        assert_eq!(caller_of(request.body(()).unwrap()).await.priority(), 9);
        let free = Request::builder().extension(tiers.resolve(&principal("")));
        assert_eq!(caller_of(free.body(()).unwrap()).await.priority(), 0);
    }

    #[tokio::test]
    async fn without_authentication_the_priority_is_the_lowest() {
        assert_eq!(caller_of(Request::builder().body(()).unwrap()).await.priority(), 0);
        assert_eq!(Caller::default().priority(), 0);
    }
}
