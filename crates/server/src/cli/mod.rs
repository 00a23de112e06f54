//! The command line: `serve` runs the Llama Stack HTTP API over the configured models; `generate`
//! drives the engine by hand for one prompt; `token` mints a development token for `serve --dev`;
//! `audit verify` checks the audit log's hash chain; `config check` shows the effective settings. This module parses, sets up logging and
//! dispatches; each subcommand is its own module.

mod audit;
mod config_check;
mod generate;
mod serve;
mod token;

use clap::{Parser, Subcommand};

/// Serve Llama-family models through the Llama Stack API, behind an OAuth 2.1 resource server.
#[derive(Parser)]
#[command(name = "llamagate", version, about)]
pub struct Cli {
    /// Compute threads for the engine (default: candle's choice, one per physical core). On a shared
    /// machine, fewer threads than cores avoids spin-wait collapse.
    #[arg(long, global = true, env = "LLAMAGATE_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Llama Stack HTTP API for the models in a stack config.
    Serve(serve::ServeArgs),
    /// Generate a completion for one prompt and print it, with token counts and speed on stderr.
    Generate(generate::GenerateArgs),
    /// Print an access token from the development issuer, for a server started with `serve --dev`.
    Token(token::TokenArgs),
    /// Work with the audit log (`audit verify <files>` checks its hash chain).
    Audit(audit::AuditArgs),
    /// Check a stack config (`config check <file>`): validate it as `serve` would and print the
    /// effective settings with each value's source.
    Config(config_check::ConfigArgs),
}

/// Runs one command line. Must be called first thing in `main`, before any other thread exists.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(threads) = cli.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        // SAFETY: called first thing in main, before any other thread exists; candle and rayon read these
        // once, when their pools are built on the first tensor operation.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
    // reqwest is built without a TLS provider; the authorization-server client needs one.
    llamagate_authz::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Token(args) => token::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Config(args) => config_check::run(args),
    }
}
