//! `llamagate token`: prints an access token signed by the development issuer, for a server started
//! with `llamagate serve --dev` on the same host and port (and the same key file).

use std::path::PathBuf;

use clap::Args;

use crate::config::StackConfig;
use crate::dev_issuer::{self, DevIssuer, TokenClaims};

/// The scope given when neither `--scope` nor `--config` says otherwise (the bundled model's).
const FALLBACK_SCOPE: &str = "model_smollm2_135m";

/// Options of `llamagate token`.
#[derive(Args)]
pub struct TokenArgs {
    /// A stack config: its `server.host`/`server.port` give the default issuer and its models' required
    /// scopes the default scopes.
    #[arg(long, env = "LLAMAGATE_CONFIG")]
    config: Option<PathBuf>,
    /// The server's URL, which is the issuer and audience (default: from --config, else http://127.0.0.1:8321).
    #[arg(long)]
    issuer: Option<String>,
    /// A scope to grant; repeat for several (default: every served model's required scope, and
    /// `model_safety` when shields are configured).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The `tier` claim (e.g. free, premium). Servers rate-limit by it only when `rate_limits.tier_claim: tier`
    /// is configured; otherwise scopes pick the tier (`--scope premium_access`, see docs/configuration.md).
    #[arg(long)]
    tier: Option<String>,
    /// The `sub` claim.
    #[arg(long, default_value = "dev-user")]
    sub: String,
    /// The `client_id` claim.
    #[arg(long, default_value = "dev-client")]
    client_id: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Print a token whose lifetime ended an hour ago, which every server refuses as expired: for
    /// testing clients and load runs (`benches/scenarios/soak.yaml`).
    #[arg(long)]
    expired: bool,
    /// The development key file (created when missing).
    #[arg(long, env = "LLAMAGATE_DEV_KEY_FILE", default_value = dev_issuer::DEFAULT_KEY_FILE)]
    key_file: PathBuf,
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.ttl > 0, "--ttl must be at least 1 second");
    let config = args.config.as_deref().map(StackConfig::load).transpose()?;
    let issuer = match (&args.issuer, &config) {
        (Some(issuer), _) => issuer.trim_end_matches('/').to_string(),
        (None, Some(config)) => dev_issuer::issuer_url(&config.server.host, config.server.port),
        (None, None) => dev_issuer::issuer_url("127.0.0.1", crate::config::DEFAULT_PORT),
    };
    let scopes = if !args.scopes.is_empty() {
        args.scopes
    } else if let Some(config) = &config {
        let oauth = config.oauth_config.clone().unwrap_or_default();
        let mut scopes = crate::gate::auth::model_scopes(&oauth, &config.inference_plan()?.scopes())?;
        // Shields are unlocked by their own scope; a development token should reach them too.
        let safety = llamagate_authz::SAFETY_SCOPE;
        if !config.shields.is_empty() && !scopes.iter().any(|s| s == safety) {
            scopes.push(safety.to_string());
        }
        scopes
    } else {
        vec![FALLBACK_SCOPE.to_string()]
    };
    let key = DevIssuer::load_or_create(&args.key_file)?;
    let claims = TokenClaims {
        issuer: &issuer,
        subject: &args.sub,
        client_id: &args.client_id,
        scopes: &scopes,
        tier: args.tier.as_deref(),
        ttl: args.ttl,
        expired: args.expired,
    };
    println!("{}", key.sign(&claims.to_json()?)?);
    Ok(())
}
