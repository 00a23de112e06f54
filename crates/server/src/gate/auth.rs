//! The OAuth 2.1 resource server, wired: `oauth_config` resolution at start, and the authentication
//! layer in front of every non-public path, which turns a valid token into the request's [`Caller`]
//! (principal, tier, rate key, safety level, model permissions) — computed once, here.
//!
//! All token and policy rules live in `llamagate_authz`; this module only moves HTTP into
//! [`AuthRequest`] and the result back into the request (a [`Caller`]) or an answer ([`ApiError::Auth`]).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llamagate_authz::ratelimit::BudgetKey;
use llamagate_authz::{
    AuditLog, AuthError, AuthRequest, Authenticator, ChallengeParams, Clock, OAuthConfig, PermissionError,
    PermissionMatrix, ProtectedResourceMetadata, RateKey, Refusal, SafetyPolicy, Tiers,
};

use crate::config::ServerConfig;
use crate::config::providers::ModelScope;
use crate::gate::audit_notes::{AuditNotes, AuthRefusal};
use crate::gate::caller::{Caller, Identity, ModelAccess};
use crate::gate::refusal_limit::{PENALTY, RefusalLimit};
use crate::http::error::{ApiError, DPOP_NONCE};
use crate::http::route_spec::RouteCatalog;

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

/// Everything the request path needs to authenticate a caller and describe it; built once at start.
pub struct AuthState {
    authenticator: Authenticator,
    challenge: ChallengeParams,
    /// `stack_uri` without a trailing slash: the request URL is this plus the path (DPoP `htu`).
    base_url: String,
    metadata: ProtectedResourceMetadata,
    /// The exact paths served without a token (the route table's public rows).
    public_paths: Vec<&'static str>,
    /// The route templates that also need [`Self::operator_scope`].
    operator_paths: Vec<&'static str>,
    /// The scope of operators (`server.operator_scope`).
    operator_scope: String,
    /// Present when `enforce_model_permissions` is on.
    access: Option<Arc<ModelAccess>>,
    /// Present when `enable_audit_logging` is on.
    audit: Option<AuditLog>,
    /// Picks each authenticated caller's tier: its rate limits and the priority that orders the engine's
    /// queue (also when rate limiting is off).
    tiers: Tiers,
    /// Picks each caller's safety level; present when content safety is enforced.
    safety: Option<Arc<SafetyPolicy>>,
    /// Whose budget a request is charged to (`rate_limits.budget_key`).
    budget_key: BudgetKey,
    /// Refusals counted per peer address.
    refusals: RefusalLimit,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl AuthState {
    /// Builds the authenticator and, when enforced, the permission matrix for these models. `routes`
    /// says which paths pass without a token and which need the operator scope; `safety` picks safety
    /// levels when content safety is on.
    pub fn new(
        cfg: &OAuthConfig,
        models: &[ModelScope],
        routes: &RouteCatalog,
        server: &ServerConfig,
        safety: Option<Arc<SafetyPolicy>>,
    ) -> anyhow::Result<Self> {
        let matrix = if cfg.enforce_model_permissions { Some(permission_matrix(cfg, models)?) } else { None };
        let authenticator = Authenticator::from_config(cfg, Clock::system()).context("oauth_config")?;
        let challenge = authenticator.challenge_params().clone();
        let scopes = matrix.as_ref().map(|m| m.scopes()).unwrap_or_default();
        let audit = if cfg.enable_audit_logging {
            Some(AuditLog::start(&cfg.audit, cfg.audit_log_level).context("oauth_config.audit.path")?)
        } else {
            None
        };
        if let Some(log) = &audit {
            authenticator.audit_to(log);
        }
        Ok(Self {
            authenticator,
            access: matrix.map(|matrix| Arc::new(ModelAccess { matrix, challenge: challenge.clone() })),
            challenge,
            base_url: cfg.stack_uri.trim_end_matches('/').to_string(),
            metadata: ProtectedResourceMetadata::new(cfg, scopes, RESOURCE_NAME),
            public_paths: routes.public_paths(),
            operator_paths: routes.operator_paths(),
            operator_scope: server.operator_scope.clone(),
            audit,
            tiers: Tiers::from_config(&cfg.rate_limits, &cfg.default_user_tier),
            safety,
            budget_key: cfg.rate_limits.budget_key,
            refusals: RefusalLimit::new(
                NonZeroU32::new(server.max_auth_failures_per_minute_per_ip).unwrap_or(NonZeroU32::MIN),
            ),
        })
    }

    /// The audit log, when `enable_audit_logging` is on.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
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

    /// The route-level check after authentication: an operator route needs the operator scope. A
    /// refusal is a 403 whose audit record names the caller.
    fn authorize_route(&self, request: &Request, caller: &Caller) -> Result<(), ApiError> {
        if !self.needs_operator(request) {
            return Ok(());
        }
        let Some(principal) = caller.principal() else { return Err(ApiError::RouteNotFound) };
        if principal.scopes.contains(&self.operator_scope) {
            return Ok(());
        }
        tracing::info!(sub = %principal.subject, "operator route refused: no operator scope");
        if let Some(notes) = caller.notes() {
            notes.set_caller(principal, caller.tier_name());
        }
        let error = AuthError::InsufficientScope { required: self.operator_scope.clone() };
        Err(ApiError::Auth(error.to_response(&self.challenge)))
    }

    /// Whether the request's route is one of the operator routes.
    fn needs_operator(&self, request: &Request) -> bool {
        let route = request.extensions().get::<MatchedPath>();
        route.is_some_and(|route| self.operator_paths.contains(&route.as_str()))
    }

    /// Everything the rest of the request needs to know about an authenticated principal, resolved
    /// once: tier, rate key, safety level, model permissions and the audit notes to report to.
    fn caller(&self, principal: llamagate_authz::Principal, notes: Option<AuditNotes>) -> Caller {
        let tier = self.tiers.resolve(&principal);
        let rate_key = RateKey::charged(&principal, self.budget_key);
        let safety_level =
            self.safety.as_ref().map(|policy| policy.level_name_for(Some(&principal.scopes)).to_string());
        Caller::authenticated(Identity { principal, tier, rate_key }, safety_level, self.access.clone(), notes)
    }
}

/// Registers every served model; a model without a scope stops start-up naming its key.
fn permission_matrix(cfg: &OAuthConfig, models: &[ModelScope]) -> anyhow::Result<PermissionMatrix> {
    let mut matrix = PermissionMatrix::from_config(cfg);
    for model in models {
        let key = &model.key;
        match matrix.register(&model.id, model.required_scope.as_deref()) {
            Ok(policy) => tracing::info!(model = %model.id, scope = %policy.required_scope, "model permission"),
            Err(e @ PermissionError::NoScope(_)) => bail!(
                "{key}.required_scope: {e} (enforce_model_permissions is on and `{}` matches no model family)",
                model.id
            ),
            Err(e) => bail!("{key}.required_scope: {e}"),
        }
    }
    Ok(matrix)
}

/// The required scope of every model, in order and without repeats (for development tokens).
pub fn model_scopes(cfg: &OAuthConfig, models: &[ModelScope]) -> anyhow::Result<Vec<String>> {
    Ok(permission_matrix(cfg, models)?.scopes().into_iter().collect())
}

/// The authentication layer: a valid token puts its [`Caller`] into the request extensions (read by
/// the audit layer, the handlers and the pipeline); anything else is answered here with the challenge.
pub async fn authenticate(State(auth): State<Arc<AuthState>>, mut request: Request, next: Next) -> Response {
    if auth.public_paths.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if let Some(ip) = peer
        && auth.refusals.is_penalized(ip).await
    {
        return ApiError::TooManyRefusals { retry_after_secs: PENALTY.as_secs() }.into_response();
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
    match auth.authenticator.authenticate_or_refuse(&auth_request).await {
        Ok(principal) => {
            tracing::debug!(sub = %principal.subject, client_id = %principal.client_id, "authenticated");
            // RFC 9449 §8.2: answers to DPoP requests carry the current nonce, so a client picks up a
            // rotated one without first being refused.
            let nonce = principal.cnf_jkt.as_ref().and_then(|_| auth.authenticator.dpop_nonce());
            let notes = request.extensions().get::<AuditNotes>().cloned();
            let caller = auth.caller(principal, notes);
            if let Err(refusal) = auth.authorize_route(&request, &caller) {
                return refusal.into_response();
            }
            request.extensions_mut().insert(caller);
            let mut response = next.run(request).await;
            if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                response.headers_mut().insert(DPOP_NONCE, value);
            }
            response
        }
        Err(Refusal { error, principal }) => {
            tracing::info!(reason = error.reason(), status = error.status(), "request refused");
            // The AS being down (503) is not the caller's doing, nor is being asked for a nonce.
            if let Some(ip) = peer.filter(|_| error.status() < 500 && !matches!(error, AuthError::UseDpopNonce { .. }))
            {
                auth.refusals.refused(ip).await;
            }
            let mut response = ApiError::Auth(error.to_response(&auth.challenge)).into_response();
            let principal = principal.map(|p| Arc::new(*p));
            response.extensions_mut().insert(AuthRefusal { reason: error.reason(), principal });
            response
        }
    }
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
        let scope =
            |i: usize, id: &str| ModelScope { key: format!("models[{i}]"), id: id.into(), required_scope: None };
        let models = vec![scope(0, "local/smollm2-135m-instruct"), scope(1, "tiny")];
        let err = permission_matrix(&cfg, &models).unwrap_err().to_string();
        assert!(err.starts_with("models[1].required_scope"), "{err}");
        let matrix = permission_matrix(&cfg, &models[..1]).unwrap();
        assert_eq!(matrix.policy("local/smollm2-135m-instruct").unwrap().required_scope, "model_smollm2_135m");
    }
}
