//! Streamed answers: time to first token, inter-token gaps and token counts come from the SSE events.

use std::sync::Arc;

use llamagate_loadgen::scenario::Api;
use llamagate_loadgen::{Live, Scenario, run_scenario};

use crate::support::{self, FIRST_DELAY, GAP, TEXT_CHUNKS, USAGE_TOKENS};

fn scenario(url: &str, tokens: &[&str], requests: u64) -> Scenario {
    Scenario {
        url: Some(url.to_string()),
        requests: Some(requests),
        concurrency: Some(2),
        stream: Some(true),
        tenants: Some(tokens.iter().map(|t| support::tenant(t, 1.0, Some(t))).collect()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_gaps_and_usage_from_chat_streams() {
    let fake = support::start().await;
    let report = run_scenario(&scenario(&fake.url, &["good"], 6), Arc::new(Live::default())).await.unwrap();
    let all = &report.overall;
    assert_eq!((all.requests, all.ok), (6, 6), "{:?}", report.errors);
    // The server's usage count wins over the number of chunks.
    assert_eq!(all.output_tokens, 6 * USAGE_TOKENS);
    let ttft = all.ttft_ms.unwrap();
    assert_eq!(ttft.count, 6);
    // Lower bounds only: the server sleeps at least this long, however busy the machine is. The
    // role-only opening chunk, sent at once, must not count as the first token.
    assert!(ttft.p50 >= FIRST_DELAY.as_secs_f64() * 1000.0, "{ttft:?}");
    let gaps = all.inter_token_ms.unwrap();
    assert_eq!(gaps.count, 6 * (TEXT_CHUNKS as u64 - 1));
    let latency = all.latency_ms.unwrap();
    let min_total = FIRST_DELAY + GAP * (TEXT_CHUNKS as u32 - 1);
    assert!(latency.p50 >= min_total.as_secs_f64() * 1000.0, "{latency:?}");
    // The tool asked for the usage chunk.
    let bodies = fake.seen.bodies.lock().unwrap();
    assert!(bodies.iter().all(|b| b["stream_options"]["include_usage"] == true && b["stream"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_text_chunks_are_counted() {
    let fake = support::start().await;
    let mut s = scenario(&fake.url, &["nousage"], 4);
    s.api = Some(Api::Completions);
    let report = run_scenario(&s, Arc::new(Live::default())).await.unwrap();
    assert_eq!(report.overall.ok, 4, "{:?}", report.errors);
    assert_eq!(report.overall.output_tokens, 4 * TEXT_CHUNKS as u64);
    assert_eq!(report.overall.ttft_ms.unwrap().count, 4);
    assert!(fake.seen.bodies.lock().unwrap().iter().all(|b| b["prompt"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_streams_are_transport_failures() {
    let fake = support::start().await;
    let report =
        run_scenario(&scenario(&fake.url, &["good", "cut", "broken"], 30), Arc::new(Live::default())).await.unwrap();
    let tier = |name: &str| &report.tiers.iter().find(|t| t.tier == name).unwrap().report;
    assert_eq!(tier("good").ok, fake.seen.count("good"));
    for name in ["cut", "broken"] {
        assert_eq!(tier(name).status["transport"], fake.seen.count(name), "{name}");
        assert_eq!(tier(name).ok, 0);
    }
    let count = |kind: &str| report.errors.iter().find(|e| e.kind == kind).map_or(0, |e| e.count);
    assert_eq!(count("stream ended without [DONE]"), fake.seen.count("cut"), "{:?}", report.errors);
    assert_eq!(count("error event in stream"), fake.seen.count("broken"), "{:?}", report.errors);
    // Failed streams contribute no latencies.
    assert_eq!(report.overall.ttft_ms.unwrap().count, tier("good").ok);
}
