//! Scenario files and the resolved run plan.
//!
//! A [`Scenario`] is what a YAML file under `benches/scenarios/` says, and also what the command line
//! says: `main` turns its flags into a second `Scenario` and [`Scenario::overridden_by`] lays it over
//! the file, so every key can come from either place and the command line wins. [`Plan::resolve`]
//! then applies the defaults (all in one place, here) and validates once, naming the key at fault.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The endpoint a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

impl Api {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
        }
    }
}

/// An inclusive `max_tokens` range: `16` or `8..32` (also `8-32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MaxTokens {
    /// Smallest value drawn.
    pub min: u32,
    /// Largest value drawn.
    pub max: u32,
}

impl FromStr for MaxTokens {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{s:?} is not N or MIN..MAX"));
        let (min, max) = match s.split_once("..").or_else(|| s.split_once('-')) {
            Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
            None => (parse(s)?, parse(s)?),
        };
        if min == 0 || min > max {
            return Err(format!("{s:?}: need 1 <= MIN <= MAX"));
        }
        Ok(Self { min, max })
    }
}

/// A duration: `30s`, `2m`, `500ms`, `1h`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl FromStr for DurationSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 2m, 500ms"))?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "ms" => number / 1000.0,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
        };
        Duration::try_from_secs_f64(seconds).map(DurationSpec).map_err(|_| format!("{s:?} is out of range"))
    }
}

/// Deserializes a `FromStr` type from a string or a bare number.
fn from_str_or_number<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: FromStr<Err = String>,
    D: Deserializer<'de>,
{
    struct StrOrNumber<T>(std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> Visitor<'_> for StrOrNumber<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }
    deserializer.deserialize_any(StrOrNumber(std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for MaxTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_or_number(d)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_or_number(d)
    }
}

/// When a tenant's client hangs up on purpose, as a user who closes the tab does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Right after the first streamed text chunk (`first_token`): the server is mid-generation.
    FirstToken,
    /// This long after sending (`250ms`, `2s`): whatever the server is doing by then (queueing,
    /// prefilling, streaming), unless the answer was already complete.
    After(Duration),
}

impl FromStr for Disconnect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "first_token" => Ok(Disconnect::FirstToken),
            other => match other.parse::<DurationSpec>() {
                Ok(DurationSpec(d)) if !d.is_zero() => Ok(Disconnect::After(d)),
                _ => Err(format!("{s:?}: expected first_token or a duration such as 500ms")),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Disconnect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_or_number(d)
    }
}

/// One tenant of a multi-tenant run: a tier name, its share of the requests and where its token
/// comes from (at most one of `token`, `token_env`, `token_cmd`; none sends no `Authorization`).
/// The last three keys make a tenant misbehave on purpose, for soak and abuse runs: a forged token,
/// an oversized body, a client that hangs up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The name results are reported under (usually the token's `tier` claim).
    pub tier: String,
    /// Relative share of the requests (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// The bearer token itself.
    #[serde(default)]
    pub token: Option<String>,
    /// An environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A shell command that prints the token (run once at start with `sh -c`).
    #[serde(default)]
    pub token_cmd: Option<String>,
    /// Send the token with one character of its JWS signature changed: a forged token, which a
    /// server must refuse like any bad signature (the token must be a JWT: three dot-separated parts).
    #[serde(default)]
    pub forge: bool,
    /// Pad every request body to at least this many bytes (with filler text in the prompt), e.g.
    /// past the server's body limit to see its 413.
    #[serde(default)]
    pub body_bytes: Option<usize>,
    /// Hang up on purpose: `first_token` (streamed runs) or after a duration.
    #[serde(default)]
    pub disconnect_after: Option<Disconnect>,
}

impl TenantSpec {
    /// A well-behaved tenant without a token: every other key at its default.
    pub fn named(tier: &str, weight: f64) -> Self {
        Self {
            tier: tier.to_string(),
            weight,
            token: None,
            token_env: None,
            token_cmd: None,
            forge: false,
            body_bytes: None,
            disconnect_after: None,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// A scenario: every key optional; see `docs/load-testing.md` for the meaning of each.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: Option<String>,
    /// The server's base URL.
    pub url: Option<String>,
    /// The `model` field of every request.
    pub model: Option<String>,
    /// Chat or text completions.
    pub api: Option<Api>,
    /// Ask for SSE streaming.
    pub stream: Option<bool>,
    /// Closed loop: this many requests in flight at all times.
    pub concurrency: Option<usize>,
    /// Open loop: Poisson arrivals at this many requests per second.
    pub rate: Option<f64>,
    /// Stop sending after this long.
    pub duration: Option<DurationSpec>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// A JSONL prompts file (default: the built-in set).
    pub prompts: Option<PathBuf>,
    /// The `max_tokens` range.
    pub max_tokens: Option<MaxTokens>,
    /// The `temperature` field (default: not sent).
    pub temperature: Option<f64>,
    /// Seed for every random choice.
    pub seed: Option<u64>,
    /// Per-request timeout.
    pub timeout: Option<DurationSpec>,
    /// Open loop only: the most requests in flight before arrivals wait.
    pub max_in_flight: Option<usize>,
    /// A token file (`tier weight token` lines).
    pub token_file: Option<PathBuf>,
    /// Tenants and their tokens.
    pub tenants: Option<Vec<TenantSpec>>,
}

impl Scenario {
    /// Reads a YAML scenario file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading scenario {}", path.display()))?;
        yaml_serde::from_str(&text).with_context(|| format!("in scenario {}", path.display()))
    }

    /// This scenario with every key that `over` sets replaced by `over`'s value. Tenant sources
    /// (`token_file`, `tenants`) are replaced as a group: a command line that names any tenant
    /// source replaces all of the file's.
    pub fn overridden_by(self, over: Scenario) -> Scenario {
        let tenants_from_over = over.token_file.is_some() || over.tenants.is_some();
        Scenario {
            name: over.name.or(self.name),
            url: over.url.or(self.url),
            model: over.model.or(self.model),
            api: over.api.or(self.api),
            stream: over.stream.or(self.stream),
            // A command line that picks one loop kind replaces the file's, whichever kind that was.
            concurrency: if over.rate.is_some() { over.concurrency } else { over.concurrency.or(self.concurrency) },
            rate: if over.concurrency.is_some() { over.rate } else { over.rate.or(self.rate) },
            duration: over.duration.or(self.duration),
            requests: over.requests.or(self.requests),
            prompts: over.prompts.or(self.prompts),
            max_tokens: over.max_tokens.or(self.max_tokens),
            temperature: over.temperature.or(self.temperature),
            seed: over.seed.or(self.seed),
            timeout: over.timeout.or(self.timeout),
            max_in_flight: over.max_in_flight.or(self.max_in_flight),
            token_file: if tenants_from_over { over.token_file } else { self.token_file },
            tenants: if tenants_from_over { over.tenants } else { self.tenants },
        }
    }
}

/// How requests are started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Closed loop: each of N workers sends its next request when the previous one finishes.
    Concurrency(usize),
    /// Open loop: requests start at Poisson arrival times, whether or not earlier ones finished.
    Rate(f64),
}

/// A validated scenario with every default applied.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name, if any.
    pub name: Option<String>,
    /// Base URL without a trailing slash.
    pub url: String,
    /// Model id.
    pub model: String,
    /// Endpoint.
    pub api: Api,
    /// SSE or not.
    pub stream: bool,
    /// Closed or open loop.
    pub mode: Mode,
    /// Stop sending after this long (at least one of `duration` and `requests` is set).
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Prompts file, or the built-in set.
    pub prompts: Option<PathBuf>,
    /// `max_tokens` range.
    pub max_tokens: MaxTokens,
    /// `temperature`, if sent.
    pub temperature: Option<f64>,
    /// Seed.
    pub seed: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Open-loop in-flight cap.
    pub max_in_flight: usize,
}

/// Defaults, in one place.
pub mod defaults {
    /// The port `llamagate serve` listens on.
    pub const URL: &str = "http://127.0.0.1:8321";
    /// The bundled default model's id in `config/default.yaml`.
    pub const MODEL: &str = "smollm2-135m-instruct";
    /// Short answers keep a CPU-served small model's runs brief.
    pub const MAX_TOKENS: u32 = 32;
    /// A fixed seed: runs are reproducible unless asked otherwise.
    pub const SEED: u64 = 42;
    /// Long enough for a slow CPU generation; a timeout is reported as a transport failure.
    pub const TIMEOUT_SECS: u64 = 300;
    /// Keeps an open loop against a stalled server from opening sockets without bound.
    pub const MAX_IN_FLIGHT: usize = 4096;
    /// Used when neither `duration` nor `requests` is given.
    pub const DURATION_SECS: u64 = 30;
}

impl Plan {
    /// Applies defaults and validates.
    pub fn resolve(s: &Scenario) -> anyhow::Result<Plan> {
        let mode = match (s.concurrency, s.rate) {
            (Some(_), Some(_)) => bail!("concurrency and rate: give one (closed or open loop), not both"),
            (Some(0), None) => bail!("concurrency: must be at least 1"),
            (Some(n), None) => Mode::Concurrency(n),
            (None, Some(r)) if !(r.is_finite() && r > 0.0) => bail!("rate: must be a positive number"),
            (None, Some(r)) => Mode::Rate(r),
            (None, None) => Mode::Concurrency(1),
        };
        if s.requests == Some(0) {
            bail!("requests: must be at least 1");
        }
        let duration = match (s.duration, s.requests) {
            (None, None) => Some(Duration::from_secs(defaults::DURATION_SECS)),
            (d, _) => d.map(|d| d.0),
        };
        if duration.is_some_and(|d| d.is_zero()) {
            bail!("duration: must be longer than zero");
        }
        if s.max_in_flight == Some(0) {
            bail!("max_in_flight: must be at least 1");
        }
        let url = s.url.as_deref().unwrap_or(defaults::URL).trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("url: {url:?} must start with http:// or https://");
        }
        Ok(Plan {
            name: s.name.clone(),
            url,
            model: s.model.clone().unwrap_or_else(|| defaults::MODEL.to_string()),
            api: s.api.unwrap_or(Api::Chat),
            stream: s.stream.unwrap_or(true),
            mode,
            duration,
            requests: s.requests,
            prompts: s.prompts.clone(),
            max_tokens: s.max_tokens.unwrap_or(MaxTokens { min: defaults::MAX_TOKENS, max: defaults::MAX_TOKENS }),
            temperature: s.temperature,
            seed: s.seed.unwrap_or(defaults::SEED),
            timeout: s.timeout.map_or(Duration::from_secs(defaults::TIMEOUT_SECS), |t| t.0),
            max_in_flight: s.max_in_flight.unwrap_or(defaults::MAX_IN_FLIGHT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_syntaxes() {
        assert_eq!("16".parse::<MaxTokens>(), Ok(MaxTokens { min: 16, max: 16 }));
        assert_eq!("8..32".parse::<MaxTokens>(), Ok(MaxTokens { min: 8, max: 32 }));
        assert_eq!("8-32".parse::<MaxTokens>(), Ok(MaxTokens { min: 8, max: 32 }));
        assert_eq!("8..=32".parse::<MaxTokens>(), Ok(MaxTokens { min: 8, max: 32 }));
        assert!("32..8".parse::<MaxTokens>().is_err());
        assert!("0".parse::<MaxTokens>().is_err());
        assert_eq!("30s".parse::<DurationSpec>(), Ok(DurationSpec(Duration::from_secs(30))));
        assert_eq!("2m".parse::<DurationSpec>(), Ok(DurationSpec(Duration::from_secs(120))));
        assert_eq!("250ms".parse::<DurationSpec>(), Ok(DurationSpec(Duration::from_millis(250))));
        assert_eq!("1.5".parse::<DurationSpec>(), Ok(DurationSpec(Duration::from_millis(1500))));
        assert!("5 days".parse::<DurationSpec>().is_err());
    }

    #[test]
    fn yaml_and_overrides() {
        let file: Scenario = yaml_serde::from_str(
            "name: x\nconcurrency: 8\nduration: 20s\nmax_tokens: 8..16\ntenants:\n  - tier: free\n    token: abc\n",
        )
        .unwrap();
        let over =
            Scenario { rate: Some(5.0), duration: Some(DurationSpec(Duration::from_secs(3))), ..Default::default() };
        let merged = file.clone().overridden_by(over);
        assert_eq!((merged.concurrency, merged.rate), (None, Some(5.0)));
        assert_eq!(merged.tenants.as_ref().map(Vec::len), Some(1));
        let plan = Plan::resolve(&merged).unwrap();
        assert_eq!(plan.mode, Mode::Rate(5.0));
        assert_eq!(plan.duration, Some(Duration::from_secs(3)));
        assert_eq!(plan.max_tokens, MaxTokens { min: 8, max: 16 });
        let with_file = file.overridden_by(Scenario { token_file: Some("t.tsv".into()), ..Default::default() });
        assert!(with_file.tenants.is_none());
        assert!(yaml_serde::from_str::<Scenario>("concurency: 8\n").is_err());
    }

    #[test]
    fn misbehaving_tenant_keys() {
        let file: Scenario = yaml_serde::from_str(
            "tenants:\n  - tier: forged\n    token: a.b.c\n    forge: true\n  - tier: big\n    body_bytes: 2000000\n\
             \x20 - tier: quitter\n    disconnect_after: first_token\n  - tier: impatient\n    disconnect_after: 250ms\n",
        )
        .unwrap();
        let tenants = file.tenants.unwrap();
        assert!(tenants[0].forge);
        assert_eq!(tenants[1].body_bytes, Some(2_000_000));
        assert_eq!(tenants[2].disconnect_after, Some(Disconnect::FirstToken));
        assert_eq!(tenants[3].disconnect_after, Some(Disconnect::After(Duration::from_millis(250))));
        assert_eq!(tenants[3].weight, 1.0);
        assert!("0s".parse::<Disconnect>().is_err());
        assert!("first token".parse::<Disconnect>().is_err());
        assert!(yaml_serde::from_str::<Scenario>("tenants:\n  - tier: x\n    disconnect_after: soon\n").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |s: Scenario| Plan::resolve(&s).unwrap_err().to_string();
        assert!(bad(Scenario { concurrency: Some(2), rate: Some(1.0), ..Default::default() }).contains("concurrency"));
        assert!(bad(Scenario { rate: Some(-1.0), ..Default::default() }).starts_with("rate"));
        assert!(bad(Scenario { url: Some("localhost:1".into()), ..Default::default() }).starts_with("url"));
        let plan = Plan::resolve(&Scenario { requests: Some(5), ..Default::default() }).unwrap();
        assert_eq!((plan.duration, plan.requests, plan.mode), (None, Some(5), Mode::Concurrency(1)));
    }
}
