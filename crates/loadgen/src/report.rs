//! The report: one [`Report`] value, printed for people ([`Report::render`]) and written as JSON for
//! machines (`--json`, schema [`SCHEMA`]; `docs/load-testing.md` lists every field).
//!
//! Rates divide by the run's wall time, from the first request sent to the last one finished.
//! Latencies are in milliseconds; tokens per second per request is a request's output tokens divided
//! by its end-to-end latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::RunResult;
use crate::scenario::{Api, MaxTokens, Mode, Plan};
use crate::stats::{Class, Summary, TierStats};
use crate::tokens::TenantMix;

/// The JSON report's schema name; bumped when a field changes meaning or goes away (v2: 503 is
/// `unavailable_503`, no longer part of `server_error_5xx`; `disconnected` and `http_status` added).
pub const SCHEMA: &str = "llamagate-load/report/v2";

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Scenario name.
    pub scenario: Option<String>,
    /// The endpoint's URL.
    pub url: String,
    /// `chat` or `completions`.
    pub api: Api,
    /// Model id.
    pub model: String,
    /// Whether SSE was asked for.
    pub stream: bool,
    /// Closed loop: workers.
    pub concurrency: Option<usize>,
    /// Open loop: offered requests per second.
    pub rate: Option<f64>,
    /// Sending time limit in seconds.
    pub duration_s: Option<f64>,
    /// Request limit.
    pub requests: Option<u64>,
    /// `max_tokens` range.
    pub max_tokens: MaxTokens,
    /// Seed.
    pub seed: u64,
    /// Tenants: tier and weight.
    pub tenants: Vec<TenantInfo>,
}

/// A tenant in the config section (never its token).
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    /// Tier name.
    pub tier: String,
    /// Weight.
    pub weight: f64,
    /// Whether requests carried a token.
    pub authenticated: bool,
}

/// Results of one tier, or of all together.
#[derive(Debug, Clone, Serialize)]
pub struct TierReport {
    /// Requests finished.
    pub requests: u64,
    /// Of which successful.
    pub ok: u64,
    /// Of which failed.
    pub failed: u64,
    /// Sends repeated because a request failed before any byte of an answer (a refused or stale
    /// keep-alive connection); these requests are counted once, by how they finally ended.
    pub resent: u64,
    /// Requests by outcome class (`ok`, `unauthorized_401`, `forbidden_403`, `rate_limited_429`,
    /// `unavailable_503`, `server_error_5xx`, `other_status`, `transport`, `disconnected`); every key
    /// is always present.
    pub status: BTreeMap<&'static str, u64>,
    /// Requests by the HTTP status they received (`"200"`, `"413"`, …; only statuses seen). A
    /// request without a status line (a transport failure, a hang-up before it) is in none.
    pub http_status: BTreeMap<u16, u64>,
    /// All requests per second of wall time.
    pub requests_per_s: f64,
    /// Successful requests per second.
    pub ok_per_s: f64,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Output tokens per second of wall time.
    pub output_tokens_per_s: f64,
    /// Time to first token, ms (streamed runs).
    pub ttft_ms: Option<Summary>,
    /// Gap between text chunks, ms (streamed runs).
    pub inter_token_ms: Option<Summary>,
    /// End-to-end latency, ms.
    pub latency_ms: Option<Summary>,
    /// Output tokens per second of each request.
    pub request_output_tokens_per_s: Option<Summary>,
}

/// A tier's results with its name.
#[derive(Debug, Clone, Serialize)]
pub struct NamedTier {
    /// Tier name.
    pub tier: String,
    /// Its results.
    #[serde(flatten)]
    pub report: TierReport,
}

/// Percentiles of one timeline second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
}

/// One second of the run (by completion time).
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds from the start (bucket start).
    pub t_s: u64,
    /// Successful requests finished in this second.
    pub ok: u64,
    /// Failed requests finished in this second.
    pub failed: u64,
    /// Output tokens of the successful ones.
    pub output_tokens: u64,
    /// End-to-end latency, ms.
    pub latency_ms: Option<Percentiles>,
    /// Time to first token, ms.
    pub ttft_ms: Option<Percentiles>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// What was run.
    pub config: RunConfig,
    /// From the first request to the last one finished, seconds.
    pub wall_s: f64,
    /// When the last request was sent, seconds from the start.
    pub sending_s: f64,
    /// All tenants together.
    pub overall: TierReport,
    /// Per tier, in the order given.
    pub tiers: Vec<NamedTier>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// The first kinds of failure, with an example and how often each occurred.
    pub errors: Vec<ErrorCount>,
}

/// A kind of failure and its count.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    /// What the failures have in common: `HTTP <status> [<error.type>]`, `connect`, `timeout`, …
    pub kind: String,
    /// The message of the first one.
    pub example: String,
    /// Occurrences.
    pub count: u64,
}

fn tier_report(stats: &TierStats, wall_s: f64) -> TierReport {
    let ok = stats.count(Class::Ok);
    let requests = stats.total();
    let per_s = |n: u64| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    TierReport {
        requests,
        ok,
        failed: requests - ok,
        resent: stats.resent,
        status: Class::ALL.iter().map(|c| (c.key(), stats.count(*c))).collect(),
        http_status: stats.statuses.clone(),
        requests_per_s: per_s(requests),
        ok_per_s: per_s(ok),
        output_tokens: stats.output_tokens,
        output_tokens_per_s: per_s(stats.output_tokens),
        ttft_ms: stats.ttft.summary(1000.0),
        inter_token_ms: stats.inter_token.summary(1000.0),
        latency_ms: stats.latency.summary(1000.0),
        request_output_tokens_per_s: stats.request_tokens_per_s.summary(1000.0),
    }
}

fn percentiles(s: Option<Summary>) -> Option<Percentiles> {
    s.map(|s| Percentiles { p50: s.p50, p90: s.p90, p99: s.p99 })
}

impl Report {
    /// Builds the report of a finished run.
    pub fn build(plan: &Plan, mix: &TenantMix, result: &RunResult) -> Report {
        let wall_s = result.wall.as_secs_f64();
        let (concurrency, rate) = match plan.mode {
            Mode::Concurrency(n) => (Some(n), None),
            Mode::Rate(r) => (None, Some(r)),
        };
        let config = RunConfig {
            scenario: plan.name.clone(),
            url: plan.url.clone(),
            api: plan.api,
            model: plan.model.clone(),
            stream: plan.stream,
            concurrency,
            rate,
            duration_s: plan.duration.map(|d| d.as_secs_f64()),
            requests: plan.requests,
            max_tokens: plan.max_tokens,
            seed: plan.seed,
            tenants: mix
                .tenants()
                .iter()
                .map(|t| TenantInfo {
                    tier: t.tier.clone(),
                    weight: t.weight,
                    authenticated: t.authorization.is_some(),
                })
                .collect(),
        };
        let recorder = &result.recorder;
        Report {
            schema: SCHEMA,
            config,
            wall_s,
            sending_s: result.sending.as_secs_f64(),
            overall: tier_report(&recorder.overall, wall_s),
            tiers: mix
                .tenants()
                .iter()
                .zip(&recorder.tiers)
                .map(|(t, s)| NamedTier { tier: t.tier.clone(), report: tier_report(s, wall_s) })
                .collect(),
            timeline: recorder
                .timeline
                .buckets
                .iter()
                .enumerate()
                .map(|(t, b)| Second {
                    t_s: t as u64,
                    ok: b.ok,
                    failed: b.failed,
                    output_tokens: b.output_tokens,
                    latency_ms: percentiles(b.latency.summary(1000.0)),
                    ttft_ms: percentiles(b.ttft.summary(1000.0)),
                })
                .collect(),
            errors: recorder
                .errors
                .iter()
                .map(|(f, c)| ErrorCount { kind: f.kind.clone(), example: f.detail.clone(), count: *c })
                .collect(),
        }
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let load = match (c.concurrency, c.rate) {
            (Some(n), _) => format!("concurrency {n}"),
            (_, Some(r)) => format!("Poisson rate {r} req/s"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{}{} {} model {} ({}, {load}, max_tokens {}..{})",
            c.scenario.as_deref().map(|s| format!("[{s}] ")).unwrap_or_default(),
            c.url,
            match c.api {
                Api::Chat => "/v1/chat/completions",
                Api::Completions => "/v1/completions",
            },
            c.model,
            if c.stream { "streamed" } else { "not streamed" },
            c.max_tokens.min,
            c.max_tokens.max,
        );
        let _ = writeln!(out, "wall time {:.2} s (last request sent at {:.2} s)", self.wall_s, self.sending_s);
        render_tier(&mut out, "all tiers", &self.overall);
        if self.tiers.len() > 1 {
            for tier in &self.tiers {
                render_tier(&mut out, &format!("tier {}", tier.tier), &tier.report);
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nerrors (kind, count, first message):");
            for e in &self.errors {
                let _ = writeln!(out, "  {} × {}", e.kind, e.count);
                if !e.example.is_empty() {
                    let _ = writeln!(out, "      {}", e.example);
                }
            }
        }
        out
    }
}

fn render_tier(out: &mut String, title: &str, r: &TierReport) {
    let _ = writeln!(out, "\n{title}: {} requests, {} ok, {} failed", r.requests, r.ok, r.failed);
    if r.resent > 0 {
        let _ = writeln!(out, "  resent before any answer byte: {}", r.resent);
    }
    let failures: Vec<String> =
        r.status.iter().filter(|(k, v)| **k != "ok" && **v > 0).map(|(k, v)| format!("{k} {v}")).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "  failures: {}", failures.join(", "));
    }
    if r.http_status.keys().any(|s| *s != 200) {
        let statuses: Vec<String> = r.http_status.iter().map(|(s, n)| format!("{s} × {n}")).collect();
        let _ = writeln!(out, "  HTTP statuses: {}", statuses.join(", "));
    }
    let _ = writeln!(
        out,
        "  throughput: {:.2} req/s ({:.2} ok/s), {} output tokens, {:.2} tok/s",
        r.requests_per_s, r.ok_per_s, r.output_tokens, r.output_tokens_per_s
    );
    let _ = writeln!(out, "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9}", "", "mean", "p50", "p90", "p99", "max");
    for (name, summary) in [
        ("ttft ms", &r.ttft_ms),
        ("inter-token ms", &r.inter_token_ms),
        ("latency ms", &r.latency_ms),
        ("tok/s per request", &r.request_output_tokens_per_s),
    ] {
        if let Some(s) = summary {
            let _ = writeln!(
                out,
                "  {name:<22} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                s.mean, s.p50, s.p90, s.p99, s.max
            );
        }
    }
}
