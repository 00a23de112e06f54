//! `llamagate serve`: read the config, load the models, listen, and shut down gracefully.
//!
//! Models load before the listener opens, so a server that accepts connections can answer them. On
//! SIGTERM or SIGINT the listener closes at once and in-flight requests (streams included) run to
//! completion before the process exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::{self, AppState};
use crate::auth::{self, AuthState};
use crate::config::StackConfig;
use crate::registry::ModelRegistry;

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
    let oauth = auth::resolve_config(config.oauth_config.take(), |key| std::env::var(key).ok())?;
    let auth_state = if oauth.enable_auth {
        tracing::info!(
            issuer = %oauth.auth_server_uri,
            resource = %oauth.stack_uri,
            method = ?oauth.token_validation_method,
            enforce_model_permissions = oauth.enforce_model_permissions,
            "OAuth resource server enabled"
        );
        Some(Arc::new(AuthState::new(&oauth, &config.models)?))
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
    let registry = Arc::new(ModelRegistry::load(&config.models)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        if let Some(auth) = &auth_state {
            auth.prefetch().await;
        }
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener =
            tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        let app = app::router(AppState { registry, auth: auth_state }, config.server.max_body_bytes);
        tracing::info!(address = %bound, "listening");
        // Tests and scripts read this line to learn the port when `--port 0` was given.
        println!("llamagate listening on http://{bound}");
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("shut down");
        Ok(())
    })
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
