//! The OAuth 2.1 resource server, wired: `oauth_config` resolution at start, the authentication
//! layer in front of every non-public path, the model permission matrix and the RFC 9728 metadata.
//!
//! All token and policy rules live in `llamagate_authz`; this module only moves HTTP into
//! [`AuthRequest`] and [`AuthErrorResponse`] back into HTTP.

use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llamagate_authz::permissions::{PermissionError, SAFETY_SCOPE};
use llamagate_authz::{
    AuditLog, AuthError, AuthErrorResponse, AuthRequest, Authenticator, ChallengeParams, Clock, Decision, OAuthConfig,
    PermissionMatrix, Principal, ProtectedResourceMetadata, Tiers,
};

use crate::app::{Access, ROUTES};
use crate::audit::{AuditTrail, AuthRefusal};
use crate::config::ModelConfig;
use crate::error::ApiError;

/// Name in the protected resource metadata.
const RESOURCE_NAME: &str = "llamagate";

/// Turns the optional `oauth_config` section into a validated configuration, environment overrides
/// (`LLAMA_STACK_OAUTH_*`) applied. An absent section refuses to start: deny by default.
pub fn resolve_config(
    section: Option<OAuthConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<OAuthConfig> {
    let Some(mut cfg) = section else {
        bail!(
            "oauth_config: missing from the stack config. Configure the OAuth resource server \
             (oauth_config: {{auth_server_uri: ..., stack_uri: ...}}), or set `oauth_config: {{enable_auth: false}}` \
             explicitly for an open development server"
        );
    };
    cfg.apply_env_overrides(env)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Everything the request path needs to authenticate and authorize; built once at start.
pub struct AuthState {
    authenticator: Authenticator,
    challenge: ChallengeParams,
    /// `stack_uri` without a trailing slash: the request URL is this plus the path (DPoP `htu`).
    base_url: String,
    metadata: ProtectedResourceMetadata,
    /// Present when `enforce_model_permissions` is on.
    permissions: Option<PermissionMatrix>,
    /// Present when `enable_audit_logging` is on.
    audit: Option<AuditTrail>,
    /// Picks each authenticated caller's tier, whose priority orders the engine's queue (also when
    /// rate limiting is off).
    tiers: Arc<Tiers>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl AuthState {
    /// Builds the authenticator and, when enforced, the permission matrix for these models.
    pub fn new(cfg: &OAuthConfig, models: &[ModelConfig]) -> anyhow::Result<Self> {
        let permissions = if cfg.enforce_model_permissions { Some(permission_matrix(cfg, models)?) } else { None };
        let authenticator = Authenticator::from_config(cfg, Clock::system()).context("oauth_config")?;
        let challenge = authenticator.challenge_params().clone();
        let scopes = permissions.as_ref().map(|m| m.scopes()).unwrap_or_default();
        let tiers = Arc::new(Tiers::from_config(&cfg.rate_limits, &cfg.default_user_tier));
        let audit = if cfg.enable_audit_logging {
            Some(AuditTrail {
                log: AuditLog::start(&cfg.audit, cfg.audit_log_level).context("oauth_config.audit.path")?,
                tiers: tiers.clone(),
            })
        } else {
            None
        };
        if let Some(trail) = &audit {
            authenticator.audit_to(&trail.log);
        }
        Ok(Self {
            authenticator,
            challenge,
            base_url: cfg.stack_uri.trim_end_matches('/').to_string(),
            metadata: ProtectedResourceMetadata::new(cfg, scopes, RESOURCE_NAME),
            permissions,
            audit,
            tiers,
        })
    }

    /// The audit log and tier rules, when `enable_audit_logging` is on.
    pub fn audit_trail(&self) -> Option<&AuditTrail> {
        self.audit.as_ref()
    }

    /// The audit log, when `enable_audit_logging` is on.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref().map(|trail| &trail.log)
    }

    /// Fetches the JWKS ahead of the first request; failure is logged, not fatal (requests get 503
    /// until keys can be fetched).
    pub async fn prefetch(&self) {
        match self.authenticator.prefetch().await {
            Ok(()) => tracing::info!("authorization server keys prefetched"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the authorization server yet; requests get 503 until it answers")
            }
        }
    }

    /// The RFC 9728 document.
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.metadata
    }

    /// May `principal` use `model_id`? `Ok(false)` means the model must look unknown.
    fn decide(&self, model_id: &str, principal: Option<&Principal>) -> Result<bool, ApiError> {
        let Some(matrix) = &self.permissions else { return Ok(true) };
        // The auth layer always sets a principal; without one, nothing is permitted.
        let Some(principal) = principal else { return Ok(false) };
        match matrix.check(model_id, &principal.scopes) {
            Decision::Allow => Ok(true),
            Decision::UnknownModel => Ok(false),
            Decision::MissingScope { required_scope } => {
                let error = AuthError::InsufficientScope { required: required_scope };
                Err(ApiError::Auth(error.to_response(&self.challenge)))
            }
        }
    }
}

/// Registers every served model; a model without a scope stops start-up naming its key.
fn permission_matrix(cfg: &OAuthConfig, models: &[ModelConfig]) -> anyhow::Result<PermissionMatrix> {
    let mut matrix = PermissionMatrix::from_config(cfg);
    for (i, model) in models.iter().enumerate() {
        match matrix.register(&model.id, model.required_scope.as_deref()) {
            Ok(policy) => tracing::info!(model = %model.id, scope = %policy.required_scope, "model permission"),
            Err(e @ PermissionError::NoScope(_)) => bail!(
                "models[{i}].required_scope: {e} (enforce_model_permissions is on and `{}` matches no model family)",
                model.id
            ),
            Err(e) => bail!("models[{i}].required_scope: {e}"),
        }
    }
    Ok(matrix)
}

/// The required scope of every model, in order and without repeats (for development tokens).
pub fn model_scopes(cfg: &OAuthConfig, models: &[ModelConfig]) -> anyhow::Result<Vec<String>> {
    Ok(permission_matrix(cfg, models)?.scopes().into_iter().collect())
}

/// Model-level authorization for inference: 403 `insufficient_scope` when the caller lacks the
/// model's scope; a model the caller may not see is answered like an unknown one.
pub fn authorize_model(
    auth: Option<&AuthState>,
    model_id: &str,
    principal: Option<&Principal>,
) -> Result<(), ApiError> {
    match auth {
        None => Ok(()),
        Some(auth) if auth.decide(model_id, principal)? => Ok(()),
        Some(_) => Err(ApiError::ModelNotFound(model_id.to_string())),
    }
}

/// For listings and retrieval: whether the model is visible to the caller (no 403, only hiding).
pub fn model_visible(auth: Option<&AuthState>, model_id: &str, principal: Option<&Principal>) -> bool {
    match auth {
        None => true,
        Some(auth) => auth.decide(model_id, principal).unwrap_or(false),
    }
}

/// Shield authorization (run-shield, moderations): shields are resources like models, unlocked by
/// the `model_safety` scope when model permissions are enforced; without it, 403 `insufficient_scope`.
pub fn authorize_shield(auth: Option<&AuthState>, principal: Option<&Principal>) -> Result<(), ApiError> {
    let Some(auth) = auth.filter(|a| a.permissions.is_some()) else { return Ok(()) };
    match principal {
        Some(p) if p.scopes.contains(SAFETY_SCOPE) => Ok(()),
        _ => {
            let error = AuthError::InsufficientScope { required: SAFETY_SCOPE.to_string() };
            Err(ApiError::Auth(error.to_response(&auth.challenge)))
        }
    }
}

/// For shield listings and retrieval: whether the caller may see shields (no 403, only hiding).
pub fn shield_visible(auth: Option<&AuthState>, principal: Option<&Principal>) -> bool {
    authorize_shield(auth, principal).is_ok()
}

/// True for the exact paths served without credentials. Anything else (other routes, unknown paths,
/// other spellings of public paths) needs a token.
fn is_public(path: &str) -> bool {
    ROUTES.iter().any(|r| r.access == Access::Public && r.path == path)
}

/// The authentication layer: a valid token puts its [`Principal`] and its resolved
/// [`llamagate_authz::Tier`] into the request extensions (read back by [`crate::caller::Caller`]);
/// anything else is answered here with the challenge.
pub async fn authenticate(State(auth): State<Arc<AuthState>>, mut request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let authorization: Vec<&[u8]> =
        headers.get_all(axum::http::header::AUTHORIZATION).iter().map(|v| v.as_bytes()).collect();
    let dpop: Vec<&[u8]> = headers.get_all("dpop").iter().map(|v| v.as_bytes()).collect();
    let url = format!("{}{}", auth.base_url, request.uri().path());
    let auth_request = AuthRequest {
        authorization: &authorization,
        dpop: &dpop,
        method: request.method().as_str(),
        url: &url,
        query: request.uri().query(),
    };
    match auth.authenticator.authenticate(&auth_request).await {
        Ok(principal) => {
            tracing::debug!(sub = %principal.subject, client_id = %principal.client_id, "authenticated");
            let tier = auth.tiers.resolve(&principal);
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(tier);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(reason = error.reason(), status = error.status(), "request refused");
            let mut response = ApiError::Auth(error.to_response(&auth.challenge)).into_response();
            response.extensions_mut().insert(AuthRefusal(error.reason()));
            response
        }
    }
}

/// Converts an authz error answer into the Llama Stack envelope with its challenges.
pub fn auth_error_response(answer: &AuthErrorResponse) -> Response {
    use axum::http::{HeaderValue, StatusCode, header};
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut body = serde_json::json!({ "error": { "message": answer.description, "code": answer.status.to_string() } });
    if let Some(code) = answer.error {
        body["error"]["type"] = serde_json::json!(code);
    }
    let mut response = (status, axum::Json(body)).into_response();
    for challenge in &answer.www_authenticate {
        if let Ok(value) = HeaderValue::from_str(challenge) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_section_refuses_to_start() {
        let err = resolve_config(None, |_| None).unwrap_err().to_string();
        assert!(err.contains("oauth_config") && err.contains("enable_auth: false"), "{err}");
    }

    #[test]
    fn env_overrides_apply_before_validation() {
        let cfg = OAuthConfig { enable_auth: true, ..OAuthConfig::default() };
        let err = resolve_config(Some(cfg.clone()), |_| None).unwrap_err().to_string();
        assert!(err.contains("oauth_config.auth_server_uri"), "{err}");
        let env = |k: &str| match k {
            "LLAMA_STACK_OAUTH_AUTH_SERVER_URI" => Some("http://127.0.0.1:9400".to_string()),
            "LLAMA_STACK_OAUTH_STACK_URI" => Some("http://127.0.0.1:8321".to_string()),
            _ => None,
        };
        let cfg = resolve_config(Some(cfg), env).unwrap();
        assert_eq!(cfg.stack_uri, "http://127.0.0.1:8321");
        let off = |k: &str| (k == "LLAMA_STACK_OAUTH_ENABLE_AUTH").then(|| "false".to_string());
        assert!(!resolve_config(Some(OAuthConfig::default()), off).unwrap().enable_auth);
    }

    #[test]
    fn models_without_a_scope_fail_naming_the_key() {
        let cfg = OAuthConfig::default();
        let models = vec![
            ModelConfig { id: "local/smollm2-135m-instruct".into(), source: "x".into(), ..Default::default() },
            ModelConfig { id: "tiny".into(), source: "y".into(), ..Default::default() },
        ];
        let err = permission_matrix(&cfg, &models).unwrap_err().to_string();
        assert!(err.starts_with("models[1].required_scope"), "{err}");
        let matrix = permission_matrix(&cfg, &models[..1]).unwrap();
        assert_eq!(matrix.policy("local/smollm2-135m-instruct").unwrap().required_scope, "model_smollm2_135m");
    }

    #[test]
    fn only_exact_public_paths_are_public() {
        assert!(is_public("/v1/health"));
        assert!(is_public("/v1/version"));
        assert!(is_public("/.well-known/oauth-protected-resource"));
        for path in ["/v1/health/", "//v1/health", "/v1/models", "/nope", "/V1/health", "/v1/%68ealth"] {
            assert!(!is_public(path), "{path}");
        }
    }
}
