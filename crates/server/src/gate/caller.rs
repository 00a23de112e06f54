//! [`Caller`]: who is asking, computed once by the authentication layer and read by everything after
//! it — the validated token's principal, its tier (which sets the rate limits and the engine-queue
//! priority), the key its budget is kept under, its safety level, and whether it may use a model or
//! the shields. Passed by value; nothing downstream resolves any of these again.
//!
//! Without authentication (`enable_auth: false`) the caller is [`Caller::anonymous`]: no identity,
//! no limits, the lowest priority, the default safety level, and every model open.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use llamagate_authz::{
    AuthError, ChallengeParams, Decision, PermissionMatrix, Principal, RateKey, SAFETY_SCOPE, Scopes, Tier,
};

use crate::gate::audit_notes::AuditNotes;
use crate::gate::edge::bounded;
use crate::http::error::ApiError;

/// The model permission matrix with the challenge a refusal carries; present when
/// `enforce_model_permissions` is on.
#[derive(Debug)]
pub struct ModelAccess {
    /// Which scope unlocks which model.
    pub matrix: PermissionMatrix,
    /// The `WWW-Authenticate` parameters of a 403.
    pub challenge: ChallengeParams,
}

impl ModelAccess {
    /// 403 `insufficient_scope` naming the scope that would have been needed.
    fn insufficient(&self, required: String) -> ApiError {
        ApiError::Auth(AuthError::InsufficientScope { required }.to_response(&self.challenge))
    }
}

/// An authenticated caller: what the authentication layer established.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The validated token's principal.
    pub principal: Principal,
    /// The principal's tier.
    pub tier: Tier,
    /// The key its rate-limit buckets are kept under.
    pub rate_key: RateKey,
}

/// The caller of a handler. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    identity: Option<Identity>,
    /// The safety level its scopes pick; `None` means the configured default.
    safety_level: Option<String>,
    /// `None` when model permissions are not enforced: every model is open.
    access: Option<Arc<ModelAccess>>,
    /// Where this request's audit records learn what happened; `None` when audit logging is off.
    notes: Option<AuditNotes>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_else(Caller::anonymous))
    }
}

impl Caller {
    /// An authenticated caller, as the authentication layer builds it.
    pub fn authenticated(
        identity: Identity,
        safety_level: Option<String>,
        access: Option<Arc<ModelAccess>>,
        notes: Option<AuditNotes>,
    ) -> Self {
        Self { identity: Some(identity), safety_level, access, notes }
    }

    /// The caller of a server without authentication.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The validated token's principal.
    pub fn principal(&self) -> Option<&Principal> {
        self.identity.as_ref().map(|identity| &identity.principal)
    }

    /// The caller's identity, tier and rate key.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The name of the caller's tier.
    pub fn tier_name(&self) -> Option<&str> {
        self.identity.as_ref().map(|identity| identity.tier.name.as_str())
    }

    /// The token's scopes, if any.
    pub fn scopes(&self) -> Option<&Scopes> {
        self.principal().map(|principal| &principal.scopes)
    }

    /// The engine-queue priority of this caller's generations: its tier's `priority`, or 0 (the
    /// lowest) without authentication, since an anonymous caller has no tier to earn more.
    pub fn priority(&self) -> u8 {
        self.identity.as_ref().map_or(0, |identity| identity.tier.limits.priority)
    }

    /// The scope of the caller's remembered prompts in the engine's prefix cache: one per rate key
    /// (subject and client), 0 for anonymous callers, so tenants never reuse each other's prompts.
    pub fn prefix_scope(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        self.identity.as_ref().map_or(0, |identity| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            identity.rate_key.hash(&mut hasher);
            hasher.finish() | 1
        })
    }

    /// `max_tokens` for a request of this caller that names none: its tier's default, so that the
    /// reservation fits the tier's budget (`None`: the rest of the context).
    pub fn default_max_tokens(&self) -> Option<usize> {
        self.identity.as_ref().and_then(|identity| identity.tier.limits.default_max_tokens).map(|n| n as usize)
    }

    /// The safety level the caller's scopes pick, or `None` for the configured default.
    pub fn safety_level(&self) -> Option<&str> {
        self.safety_level.as_deref()
    }

    /// This request's audit notes, when audit logging is on.
    pub fn notes(&self) -> Option<&AuditNotes> {
        self.notes.as_ref()
    }

    /// May the caller use `model_id` for inference? 403 `insufficient_scope` when it lacks the
    /// model's scope; a model it may not see is answered like an unknown one (404).
    pub fn authorize_model(&self, model_id: &str) -> Result<(), ApiError> {
        let Some(access) = &self.access else { return Ok(()) };
        let Some(scopes) = self.scopes() else { return Err(ApiError::ModelNotFound(model_id.to_string())) };
        match access.matrix.check(model_id, scopes) {
            Decision::Allow => Ok(()),
            Decision::UnknownModel => Err(ApiError::ModelNotFound(model_id.to_string())),
            Decision::MissingScope { required_scope } => Err(access.insufficient(required_scope)),
        }
    }

    /// For listings and retrieval: whether the model is visible to the caller (no 403, only hiding).
    pub fn may_see_model(&self, model_id: &str) -> bool {
        self.authorize_model(model_id).is_ok()
    }

    /// May the caller use the shields (run-shield, moderations)? Shields are resources like models,
    /// unlocked by the `model_safety` scope when model permissions are enforced; without it, 403
    /// `insufficient_scope`.
    pub fn authorize_shields(&self) -> Result<(), ApiError> {
        let Some(access) = &self.access else { return Ok(()) };
        match self.scopes() {
            Some(scopes) if scopes.contains(SAFETY_SCOPE) => Ok(()),
            _ => Err(access.insufficient(SAFETY_SCOPE.to_string())),
        }
    }

    /// For shield listings and retrieval: whether the caller may see shields (no 403, only hiding).
    pub fn may_see_shields(&self) -> bool {
        self.authorize_shields().is_ok()
    }

    /// Notes the model the request is for, for its audit records — cut to a bounded length first:
    /// the id is the client's text, noted before anyone checked that such a model exists.
    pub fn note_model(&self, model: &str) {
        if let Some(notes) = &self.notes {
            notes.set_model(&bounded(model));
        }
    }

    /// Notes the prompt for the audit trail; `text` is only called when the audit log records prompts.
    pub fn note_prompt(&self, text: impl FnOnce() -> String) {
        if let Some(notes) = &self.notes {
            notes.set_prompt(text);
        }
    }

    /// Notes a content-safety refusal (the violated categories, comma-joined) for the audit trail.
    pub fn note_safety_refusal(&self, categories: &str) {
        if let Some(notes) = &self.notes {
            notes.set_safety_refusal(categories);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use llamagate_authz::ratelimit::RateLimitConfig;
    use llamagate_authz::{OAuthConfig, Tiers, TokenSource};

    use super::*;

    async fn caller_of(request: Request<()>) -> Caller {
        let (mut parts, ()) = request.into_parts();
        let Ok(caller) = Caller::from_request_parts(&mut parts, &()).await;
        caller
    }

    fn principal(scopes: &str) -> Principal {
        Principal::new("alice", "app", Scopes::parse(scopes), "https://as.example", TokenSource::Jwt)
    }

    fn identity(tiers: &Tiers, scopes: &str) -> Identity {
        let principal = principal(scopes);
        Identity { tier: tiers.resolve(&principal), rate_key: RateKey::of(&principal), principal }
    }

    #[tokio::test]
    async fn a_tiers_configured_priority_is_the_callers() {
        let yaml = "tiers:\n  gold: {requests: 5, tokens: 500, priority: 9}\nscope_tiers:\n  gold_access: gold\n";
        let config: RateLimitConfig = yaml_serde::from_str(yaml).unwrap();
        let tiers = Tiers::from_config(&config, "free");
        // What the authentication layer puts into the request for a `gold_access` token.
        let gold = Caller::authenticated(identity(&tiers, "gold_access"), None, None, None);
        let request = Request::builder().extension(gold);
        assert_eq!(caller_of(request.body(()).unwrap()).await.priority(), 9);
        let free = Caller::authenticated(identity(&tiers, ""), None, None, None);
        assert_eq!(caller_of(Request::builder().extension(free).body(()).unwrap()).await.priority(), 0);
    }

    #[tokio::test]
    async fn without_authentication_the_priority_is_the_lowest() {
        assert_eq!(caller_of(Request::builder().body(()).unwrap()).await.priority(), 0);
        assert_eq!(Caller::anonymous().priority(), 0);
    }

    #[test]
    fn model_permissions_answer_403_for_a_missing_scope_and_hide_unknown_models() {
        let mut matrix = PermissionMatrix::from_config(&OAuthConfig::default());
        matrix.register("local/smollm2-135m-instruct", None).unwrap();
        let challenge = ChallengeParams::from_config(&OAuthConfig::default());
        let access = Some(Arc::new(ModelAccess { matrix, challenge }));
        let tiers = Tiers::from_config(&RateLimitConfig::default(), "free");
        let allowed = Caller::authenticated(identity(&tiers, "model_smollm2_135m"), None, access.clone(), None);
        assert!(allowed.authorize_model("local/smollm2-135m-instruct").is_ok());
        assert!(matches!(allowed.authorize_model("other"), Err(ApiError::ModelNotFound(_))));
        let refused = Caller::authenticated(identity(&tiers, "model_safety"), None, access, None);
        let Err(ApiError::Auth(answer)) = refused.authorize_model("local/smollm2-135m-instruct") else {
            panic!("a missing scope is a 403")
        };
        assert_eq!(answer.status, 403);
        assert!(!refused.may_see_model("local/smollm2-135m-instruct"));
        assert!(refused.authorize_shields().is_ok() && !allowed.may_see_shields());
        assert!(Caller::anonymous().authorize_model("anything").is_ok(), "permissions off: every model is open");
    }

    #[test]
    fn each_caller_has_its_own_prefix_scope() {
        let tiers = Tiers::from_config(&RateLimitConfig::default(), "free");
        let alice = Caller::authenticated(identity(&tiers, ""), None, None, None);
        let mut other = identity(&tiers, "");
        other.rate_key = RateKey::new("bob", "app");
        let bob = Caller::authenticated(other, None, None, None);
        assert_ne!(alice.prefix_scope(), bob.prefix_scope());
        assert_eq!(alice.prefix_scope(), Caller::authenticated(identity(&tiers, "x"), None, None, None).prefix_scope());
        assert_eq!(Caller::anonymous().prefix_scope(), 0);
        assert_ne!(alice.prefix_scope(), 0);
    }
}
