//! The command line: every scenario key as a flag, plus where the report goes.
//!
//! Flags build a second [`Scenario`] that is laid over the `--scenario` file, so the file gives the
//! standard run and the command line changes what it names (`--duration 10s`, `--url …`).

use std::path::PathBuf;

use clap::Parser;

use crate::scenario::{Api, DurationSpec, MaxTokens, Scenario, TenantSpec};
use crate::tokens::parse_tokens_cmd;

/// llamagate-load: multi-tenant load against a Llama Stack / OpenAI-compatible endpoint.
///
/// Sends chat or text completions (streamed or not) at a fixed concurrency or a Poisson request
/// rate, and reports status counts, time to first token, inter-token latency, end-to-end latency
/// and throughput, overall and per tier. See docs/load-testing.md.
#[derive(Debug, Parser)]
#[command(name = "llamagate-load", version)]
pub struct Cli {
    /// A YAML scenario file (e.g. benches/scenarios/single-stream.yaml); flags override its keys.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// The server's base URL [default: http://127.0.0.1:8321].
    #[arg(long)]
    pub url: Option<String>,
    /// The model id sent in every request [default: smollm2-135m-instruct].
    #[arg(long)]
    pub model: Option<String>,
    /// Which endpoint [default: chat].
    #[arg(long, value_enum)]
    pub api: Option<Api>,
    /// Stream with SSE (measures TTFT and inter-token latency) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub stream: Option<bool>,
    /// Closed loop: keep this many requests in flight [default: 1].
    #[arg(long, short = 'c', conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Stop sending after this long: 30s, 2m, 500ms [default: 30s unless --requests].
    #[arg(long, short = 'd')]
    pub duration: Option<DurationSpec>,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// A JSONL prompts file: {"prompt": "..."} or {"messages": [...]} per line [default: built-in set].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// max_tokens, or a range drawn uniformly: 16, 8..32 [default: 32].
    #[arg(long)]
    pub max_tokens: Option<MaxTokens>,
    /// The temperature field [default: not sent].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Seed for every random choice [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per-request timeout [default: 300s].
    #[arg(long)]
    pub timeout: Option<DurationSpec>,
    /// Open loop: the most requests in flight before arrivals wait [default: 4096].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// A single bearer token for every request (tier "default").
    #[arg(long, env = "LLAMAGATE_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A token file: `tier weight [token]` per line.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A tenant whose token a shell command prints: TIER:WEIGHT:COMMAND (repeatable), e.g.
    /// 'premium:3:llamagate token --tier premium'.
    #[arg(long = "tokens-cmd", value_parser = parse_tokens_cmd, value_name = "TIER:WEIGHT:COMMAND")]
    pub tokens_cmd: Vec<TenantSpec>,
    /// A name for the report [default: the scenario's].
    #[arg(long)]
    pub name: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of latency and throughput over time to this file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Serve a trivial canned endpoint on ADDR instead (for measuring the tool itself).
    #[arg(long, hide = true, value_name = "ADDR")]
    pub self_test_server: Option<String>,
}

impl Cli {
    /// The scenario keys the flags set.
    pub fn overrides(&self) -> Scenario {
        let mut tenants: Vec<TenantSpec> = self.tokens_cmd.clone();
        if let Some(token) = &self.token {
            tenants.push(TenantSpec { token: Some(token.clone()), ..TenantSpec::named("default", 1.0) });
        }
        Scenario {
            name: self.name.clone(),
            url: self.url.clone(),
            model: self.model.clone(),
            api: self.api,
            stream: self.stream,
            concurrency: self.concurrency,
            rate: self.rate,
            duration: self.duration,
            requests: self.requests,
            prompts: self.prompts.clone(),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            timeout: self.timeout,
            max_in_flight: self.max_in_flight,
            token_file: self.token_file.clone(),
            tenants: (!tenants.is_empty()).then_some(tenants),
        }
    }

    /// The scenario to run: the file (if any) with the flags laid over it.
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        let base = match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario::default(),
        };
        Ok(base.overridden_by(self.overrides()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "llamagate-load",
            "-c",
            "8",
            "-d",
            "10s",
            "--max-tokens",
            "4..8",
            "--stream",
            "false",
            "--tokens-cmd",
            "premium:2:echo x",
            "--tokens-cmd",
            "free:1:echo y",
        ])
        .unwrap();
        let s = cli.overrides();
        assert_eq!(s.concurrency, Some(8));
        assert_eq!(s.stream, Some(false));
        assert_eq!(s.tenants.as_ref().map(Vec::len), Some(2));
        assert!(Cli::try_parse_from(["llamagate-load", "-c", "1", "-r", "2"]).is_err());
        assert_eq!(Cli::try_parse_from(["llamagate-load", "--stream"]).unwrap().stream, Some(true));
    }
}
