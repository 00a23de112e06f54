//! Requests are counted by how they ended, per tier, and the counts match what the server received.

use std::sync::Arc;

use llamagate_loadgen::{Live, Scenario, run_scenario};

use crate::support::{self, tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_match_the_server() {
    let fake = support::start().await;
    let scenario = Scenario {
        url: Some(fake.url.clone()),
        requests: Some(400),
        concurrency: Some(8),
        stream: Some(false),
        tenants: Some(vec![
            tenant("good", 3.0, Some("good")),
            tenant("limited", 1.0, Some("limited")),
            tenant("bad", 1.0, Some("bad")),
            tenant("anonymous", 1.0, None),
            tenant("noscope", 1.0, Some("noscope")),
            tenant("boom", 1.0, Some("boom")),
            tenant("busy", 1.0, Some("busy")),
            tenant("halfway", 2.0, Some("halfway")),
        ]),
        ..Default::default()
    };
    let report = run_scenario(&scenario, Arc::new(Live::default())).await.unwrap();
    assert_eq!(report.overall.requests, 400);
    assert_eq!(fake.seen.total(), 400, "the server saw a different number of requests");

    let expected = [
        ("good", "good", "ok"),
        ("limited", "limited", "rate_limited_429"),
        ("bad", "bad", "unauthorized_401"),
        ("anonymous", "", "unauthorized_401"),
        ("noscope", "noscope", "forbidden_403"),
        ("boom", "boom", "server_error_5xx"),
        ("busy", "busy", "unavailable_503"),
    ];
    for (tier, token, class) in expected {
        let t = &report.tiers.iter().find(|t| t.tier == tier).unwrap().report;
        assert_eq!(t.requests, fake.seen.count(token), "tier {tier}");
        assert!(t.requests > 0, "tier {tier} was never picked");
        assert_eq!(t.status[class], t.requests, "tier {tier}: {:?}", t.status);
        assert_eq!(t.status.values().sum::<u64>(), t.requests, "tier {tier}");
        assert_eq!(t.http_status.values().sum::<u64>(), t.requests, "tier {tier}: every request got a status");
    }
    let status_of = |tier: &str| report.tiers.iter().find(|t| t.tier == tier).unwrap().report.http_status.clone();
    assert_eq!(status_of("busy").keys().collect::<Vec<_>>(), [&503]);
    assert_eq!(status_of("boom").keys().collect::<Vec<_>>(), [&500]);
    // The server refuses every second `halfway` request.
    let halfway = &report.tiers.iter().find(|t| t.tier == "halfway").unwrap().report;
    assert_eq!(halfway.requests, fake.seen.count("halfway"));
    assert_eq!(halfway.status["rate_limited_429"], halfway.requests / 2);
    assert_eq!(halfway.status["ok"], halfway.requests - halfway.requests / 2);

    // Overall sums the tiers; only successes have latencies and tokens (3 per plain answer).
    let good = &report.tiers[0].report;
    assert_eq!(report.overall.ok, good.ok + halfway.ok);
    assert_eq!(report.overall.output_tokens, 3 * report.overall.ok);
    assert_eq!(report.overall.latency_ms.unwrap().count, report.overall.ok);
    assert!(report.overall.ttft_ms.is_none(), "no TTFT without streaming");
    assert_eq!(report.overall.status["transport"], 0);
    // Failures are grouped by status and the body's error type, with one message as the example.
    let limited = report.errors.iter().find(|e| e.kind == "HTTP 429").unwrap();
    assert_eq!(limited.count, halfway.status["rate_limited_429"] + report.tiers[1].report.requests);
    assert!(limited.example.contains("rate limited"), "{limited:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_failure() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let scenario = Scenario { url: Some(format!("http://127.0.0.1:{port}")), requests: Some(5), ..Default::default() };
    let report = run_scenario(&scenario, Arc::new(Live::default())).await.unwrap();
    assert_eq!((report.overall.requests, report.overall.status["transport"]), (5, 5));
    assert_eq!((report.errors[0].kind.as_str(), report.errors[0].count), ("connect", 5), "{:?}", report.errors);
    // A refused connection is a failure before any answer byte: each request was sent again, twice,
    // and is still counted once, by how it ended.
    let resends = u64::from(llamagate_loadgen::client::MAX_RESENDS);
    assert_eq!(report.overall.resent, 5 * resends);
}
