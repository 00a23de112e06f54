//! `llamagate serve`: read the config, load the models, listen, and shut down gracefully.
//!
//! Models load before the listener opens, so a server that accepts connections can answer them. On
//! SIGTERM or SIGINT the listener closes at once and in-flight requests (streams included) run to
//! completion before the process exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use llamagate_authz::{OAuthConfig, SafetyPolicy};

use crate::backends::registry::ModelRegistry;
use crate::backends::shields::ShieldRegistry;
use crate::config::StackConfig;
use crate::dev_issuer::{self, DevIssuer};
use crate::gate::auth::{self, AuthState};
use crate::gate::limits::RateLimits;
use crate::gate::metrics::Metrics;
use crate::gate::safety::SafetyGate;
use crate::http::{listener, router};
use crate::state::AppState;

/// Options of `llamagate serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The stack config (YAML) listing the served models and server settings.
    #[arg(long, env = "LLAMAGATE_CONFIG")]
    config: PathBuf,
    /// Overrides `server.host`.
    #[arg(long)]
    host: Option<String>,
    /// Overrides `server.port` (0 picks a free port; the bound address is logged).
    #[arg(long)]
    port: Option<u16>,
    /// Development mode: the server is its own authorization server. It signs with a persistent ES256
    /// key (see --dev-key-file), publishes the public key, and accepts tokens from `llamagate token`.
    /// Overrides `oauth_config`'s issuer, resource URL and keys. Never use it in production.
    #[arg(long)]
    dev: bool,
    /// Lets `--dev` listen on an address other machines can reach. Its tokens are signed by a key on
    /// this disk for any scope; only for a development machine on a trusted network.
    #[arg(long, requires = "dev")]
    dev_allow_remote: bool,
    /// The development key file (created, mode 0600, when missing).
    #[arg(long, env = "LLAMAGATE_DEV_KEY_FILE", default_value = dev_issuer::DEFAULT_KEY_FILE)]
    dev_key_file: PathBuf,
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = StackConfig::load(&args.config)?;
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    config.validate()?;
    let plan = config.inference_plan()?;
    for note in &plan.skipped {
        tracing::warn!("{note}");
    }
    // Under --dev the issuer is this server's own URL, so a free port (0) is bound now to learn it.
    let mut early_listener = None;
    let dev = if args.dev {
        refuse_remote_dev(&config.server.host, args.dev_allow_remote)?;
        if config.server.port == 0 {
            let listener = std::net::TcpListener::bind((config.server.host.as_str(), 0))
                .with_context(|| format!("cannot listen on {}:0", config.server.host))?;
            config.server.port = listener.local_addr()?.port();
            early_listener = Some(listener);
        }
        let issuer = dev_issuer::issuer_url(&config.server.host, config.server.port);
        let key = DevIssuer::load_or_create(&args.dev_key_file)?;
        Some((issuer, key))
    } else {
        None
    };
    // A misspelt `LLAMA_STACK_OAUTH_*` variable would otherwise be ignored in silence.
    OAuthConfig::check_env_names(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))?;
    let oauth = match &dev {
        Some((issuer, _)) => dev_oauth_config(config.oauth_config.take(), issuer)?,
        None => {
            let mut oauth = auth::resolve_config(config.take_oauth_config()?, |key| std::env::var(key).ok())?;
            default_audit_file(&mut oauth, &args.config);
            oauth
        }
    };
    // Content safety's levels, shared by the authentication layer (which picks each caller's level) and
    // the safety gate (which applies it).
    // The levels decide shield answers for every caller; chat is checked with them only when
    // `enforce_content_safety` is on.
    let safety_levels = Arc::new(SafetyPolicy::new(oauth.safety.clone(), &oauth.default_safety_level)?);
    let safety_policy = oauth.enforce_content_safety.then(|| safety_levels.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let auth_state = if oauth.enable_auth {
        tracing::info!(
            issuer = %oauth.auth_server_uri,
            resource = %oauth.stack_uri,
            method = ?oauth.token_validation_method,
            enforce_model_permissions = oauth.enforce_model_permissions,
            "OAuth resource server enabled"
        );
        let routes = router::catalog();
        // Inside the runtime: the DPoP replay store prepares its (lazy) Redis connection here.
        let _runtime = runtime.enter();
        Some(Arc::new(AuthState::new(&oauth, &plan.scopes(), &routes, &config.server, safety_policy.clone())?))
    } else {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (oauth_config.enable_auth: false): every route and every model is open \
             to anyone who can reach this port. Use this only for local development."
        );
        eprintln!(
            "WARNING: llamagate authentication is DISABLED (oauth_config.enable_auth: false); do not expose this server"
        );
        None
    };
    // Loading is blocking, CPU- and IO-heavy work; it happens before the runtime starts serving.
    let audit_log = auth_state.as_ref().and_then(|a| a.audit_log().cloned());
    let metrics = Arc::new(Metrics::new(audit_log.clone()));
    let registry = Arc::new(ModelRegistry::load(&plan, &metrics)?);
    let shields = Arc::new(ShieldRegistry::new(&config.shields, &registry)?);
    let safety = SafetyGate::new(safety_policy, config.safety_shield.as_deref(), &shields);
    runtime.block_on(async move {
        // Under --dev the keys come from this very server, fetched on the first request.
        if let Some(auth) = auth_state.as_ref().filter(|_| dev.is_none()) {
            auth.prefetch().await;
        }
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = match early_listener {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)?
            }
            None => {
                tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?
            }
        };
        let bound = listener.local_addr()?;
        let dev_docs = dev.as_ref().map(|(issuer, key)| {
            Arc::new(dev_issuer::Published { metadata: dev_issuer::metadata(issuer), jwks: key.jwks() })
        });
        let limits = RateLimits::from_config(&oauth)?;
        registry.start_health_checks();
        let state = AppState {
            registry,
            auth: auth_state,
            dev_issuer: dev_docs,
            limits,
            shields,
            metrics,
            safety,
            safety_levels,
        };
        let app = router::router(state, config.server.max_body_bytes);
        tracing::info!(address = %bound, "listening");
        // Tests and scripts read this line to learn the port when `--port 0` was given.
        println!("llamagate listening on http://{bound}");
        if let Some((issuer, key)) = &dev {
            print_dev_banner(issuer, key, &args.dev_key_file, &args.config);
        }
        listener::serve(listener, app, config.server.connection_limits(), shutdown_signal()).await?;
        // In-flight requests have finished; their last records must reach the disk before exit.
        if let Some(log) = audit_log {
            log.flush();
        }
        tracing::info!("shut down");
        Ok(())
    })
}

/// `--dev` listens on loopback only unless `--dev-allow-remote` says otherwise: anyone who reaches a
/// development server can read its RFC 8414 metadata and is one stolen key file away from any token.
fn refuse_remote_dev(host: &str, allowed: bool) -> anyhow::Result<()> {
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback || allowed,
        "--dev on {host}: development mode listens on loopback only (127.0.0.1, ::1, localhost); add \
         --dev-allow-remote to expose it on purpose"
    );
    Ok(())
}

/// The audit file when the config names no sink: `inference_audit.log` beside the config file (the
/// design's default), rather than records mixed into the terminal.
fn default_audit_file(oauth: &mut OAuthConfig, config_file: &std::path::Path) {
    if oauth.enable_auth && oauth.enable_audit_logging && oauth.audit.path.is_none() && !oauth.audit.stdout {
        let dir = config_file.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join(DEFAULT_AUDIT_LOG);
        tracing::info!(path = %path.display(), "audit records go to the default file (set oauth_config.audit.path or stdout)");
        oauth.audit.path = Some(path);
    }
}

/// The audit file's name when the config names no sink.
const DEFAULT_AUDIT_LOG: &str = "inference_audit.log";

/// Where `serve --dev` writes audit records unless the config says otherwise.
const DEV_AUDIT_LOG: &str = ".llamagate/audit.log";

/// The `oauth_config` of `serve --dev`: the configured section (or the defaults), with environment
/// overrides applied, then pointed at this server as issuer, resource and key set, authentication on.
fn dev_oauth_config(section: Option<OAuthConfig>, issuer: &str) -> anyhow::Result<OAuthConfig> {
    let mut cfg = section.unwrap_or_default();
    cfg.apply_env_overrides(|key| std::env::var(key).ok())?;
    cfg.enable_auth = true;
    cfg.auth_server_uri = issuer.to_string();
    cfg.stack_uri = issuer.to_string();
    cfg.jwks_uri = Some(format!("{issuer}{}", dev_issuer::JWKS_PATH));
    cfg.audience = None;
    cfg.token_validation_method = llamagate_authz::TokenValidationMethod::JwtAsymmetric;
    if !cfg.allowed_algorithms.iter().any(|a| a == "ES256") {
        cfg.allowed_algorithms.push("ES256".into());
    }
    // The server fetches its own keys over plain http, also when bound to a non-loopback address.
    cfg.allow_insecure_http = true;
    // Audit records go next to the development key (git-ignored) rather than into the terminal.
    if cfg.audit.path.is_none() && !cfg.audit.stdout {
        cfg.audit.path = Some(std::path::PathBuf::from(DEV_AUDIT_LOG));
    }
    cfg.validate()?;
    Ok(cfg)
}

fn print_dev_banner(issuer: &str, key: &DevIssuer, key_file: &std::path::Path, config: &std::path::Path) {
    let key_arg = if key_file == std::path::Path::new(dev_issuer::DEFAULT_KEY_FILE) {
        String::new()
    } else {
        format!(" --key-file {}", key_file.display())
    };
    // This very binary, so the line pastes as printed whether or not `llamagate` is on the PATH.
    let program = std::env::current_exe().map_or_else(|_| "llamagate".to_string(), |p| p.display().to_string());
    eprintln!(
        "\n\
         ==> llamagate DEVELOPMENT MODE (--dev): this server is its own token issuer.\n\
         \x20   issuer/audience: {issuer}   signing key: {} (kid {})\n\
         \x20   JWKS: {issuer}{}   Do not use --dev in production.\n\
         \x20   Get a token (from this directory):\n\
         \x20     TOKEN=$({program} token --config {} --issuer {issuer} --tier premium{key_arg})\n\
         \x20     curl -H \"Authorization: Bearer $TOKEN\" {issuer}/v1/models\n",
        key_file.display(),
        key.kid(),
        dev_issuer::JWKS_PATH,
        config.display(),
    );
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what container runtimes send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
