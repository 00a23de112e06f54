//! # llamagate-load: realistic multi-tenant load against any OpenAI-compatible endpoint
//!
//! **Owns** the load tool: scenario files and their defaults ([`scenario`]), tenants and their
//! tokens ([`tokens`]), what is sent and when ([`workload`]: prompts, `max_tokens` ranges, Poisson
//! arrivals), sending and timing one request ([`client`], reading SSE with [`sse`]), the closed and
//! open loops ([`runner`]), results ([`stats`]: HDR histograms per tier and per second), the report
//! ([`report`], text and JSON) and its chart ([`chart`], SVG). [`trivial_server`] is a canned endpoint
//! for measuring the tool itself.
//!
//! **Must not know** about llamagate's internals: it talks HTTP to `/v1/chat/completions` and
//! `/v1/completions` like any client, so the same scenario runs unchanged against llamagate,
//! llama.cpp's server, vLLM or a Llama Stack distribution. Tokens come from outside (a file, an
//! environment variable or a command such as `llamagate token --tier premium`).
//!
//! The flow: [`Scenario`] (YAML file, then command-line overrides) → [`Plan`] (defaults applied,
//! validated) → [`run_scenario`] fetches tokens, runs the loop, and returns a [`Report`].

#![deny(missing_docs)]

pub mod chart;
pub mod cli;
pub mod client;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sse;
pub mod stats;
pub mod tokens;
pub mod trivial_server;
pub mod workload;

use std::sync::Arc;

pub use progress::Live;
pub use report::Report;
pub use scenario::{Plan, Scenario};

/// Installs the rustls `ring` provider once per process: reqwest is built without a default one
/// (for `https://` endpoints). Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs a scenario from start to report: validates it, fetches the tenants' tokens, loads the
/// prompts, runs the loop (updating `live` as requests finish) and builds the report.
pub async fn run_scenario(scenario: &Scenario, live: Arc<Live>) -> anyhow::Result<Report> {
    let plan = Plan::resolve(scenario)?;
    let mut specs = Vec::new();
    if let Some(path) = &scenario.token_file {
        specs.extend(tokens::read_token_file(path)?);
    }
    specs.extend(scenario.tenants.iter().flatten().cloned());
    // Token commands can be slow (they may sign with a fresh key); they run before the clock starts.
    if !plan.stream
        && let Some(spec) = specs.iter().find(|s| s.disconnect_after == Some(scenario::Disconnect::FirstToken))
    {
        anyhow::bail!("tenant {:?}: disconnect_after: first_token needs stream: true", spec.tier);
    }
    let tenants = tokio::task::spawn_blocking(move || tokens::resolve(&specs)).await??;
    let mix = tokens::TenantMix::new(tenants);
    let prompts = match &plan.prompts {
        Some(path) => workload::read_prompts(path)?,
        None => workload::builtin_prompts(),
    };
    let shape = workload::RequestShape {
        api: plan.api,
        model: plan.model.clone(),
        stream: plan.stream,
        temperature: plan.temperature,
        max_tokens: plan.max_tokens,
        prompts,
    };
    let result = runner::run(&plan, runner::Workload { shape, mix: mix.clone() }, live).await?;
    Ok(Report::build(&plan, &mix, &result))
}
