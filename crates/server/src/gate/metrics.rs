//! [`Metrics`]: the Prometheus counters an operator needs to see what the server decided, rendered in
//! the OpenMetrics text format (`prometheus-client`) by `GET /metrics` (`routes::metrics`).
//!
//! - `llamagate_http_requests_total{method, route, status}`: every answer, refusals included (`route`
//!   is the matched route template, or `unmatched`), counted by a layer over the whole router;
//! - `llamagate_tokens_total{model, kind}`: prompt and completion tokens the engine really processed,
//!   added when a generation settles;
//! - `llamagate_generation_{queue,ttft,duration,inter_token}_seconds{model}`: histograms of each
//!   finished generation's wait in the engine's queue, time to its first token, whole time, and mean
//!   time between tokens, from the engine's own timings;
//! - `llamagate_provider_requests_total{provider, outcome}` (`ok`, `error`, `cancelled`),
//!   `llamagate_provider_retries_total{provider}`, `llamagate_provider_request_seconds{provider}` (from the
//!   call to the end of the upstream's stream) and `llamagate_provider_tokens_total{provider, kind}` (the
//!   upstream's counts): each remote provider's traffic, by its configured id;
//! - `llamagate_auth_refusals_total{reason}` and `llamagate_rate_limited_total{tier}`: refusals by the
//!   authentication layer (by reason class) and by tier limits (by tier), read off the answers;
//! - `llamagate_audit_records_{written,dropped}_total`, `llamagate_audit_write_errors_total` and the
//!   gauges `llamagate_audit_sink_failing` and `llamagate_audit_writer_state` (0 ok, 1 slow, 2 failed): read from the audit log at scrape time, so a log that falls
//!   behind or cannot write is visible here.
//!
//! Every label comes from a fixed or configured set (route templates, served model ids, reason classes,
//! configured tiers), never from request text, so no caller can grow the exposition.
//!
//! The route is protected like every other non-public route (a scraper sends a bearer token).

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use llamagate_authz::AuditLog;
use llamagate_engine::{SchedulerStats, Timings};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::gate::audit_notes::AuthRefusal;
use crate::gate::edge::method_label;
use crate::http::error::RateLimitedTier;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcomeLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderTokenLabels {
    provider: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: String,
}

/// A family of histograms by model, with buckets from 1 ms to about a minute.
type ModelHistograms = Family<ModelLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    kind: &'static str,
}

/// The server's counters and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    queue: ModelHistograms,
    ttft: ModelHistograms,
    duration: ModelHistograms,
    inter_token: ModelHistograms,
    auth_refusals: Family<ReasonLabels, Counter>,
    rate_limited: Family<TierLabels, Counter>,
    provider: ProviderFamilies,
    /// The scheduler counters of each local model, read on each scrape.
    engines: EngineCounters,
}

/// The remote providers' series.
#[derive(Debug)]
struct ProviderFamilies {
    requests: Family<ProviderOutcomeLabels, Counter>,
    retries: Family<ProviderLabels, Counter>,
    seconds: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    tokens: Family<ProviderTokenLabels, Counter>,
}

impl ProviderFamilies {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::<ProviderOutcomeLabels, Counter>::default();
        registry.register(
            "provider_requests",
            "Calls to remote providers, by provider and outcome (ok, error, cancelled)",
            requests.clone(),
        );
        let retries = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_retries",
            "Retries of calls to remote providers before the first byte",
            retries.clone(),
        );
        let seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "provider_request_seconds",
            "Time from a call to a remote provider to the end of its answer",
            seconds.clone(),
        );
        let tokens = Family::<ProviderTokenLabels, Counter>::default();
        registry.register(
            "provider_tokens",
            "Tokens remote providers reported (or were estimated at), by provider and kind (prompt/completion)",
            tokens.clone(),
        );
        Self { requests, retries, seconds, tokens }
    }
}

impl Metrics {
    /// Registers every metric; `audit` adds the audit log's counters.
    pub fn new(audit: Option<AuditLog>) -> Self {
        let mut registry = Registry::with_prefix("llamagate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP answers by method, route template and status", requests.clone());
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens processed by the engine, by model and kind (prompt/completion)",
            tokens.clone(),
        );
        let histograms = || ModelHistograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        let (queue, ttft, duration, inter_token) = (histograms(), histograms(), histograms(), histograms());
        registry.register("generation_queue_seconds", "Time generations waited in the engine's queue", queue.clone());
        registry.register(
            "generation_ttft_seconds",
            "Time from submission to a generation's first token",
            ttft.clone(),
        );
        registry.register(
            "generation_duration_seconds",
            "Time from submission to a generation's end",
            duration.clone(),
        );
        registry.register(
            "generation_inter_token_seconds",
            "Mean time between a generation's tokens after the first",
            inter_token.clone(),
        );
        let auth_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_refusals",
            "Requests refused by authentication, by reason class",
            auth_refusals.clone(),
        );
        let rate_limited = Family::<TierLabels, Counter>::default();
        registry.register("rate_limited", "Requests refused by tier limits, by tier", rate_limited.clone());
        let provider = ProviderFamilies::register(&mut registry);
        if let Some(log) = audit {
            registry.register_collector(Box::new(AuditCounters(log)));
        }
        let engines = EngineCounters::default();
        registry.register_collector(Box::new(engines.clone()));
        Self {
            registry,
            requests,
            tokens,
            queue,
            ttft,
            duration,
            inter_token,
            auth_refusals,
            rate_limited,
            provider,
            engines,
        }
    }

    /// Reports `model`'s scheduler counters (prompt tokens computed and reused) on every scrape.
    pub fn watch_engine(&self, model: &str, stats: Arc<SchedulerStats>) {
        self.engines.0.lock().unwrap_or_else(|e| e.into_inner()).push((model.to_string(), stats));
    }

    /// Counts one generation's real token usage.
    pub fn count_tokens(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) {
        for (kind, n) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
            self.tokens.get_or_create(&TokenLabels { model: model.to_string(), kind }).inc_by(n);
        }
    }

    /// Records a finished generation's timings, as the engine measured them.
    pub fn observe_generation(&self, model: &str, timings: &Timings, completion_tokens: usize) {
        let labels = ModelLabels { model: model.to_string() };
        let first_token = timings.queued + timings.prefill;
        self.queue.get_or_create(&labels).observe(timings.queued.as_secs_f64());
        self.ttft.get_or_create(&labels).observe(first_token.as_secs_f64());
        self.duration.get_or_create(&labels).observe((first_token + timings.decode).as_secs_f64());
        if completion_tokens > 1 {
            let between = timings.decode.as_secs_f64() / (completion_tokens - 1) as f64;
            self.inter_token.get_or_create(&labels).observe(between);
        }
    }

    /// The OpenMetrics text of every counter.
    /// One call to remote provider `provider` ended (`ok`, `error` or `cancelled`) after `seconds`.
    pub fn observe_provider_call(&self, provider: &str, outcome: &'static str, seconds: f64) {
        let provider = provider.to_string();
        self.provider.requests.get_or_create(&ProviderOutcomeLabels { provider: provider.clone(), outcome }).inc();
        self.provider.seconds.get_or_create(&ProviderLabels { provider }).observe(seconds);
    }

    /// A call to remote provider `provider` is retried.
    pub fn count_provider_retry(&self, provider: &str) {
        self.provider.retries.get_or_create(&ProviderLabels { provider: provider.to_string() }).inc();
    }

    /// The token counts of one answer of remote provider `provider`.
    pub fn count_provider_tokens(&self, provider: &str, prompt_tokens: usize, completion_tokens: usize) {
        for (kind, n) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
            let labels = ProviderTokenLabels { provider: provider.to_string(), kind };
            self.provider.tokens.get_or_create(&labels).inc_by(n as u64);
        }
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The audit log's counters, read on each scrape.
#[derive(Debug)]
struct AuditCounters(AuditLog);

impl Collector for AuditCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (name, help, value) in [
            ("audit_records_written", "Audit records written to the sinks", stats.written),
            ("audit_records_dropped", "Audit records that could not be queued (writer behind)", stats.dropped),
            ("audit_write_errors", "Audit records the writer failed to write", stats.write_errors),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let failing = ConstGauge::new(i64::from(stats.failing));
        let help = "1 while the audit sinks fail their writes (with on_full: fail_closed, requests get 503)";
        failing.encode(encoder.encode_descriptor("audit_sink_failing", help, None, failing.metric_type())?)?;
        let state = ConstGauge::new(self.0.health().as_gauge() as i64);
        let help = "Audit writer state: 0 ok, 1 slow (queue over half full or records waiting), 2 failed";
        state.encode(encoder.encode_descriptor("audit_writer_state", help, None, state.metric_type())?)?;
        Ok(())
    }
}

/// The local models' scheduler counters, read on each scrape: what prefill computed and what the prefix
/// cache or a fork saved, so an operator sees the work prompts cost (and a test sees `n` choices prefill
/// their prompt once).
#[derive(Debug, Default, Clone)]
struct EngineCounters(Arc<Mutex<Vec<WatchedEngine>>>);

/// A served model's id and its scheduler's counters.
type WatchedEngine = (String, Arc<SchedulerStats>);

/// One engine counter series: its name, help text, and how to read it from the counters.
type EngineSeries = (&'static str, &'static str, fn(&SchedulerStats) -> u64);

impl Collector for EngineCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let engines = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if engines.is_empty() {
            return Ok(());
        }
        let series: [EngineSeries; 2] = [
            (
                "engine_prompt_tokens_prefilled",
                "Prompt tokens the engine computed (a prompt answered with n choices counts once)",
                SchedulerStats::prefilled_prompt_tokens,
            ),
            (
                "engine_prompt_tokens_reused",
                "Prompt tokens copied from the prefix cache instead of computed",
                SchedulerStats::reused_prompt_tokens,
            ),
        ];
        for (name, help, read) in series {
            let mut family =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            for (model, stats) in &engines {
                let labels = [("model", model.as_str())];
                ConstCounter::new(read(stats)).encode(family.encode_family(&labels.as_slice())?)?;
            }
        }
        Ok(())
    }
}

/// Layer over the whole router: counts every answer by route template and status.
pub async fn count_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    metrics.requests.get_or_create(&RequestLabels { method, route, status: response.status().as_u16() }).inc();
    if let Some(AuthRefusal { reason, .. }) = response.extensions().get::<AuthRefusal>() {
        metrics.auth_refusals.get_or_create(&ReasonLabels { reason }).inc();
    }
    if let Some(RateLimitedTier(tier)) = response.extensions().get::<RateLimitedTier>() {
        metrics.rate_limited.get_or_create(&TierLabels { tier: tier.clone() }).inc();
    }
    response
}
