//! [`AuditNotes`]: what the audit records of one request need to learn from the layers inside them —
//! who the caller is (the authentication layer), which model was asked for and the real token counts
//! (the pipeline's settlement), a content-safety refusal — and [`AuthRefusal`], the reason class the
//! authentication layer puts on a refused answer. A leaf module, so the layers that write notes and the
//! audit layers that read them do not import each other.
//!
//! The notes are shared behind one lock because a streamed answer's last notes (its usage) are taken
//! long after the handler returned, by the response body that the audit layer wraps.

use std::sync::{Arc, Mutex};

use llamagate_authz::Principal;

/// Why authentication refused a request; put on the response by the authentication layer so the
/// audit record can name the reason class without reading the body, and the caller when the token
/// itself was valid (a refused DPoP proof).
#[derive(Clone, Debug)]
pub struct AuthRefusal {
    /// The reason class ([`llamagate_authz::AuthError::reason`]).
    pub reason: &'static str,
    /// The valid token's principal, when only its DPoP proof was refused.
    pub principal: Option<Arc<Principal>>,
}

/// What a handler learned that belongs in the request's audit records.
#[derive(Debug, Default)]
pub(crate) struct Details {
    pub(crate) principal: Option<Principal>,
    /// The caller's tier, as the authentication layer resolved it.
    pub(crate) tier: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) finish_reason: Option<String>,
    /// The remote provider that served the request, if one did.
    pub(crate) provider: Option<String>,
    /// `upstream` or `estimate`: where a remote generation's token counts came from.
    pub(crate) usage_source: Option<&'static str>,
    /// `tokenizer` or `estimate`: how a remote prompt was counted for the reservation.
    pub(crate) prompt_count: Option<&'static str>,
    pub(crate) safety_refusal: Option<String>,
    pub(crate) error: Option<String>,
    /// Whether the audit log keeps prompt text (`audit.record_prompts`); set when the notes are made.
    pub(crate) keep_prompt: bool,
    /// The prompt text, cut to [`PROMPT_AUDIT_BYTES`], when `keep_prompt` is on.
    pub(crate) prompt: Option<String>,
}

/// The most prompt text one audit record holds (`audit.record_prompts`): records stay bounded, however
/// long the prompt.
pub const PROMPT_AUDIT_BYTES: usize = 4096;

/// Per-request notes for the audit trail; shared by the layers, the handler and a streaming body.
#[derive(Clone, Debug, Default)]
pub struct AuditNotes(Arc<Mutex<Details>>);

impl AuditNotes {
    /// Notes for one request; `keep_prompt` when the audit log records prompts.
    pub fn new(keep_prompt: bool) -> Self {
        Self(Arc::new(Mutex::new(Details { keep_prompt, ..Details::default() })))
    }

    /// The request's prompt, when the audit log keeps prompts: `text` is only called then, and its
    /// result is cut to [`PROMPT_AUDIT_BYTES`] (at a character boundary, marked with `…`).
    pub fn set_prompt(&self, text: impl FnOnce() -> String) {
        if !self.with(|d| d.keep_prompt) {
            return;
        }
        let mut text = text();
        if text.len() > PROMPT_AUDIT_BYTES {
            let mut cut = PROMPT_AUDIT_BYTES - '…'.len_utf8();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.with(|d| d.prompt = Some(text));
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Details) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update; the notes are still usable.
        let mut details = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut details)
    }

    /// Who the caller is: the token's principal and its tier's name.
    pub fn set_caller(&self, principal: &Principal, tier: Option<&str>) {
        self.with(|d| {
            d.principal = Some(principal.clone());
            d.tier = tier.map(String::from);
        });
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

    /// The remote provider serving the request.
    pub fn set_provider(&self, provider_id: &str) {
        self.with(|d| d.provider = Some(provider_id.to_string()));
    }

    /// Where a remote generation's token counts came from (`upstream` or `estimate`).
    pub fn set_usage_source(&self, source: &'static str) {
        self.with(|d| d.usage_source = Some(source));
    }

    /// How a remote prompt was counted for the reservation (`tokenizer` or `estimate`).
    pub fn set_prompt_count(&self, count: &'static str) {
        self.with(|d| d.prompt_count = Some(count));
    }

    /// The tokens a refused request was counted (and charged) at: a prompt too long for the model. No
    /// finish reason: nothing was generated.
    pub fn set_refused_usage(&self, prompt_tokens: u64) {
        self.with(|d| {
            d.prompt_tokens = Some(prompt_tokens);
            d.completion_tokens = Some(0);
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
