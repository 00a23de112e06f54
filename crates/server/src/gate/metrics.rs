//! [`Metrics`]: the Prometheus counters an operator needs to see what the server decided, rendered in
//! the OpenMetrics text format (`prometheus-client`) by `GET /metrics` (`routes::metrics`).
//!
//! - `llamagate_http_requests_total{method, route, status}`: every answer, refusals included (`route`
//!   is the matched route template, or `unmatched`), counted by a layer over the whole router;
//! - `llamagate_tokens_total{model, kind}`: prompt and completion tokens the engine really processed,
//!   added when a generation settles;
//! - `llamagate_audit_records_{written,dropped}_total` and `llamagate_audit_write_errors_total`: read
//!   from the audit log at scrape time, so a log that falls behind is visible here.
//!
//! The route is protected like every other non-public route (a scraper sends a bearer token).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use llamagate_authz::AuditLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::gate::edge::method_label;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
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
        if let Some(log) = audit {
            registry.register_collector(Box::new(AuditCounters(log)));
        }
        Self { registry, requests, tokens }
    }

    /// Counts one generation's real token usage.
    pub fn count_tokens(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) {
        for (kind, n) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
            self.tokens.get_or_create(&TokenLabels { model: model.to_string(), kind }).inc_by(n);
        }
    }

    /// The OpenMetrics text of every counter.
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
        Ok(())
    }
}

/// Layer over the whole router: counts every answer by route template and status.
pub async fn count_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    metrics.requests.get_or_create(&RequestLabels { method, route, status: response.status().as_u16() }).inc();
    response
}
