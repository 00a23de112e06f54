//! What one audit record says: the event, who caused it and what was decided.
//!
//! Records carry identities (subject, client id, issuer), scopes, tier, model, decision and reason,
//! and the engine's token counts — never the access token, its signature, keys or the prompt. The
//! prompt field exists only for deployments that opt in ([`super::AuditConfig::record_prompts`]).

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::config::AuditLogLevel;
use crate::principal::Principal;

/// The kind of decision recorded. Names are the `event` field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// An authenticated caller's request reached a route (before the engine runs).
    InferenceRequest,
    /// How that request ended: success, refusal or failure, with token counts and latency.
    InferenceResponse,
    /// A missing, malformed, expired or otherwise invalid token (401).
    SecurityInvalidToken,
    /// A valid token without the scope the route or model needs (403).
    SecurityInsufficientScope,
    /// A request refused by the caller's tier limits (429).
    SecurityRateLimited,
    /// Content refused by the caller's safety level.
    SecuritySafetyRefusal,
    /// A DPoP proof whose `jti` was already used.
    SecurityDpopReplay,
    /// Keys or introspection could not be had from the authorization server (503).
    SecurityAuthUnavailable,
    /// A JWKS refresh failed (stale keys, if any, keep serving); not tied to one request.
    SecurityJwksRefreshFailure,
    /// At start, the log's last line was not a whole record (the process was killed mid-write): it was
    /// set aside in a file of its own and the chain resumed from the last whole record.
    SecurityAuditRecovered,
}

impl AuditEvent {
    /// The severity a record of this event has unless the caller says otherwise: refusals warn,
    /// the server's own failures are errors, normal traffic is informational.
    pub fn default_severity(self) -> Severity {
        match self {
            Self::InferenceRequest | Self::InferenceResponse => Severity::Info,
            Self::SecurityAuthUnavailable | Self::SecurityJwksRefreshFailure => Severity::Error,
            _ => Severity::Warn,
        }
    }
}

/// How much an operator should care; filtered by `audit_log_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal traffic.
    Info,
    /// A refusal: somebody was told no.
    Warn,
    /// The server failed or could not decide.
    Error,
}

impl Severity {
    /// True when a record of this severity is written at `level`.
    pub fn passes(self, level: AuditLogLevel) -> bool {
        match level {
            AuditLogLevel::Debug | AuditLogLevel::Info => true,
            AuditLogLevel::Warn => self >= Severity::Warn,
            AuditLogLevel::Error => self >= Severity::Error,
        }
    }
}

/// The outcome in one word, so that log queries need not interpret events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Let through, or completed.
    Allowed,
    /// Refused by policy (token, scope, limits, safety).
    Refused,
    /// Failed on the server's side.
    Failed,
}

/// One audit record. `None` fields are left out of the JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the decision was made, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// What happened.
    pub event: AuditEvent,
    /// How much it matters.
    pub severity: Severity,
    /// The outcome.
    pub decision: Outcome,
    /// The request's id (the `x-request-id` the server answers with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// HTTP method and path (never the query string, which is where leaked tokens would sit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// HTTP status answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Token `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Token `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Token scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The caller's tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Token `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Why: the refusal class or error kind, never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the generation ended (`stop`, `length`, `content_filter`, `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Prompt tokens counted by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens counted by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// The inference provider that served the model (a remote provider's id; absent for the engine in
    /// this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Where the token counts come from: `upstream` (the provider's `usage`) or `estimate` (the
    /// provider reported none; a conservative count from the prompt's bytes and the streamed pieces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_source: Option<String>,
    /// How a remote model's prompt was counted for the reservation before the call: `tokenizer` (the
    /// model's own tokenizer, configured with it) or `estimate` (from the prompt's bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_count: Option<String>,
    /// Time from the request's arrival to this record, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The prompt, only when the deployment opted in to recording prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl AuditRecord {
    /// A record of `event` made now, with the event's default severity.
    pub fn new(event: AuditEvent, decision: Outcome) -> Self {
        Self {
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            event,
            severity: event.default_severity(),
            decision,
            request_id: None,
            route: None,
            status: None,
            subject: None,
            client_id: None,
            scopes: None,
            tier: None,
            issuer: None,
            model: None,
            reason: None,
            finish_reason: None,
            prompt_tokens: None,
            completion_tokens: None,
            provider: None,
            usage_source: None,
            prompt_count: None,
            latency_ms: None,
            prompt: None,
        }
    }

    /// Moves the timestamp to now: a response record is dated when the response ended.
    pub fn stamp_now(&mut self) {
        self.timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    }

    /// The record in the Llama Stack OAuth design's field names (`audit.schema: llama-stack`): what it
    /// names at the top level, everything else of llamagate's under `metadata`.
    pub fn llama_stack(&self) -> serde_json::Value {
        let severity = match self.severity {
            Severity::Info => "INFO",
            Severity::Warn => "WARNING",
            Severity::Error => "ERROR",
        };
        let mut metadata = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = metadata.as_object_mut() {
            for moved in ["timestamp", "event", "severity", "subject", "model", "route", "issuer", "reason"] {
                fields.remove(moved);
            }
        }
        serde_json::json!({
            "timestamp": self.timestamp,
            "event_type": self.event,
            "severity": severity,
            "user_id": self.subject,
            "model_id": self.model,
            "request_type": self.route,
            "token_issuer": self.issuer,
            "success": self.decision == Outcome::Allowed,
            "error": self.reason,
            "metadata": metadata,
        })
    }

    /// Fills who called from a validated token's principal (identities and scopes only; the tier is
    /// the server's resolution of them, set by the caller).
    pub fn with_principal(mut self, principal: &Principal) -> Self {
        self.subject = Some(principal.subject.clone());
        self.client_id = Some(principal.client_id.clone());
        self.scopes = Some(principal.scopes.iter().map(String::from).collect());
        self.issuer = Some(principal.issuer.clone());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_filter_follows_the_configured_level() {
        assert!(Severity::Info.passes(AuditLogLevel::Info));
        assert!(Severity::Info.passes(AuditLogLevel::Debug));
        assert!(!Severity::Info.passes(AuditLogLevel::Warn));
        assert!(Severity::Warn.passes(AuditLogLevel::Warn));
        assert!(!Severity::Warn.passes(AuditLogLevel::Error));
        assert!(Severity::Error.passes(AuditLogLevel::Error));
    }

    #[test]
    fn empty_fields_are_left_out_and_events_use_snake_case() {
        let record = AuditRecord::new(AuditEvent::SecurityInsufficientScope, Outcome::Refused);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["event"], "security_insufficient_scope");
        assert_eq!(json["severity"], "warn");
        assert_eq!(json["decision"], "refused");
        assert!(json.get("subject").is_none());
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
