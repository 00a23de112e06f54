//! Recording results: what each request did, summed per tier and per second.
//!
//! Every finished request becomes one [`Outcome`]. The [`Recorder`] (owned by one collector task, so
//! nothing here locks) adds it to its tier's [`TierStats`], to the overall stats and to the
//! [`Timeline`] bucket of the second it finished in. Latencies go into HDR histograms (microseconds,
//! three significant digits overall, two per timeline second to keep long runs small), so
//! percentiles are exact to 0.1 % without keeping every sample. Each tier also counts the HTTP
//! statuses it received, one count per status code.
//!
//! Latency and throughput histograms count successful requests only: a 429 answered in 100 µs is not
//! a latency, and mixing it in would make a rate-limited run look fast. Failures are counted by
//! [`Class`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 2xx, and a streamed body that ended with `[DONE]`.
    Ok,
    /// 401: no token or a token the server rejected.
    Unauthorized,
    /// 403: a valid token without the scope.
    Forbidden,
    /// 429: rate limited.
    RateLimited,
    /// 503: the server shed load (a full engine queue, an unreachable limiter or audit sink) — the
    /// back-pressure a server documents, kept apart from its failures.
    Unavailable,
    /// Any other 5xx: a server failure.
    ServerError,
    /// Any other status (400, 404, 413, …).
    OtherStatus,
    /// No usable response: connect or read errors, timeouts, a stream that broke off or reported an
    /// error after its status line.
    Transport,
    /// The client hung up on purpose (the tenant's `disconnect_after`) before the answer was complete.
    Disconnected,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 9] = [
        Class::Ok,
        Class::Unauthorized,
        Class::Forbidden,
        Class::RateLimited,
        Class::Unavailable,
        Class::ServerError,
        Class::OtherStatus,
        Class::Transport,
        Class::Disconnected,
    ];

    /// The class of a response status (a 2xx is `Ok` until its body says otherwise).
    pub fn of_status(status: u16) -> Class {
        match status {
            200..=299 => Class::Ok,
            401 => Class::Unauthorized,
            403 => Class::Forbidden,
            429 => Class::RateLimited,
            503 => Class::Unavailable,
            500..=599 => Class::ServerError,
            _ => Class::OtherStatus,
        }
    }

    /// The key used in reports.
    pub fn key(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Unauthorized => "unauthorized_401",
            Class::Forbidden => "forbidden_403",
            Class::RateLimited => "rate_limited_429",
            Class::Unavailable => "unavailable_503",
            Class::ServerError => "server_error_5xx",
            Class::OtherStatus => "other_status",
            Class::Transport => "transport",
            Class::Disconnected => "disconnected",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Index of the tenant in the [`crate::tokens::TenantMix`].
    pub tenant: usize,
    /// How it ended.
    pub class: Class,
    /// The response's HTTP status; `None` when none arrived (a transport failure, or a hang-up
    /// before the status line).
    pub status: Option<u16>,
    /// When it finished, from the start of the run.
    pub finished_at: Duration,
    /// From sending to the end of the body.
    pub latency: Duration,
    /// Time to first token (streamed requests only).
    pub ttft: Option<Duration>,
    /// Gaps between text chunks (streamed requests only).
    pub inter_token: Vec<Duration>,
    /// Generated tokens.
    pub output_tokens: u64,
    /// What went wrong, for the report's error list.
    pub error: Option<Failure>,
    /// Times the request was sent again because it failed before any byte of an answer (a refused
    /// connection, or a pooled keep-alive connection the server had already closed).
    pub resent: u32,
}

/// A failure: a kind that groups alike failures (`HTTP 429 rate_limit_exceeded`, `connect`,
/// `stream ended without [DONE]`) and one full message as an example.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What the report groups by: no request-specific details (retry times, ids) in here.
    pub kind: String,
    /// The message of one such failure.
    pub detail: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: kind.into(), detail: detail.into() }
    }
}

/// Upper bound of the histograms: one hour in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of durations in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

/// Percentiles of a histogram, in the histogram's display unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl LatencyHistogram {
    /// A histogram with `sigfig` significant digits (clamped to hdrhistogram's 1..=5).
    pub fn new(sigfig: u8) -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, sigfig.clamp(1, 5));
        // hdrhistogram refuses only precision outside 1..=5 and `high < 2 * low`; neither can happen here.
        Self(histogram.expect("valid histogram bounds"))
    }

    /// Adds a duration (clamped to one hour).
    pub fn record(&mut self, d: Duration) {
        self.record_value(u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS));
    }

    /// Adds a raw value (clamped to the bounds).
    pub fn record_value(&mut self, v: u64) {
        self.0.saturating_record(v.clamp(1, MAX_MICROS));
    }

    /// Percentiles with every value divided by `scale` (1000 turns µs into ms); `None` when empty.
    pub fn summary(&self, scale: f64) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        let at = |q: f64| self.0.value_at_quantile(q) as f64 / scale;
        Some(Summary {
            count: self.0.len(),
            mean: self.0.mean() / scale,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: self.0.max() as f64 / scale,
        })
    }
}

/// Per-tier (or overall) sums.
#[derive(Debug, Clone)]
pub struct TierStats {
    /// Requests per [`Class`], in [`Class::ALL`] order.
    pub counts: [u64; Class::ALL.len()],
    /// Requests per HTTP status received.
    pub statuses: BTreeMap<u16, u64>,
    /// Time to first token of successful streamed requests.
    pub ttft: LatencyHistogram,
    /// Gaps between text chunks of successful streamed requests.
    pub inter_token: LatencyHistogram,
    /// End-to-end latency of successful requests.
    pub latency: LatencyHistogram,
    /// Output tokens per second of each successful request, in thousandths.
    pub request_tokens_per_s: LatencyHistogram,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Requests sent again before any answer byte ([`Outcome::resent`], summed).
    pub resent: u64,
}

impl Default for TierStats {
    fn default() -> Self {
        Self {
            counts: [0; Class::ALL.len()],
            statuses: BTreeMap::new(),
            ttft: LatencyHistogram::new(3),
            inter_token: LatencyHistogram::new(3),
            latency: LatencyHistogram::new(3),
            request_tokens_per_s: LatencyHistogram::new(3),
            output_tokens: 0,
            resent: 0,
        }
    }
}

impl TierStats {
    /// Adds one outcome.
    pub fn add(&mut self, o: &Outcome) {
        self.counts[o.class.index()] += 1;
        self.resent += u64::from(o.resent);
        if let Some(status) = o.status {
            *self.statuses.entry(status).or_default() += 1;
        }
        if o.class != Class::Ok {
            return;
        }
        self.latency.record(o.latency);
        if let Some(ttft) = o.ttft {
            self.ttft.record(ttft);
        }
        for gap in &o.inter_token {
            self.inter_token.record(*gap);
        }
        self.output_tokens += o.output_tokens;
        let seconds = o.latency.as_secs_f64();
        if o.output_tokens > 0 && seconds > 0.0 {
            self.request_tokens_per_s.record_value((o.output_tokens as f64 / seconds * 1000.0) as u64);
        }
    }

    /// Requests of this class.
    pub fn count(&self, class: Class) -> u64 {
        self.counts[class.index()]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One second of the run, by completion time.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// End-to-end latency of successful requests.
    pub latency: LatencyHistogram,
    /// Time to first token of successful streamed requests.
    pub ttft: LatencyHistogram,
}

impl Default for Bucket {
    fn default() -> Self {
        Self { ok: 0, failed: 0, output_tokens: 0, latency: LatencyHistogram::new(2), ttft: LatencyHistogram::new(2) }
    }
}

/// Per-second buckets.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Bucket `i` covers `[i, i+1)` seconds from the start.
    pub buckets: Vec<Bucket>,
}

impl Timeline {
    /// Adds one outcome to the bucket of its completion second.
    pub fn add(&mut self, o: &Outcome) {
        let second = o.finished_at.as_secs() as usize;
        if self.buckets.len() <= second {
            self.buckets.resize_with(second + 1, Bucket::default);
        }
        let bucket = &mut self.buckets[second];
        if o.class == Class::Ok {
            bucket.ok += 1;
            bucket.output_tokens += o.output_tokens;
            bucket.latency.record(o.latency);
            if let Some(ttft) = o.ttft {
                bucket.ttft.record(ttft);
            }
        } else {
            bucket.failed += 1;
        }
    }
}

/// How many kinds of failure are kept for the report.
const KEPT_ERRORS: usize = 10;

/// Everything recorded in a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Per tenant, in [`crate::tokens::TenantMix`] order.
    pub tiers: Vec<TierStats>,
    /// All tenants together.
    pub overall: TierStats,
    /// Per second.
    pub timeline: Timeline,
    /// The first few kinds of failure, each with an example and how often it occurred.
    pub errors: Vec<(Failure, u64)>,
}

impl Recorder {
    /// A recorder for this many tenants.
    pub fn new(tenants: usize) -> Self {
        Self {
            tiers: vec![TierStats::default(); tenants],
            overall: TierStats::default(),
            timeline: Timeline::default(),
            errors: Vec::new(),
        }
    }

    /// Adds one outcome.
    pub fn add(&mut self, o: &Outcome) {
        if let Some(tier) = self.tiers.get_mut(o.tenant) {
            tier.add(o);
        }
        self.overall.add(o);
        self.timeline.add(o);
        if let Some(error) = &o.error {
            if let Some(entry) = self.errors.iter_mut().find(|(e, _)| e.kind == error.kind) {
                entry.1 += 1;
            } else if self.errors.len() < KEPT_ERRORS {
                self.errors.push((error.clone(), 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(class: Class, ms: u64, at_s: u64) -> Outcome {
        Outcome {
            tenant: 0,
            class,
            status: Some(if class == Class::Ok { 200 } else { 429 }),
            finished_at: Duration::from_secs(at_s),
            latency: Duration::from_millis(ms),
            ttft: Some(Duration::from_millis(ms / 2)),
            inter_token: vec![Duration::from_millis(5)],
            output_tokens: 10,
            error: (class != Class::Ok).then(|| Failure::new(format!("{class:?}"), format!("{class:?} at {at_s}"))),
            resent: 0,
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(Class::of_status(200), Class::Ok);
        assert_eq!(Class::of_status(401), Class::Unauthorized);
        assert_eq!(Class::of_status(403), Class::Forbidden);
        assert_eq!(Class::of_status(429), Class::RateLimited);
        assert_eq!(Class::of_status(503), Class::Unavailable);
        assert_eq!(Class::of_status(500), Class::ServerError);
        assert_eq!(Class::of_status(504), Class::ServerError);
        assert_eq!(Class::of_status(400), Class::OtherStatus);
        assert_eq!(Class::of_status(413), Class::OtherStatus);
        assert_eq!(Class::ALL.iter().map(|c| c.index()).collect::<Vec<_>>(), (0..Class::ALL.len()).collect::<Vec<_>>());
    }

    #[test]
    fn only_successes_have_latencies() {
        let mut r = Recorder::new(1);
        for i in 1..=100 {
            r.add(&outcome(Class::Ok, i, i / 50));
        }
        r.add(&outcome(Class::RateLimited, 1, 0));
        r.add(&outcome(Class::RateLimited, 1, 3));
        assert_eq!(r.overall.count(Class::Ok), 100);
        assert_eq!(r.overall.count(Class::RateLimited), 2);
        assert_eq!(r.overall.total(), 102);
        assert_eq!(r.overall.statuses, BTreeMap::from([(200, 100), (429, 2)]));
        let latency = r.overall.latency.summary(1000.0).unwrap();
        assert_eq!(latency.count, 100);
        assert!((latency.p50 - 50.0).abs() < 0.1 && (latency.max - 100.0).abs() < 0.1, "{latency:?}");
        assert_eq!(r.overall.output_tokens, 1000);
        // 10 tokens in 1 ms is 10,000 tokens/s (recorded in thousandths).
        let fastest = r.overall.request_tokens_per_s.summary(1000.0).unwrap().max;
        assert!((fastest - 10_000.0).abs() < 10.0, "{fastest}");
        assert_eq!(r.timeline.buckets.len(), 4);
        assert_eq!((r.timeline.buckets[0].ok, r.timeline.buckets[0].failed), (49, 1));
        // Grouped by kind; the first message is kept as the example.
        assert_eq!(r.errors, vec![(Failure::new("RateLimited", "RateLimited at 0"), 2)]);
    }
}
