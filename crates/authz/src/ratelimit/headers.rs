//! Rate-limit response fields, as `(name, value)` pairs the server copies onto its responses.
//!
//! Two vocabularies, because clients read one or the other:
//! - OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, with resets written as Go
//!   durations (`6s`, `1m30s`, `120ms`) like OpenAI's API, which OpenAI-compatible clients parse;
//! - the IETF `RateLimit-Policy` and `RateLimit` structured fields (draft-ietf-httpapi-ratelimit-headers),
//!   one policy per dimension, named `requests` and `tokens`, with `t` the seconds until the bucket
//!   is full again.
//!
//! Refusals add `Retry-After` (whole seconds, rounded up, per RFC 9110 §10.2.3) and `retry-after-ms`
//! (which the OpenAI SDKs prefer), or `x-should-retry: false` when waiting cannot help.

use std::time::Duration;

use crate::ratelimit::status::{RateLimitError, RateLimitStatus};

/// Fields for a response admitted under `status`.
pub fn status_headers(status: &RateLimitStatus) -> Vec<(&'static str, String)> {
    let (req, tok, w) = (&status.requests, &status.tokens, status.window_seconds);
    vec![
        ("x-ratelimit-limit-requests", req.limit.to_string()),
        ("x-ratelimit-remaining-requests", req.remaining.to_string()),
        ("x-ratelimit-reset-requests", go_duration(req.reset)),
        ("x-ratelimit-limit-tokens", tok.limit.to_string()),
        ("x-ratelimit-remaining-tokens", tok.remaining.to_string()),
        ("x-ratelimit-reset-tokens", go_duration(tok.reset)),
        (
            "ratelimit-policy",
            format!("\"requests\";q={};w={w}, \"tokens\";q={};w={w};qu=\"tokens\"", req.limit, tok.limit),
        ),
        (
            "ratelimit",
            format!(
                "\"requests\";r={};t={}, \"tokens\";r={};t={}",
                req.remaining,
                ceil_secs(req.reset),
                tok.remaining,
                ceil_secs(tok.reset)
            ),
        ),
    ]
}

/// Fields for a refusal.
pub fn error_headers(error: &RateLimitError) -> Vec<(&'static str, String)> {
    match error {
        RateLimitError::Exceeded { status, retry_after } => {
            let mut headers = status_headers(status);
            headers.push(("retry-after", ceil_secs(*retry_after).max(1).to_string()));
            headers.push(("retry-after-ms", retry_after.as_millis().max(1).to_string()));
            headers
        }
        RateLimitError::NeverFits { status, .. } => {
            let mut headers = status_headers(status);
            headers.push(("x-should-retry", "false".into()));
            headers
        }
        RateLimitError::Unavailable(_) => vec![("retry-after", "1".into())],
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `6s`, `1m30s`, `1h0m0s`, `250ms`, `0s`: the form OpenAI uses for its reset fields.
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
        return if ms == 0 { "0s".into() } else { format!("{ms}ms") };
    }
    let secs = ceil_secs(d);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::status::Quota;

    fn status() -> RateLimitStatus {
        RateLimitStatus {
            tier: "free".into(),
            window_seconds: 60,
            requests: Quota { limit: 10, remaining: 0, reset: Duration::from_secs(60) },
            tokens: Quota { limit: 1_000, remaining: 700, reset: Duration::from_millis(18_200) },
        }
    }

    fn get<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn both_vocabularies_describe_the_same_state() {
        let h = status_headers(&status());
        assert_eq!(get(&h, "x-ratelimit-limit-requests"), Some("10"));
        assert_eq!(get(&h, "x-ratelimit-remaining-requests"), Some("0"));
        assert_eq!(get(&h, "x-ratelimit-reset-requests"), Some("1m0s"));
        assert_eq!(get(&h, "x-ratelimit-remaining-tokens"), Some("700"));
        assert_eq!(get(&h, "x-ratelimit-reset-tokens"), Some("19s"));
        assert_eq!(get(&h, "ratelimit-policy"), Some("\"requests\";q=10;w=60, \"tokens\";q=1000;w=60;qu=\"tokens\""));
        assert_eq!(get(&h, "ratelimit"), Some("\"requests\";r=0;t=60, \"tokens\";r=700;t=19"));
        assert_eq!(get(&h, "retry-after"), None);
    }

    #[test]
    fn refusals_say_when_or_that_waiting_cannot_help() {
        let exceeded = RateLimitError::Exceeded { status: status(), retry_after: Duration::from_millis(5_100) };
        let h = error_headers(&exceeded);
        assert_eq!((get(&h, "retry-after"), get(&h, "retry-after-ms")), (Some("6"), Some("5100")));
        assert_eq!(get(&h, "x-should-retry"), None);
        let never = RateLimitError::NeverFits { needed: 5_000, status: status() };
        let h = error_headers(&never);
        assert_eq!((get(&h, "retry-after"), get(&h, "x-should-retry")), (None, Some("false")));
        assert!(never.to_string().contains("can never be admitted"), "{never}");
    }

    #[test]
    fn durations_read_like_openai() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(120)), "1ms");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(6)), "6s");
        assert_eq!(go_duration(Duration::from_secs(3_725)), "1h2m5s");
    }
}
