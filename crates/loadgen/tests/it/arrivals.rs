//! The open loop: Poisson arrivals at the asked rate (checked on the seeded schedule, not by timing),
//! and exactly the asked number of requests.

use std::sync::Arc;

use llamagate_loadgen::runner::arrival_schedule;
use llamagate_loadgen::scenario::MaxTokens;
use llamagate_loadgen::{Live, Scenario, run_scenario};

use crate::support;

#[test]
fn the_schedule_has_the_rate_and_exponential_gaps() {
    let rate = 50.0;
    let horizon = 200.0;
    let times: Vec<f64> = arrival_schedule(rate, 42).map(|t| t.as_secs_f64()).take_while(|&t| t < horizon).collect();
    // Poisson: mean 10,000 arrivals, standard deviation 100; allow four.
    let n = times.len() as f64;
    assert!((n - rate * horizon).abs() < 400.0, "{n} arrivals");
    // Exponential gaps: mean 1/rate and a coefficient of variation of 1.
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    assert!((mean * rate - 1.0).abs() < 0.05, "mean gap {mean}");
    assert!((sd / mean - 1.0).abs() < 0.05, "coefficient of variation {}", sd / mean);
    // Every second of the 200 has arrivals near the rate (none empty, none wildly over).
    let mut per_second = vec![0u32; horizon as usize];
    for t in &times {
        per_second[*t as usize] += 1;
    }
    assert!(per_second.iter().all(|&c| (20..=90).contains(&c)), "{per_second:?}");
    // Seeded: the same seed gives the same schedule, another seed a different one.
    let again: Vec<f64> = arrival_schedule(rate, 42).map(|t| t.as_secs_f64()).take(100).collect();
    assert_eq!(&times[..100], &again[..]);
    let other: Vec<f64> = arrival_schedule(rate, 43).map(|t| t.as_secs_f64()).take(100).collect();
    assert_ne!(&times[..100], &other[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_sends_the_requests_asked_for_reproducibly() {
    let mut sent = Vec::new();
    for _ in 0..2 {
        let fake = support::start().await;
        let scenario = Scenario {
            url: Some(fake.url.clone()),
            rate: Some(500.0),
            requests: Some(120),
            stream: Some(false),
            max_tokens: Some(MaxTokens { min: 1, max: 1000 }),
            seed: Some(7),
            tenants: Some(vec![support::tenant("good", 1.0, Some("good"))]),
            ..Default::default()
        };
        let report = run_scenario(&scenario, Arc::new(Live::default())).await.unwrap();
        assert_eq!((report.overall.requests, report.overall.ok), (120, 120), "{:?}", report.errors);
        assert_eq!(fake.seen.total(), 120);
        assert_eq!(report.config.rate, Some(500.0));
        let mut max_tokens: Vec<u64> =
            fake.seen.bodies.lock().unwrap().iter().map(|b| b["max_tokens"].as_u64().unwrap()).collect();
        // Arrival order can differ from receipt order by a few places; compare as multisets.
        max_tokens.sort_unstable();
        sent.push(max_tokens);
    }
    assert_eq!(sent[0], sent[1], "the same seed sent different requests");
    assert!(sent[0].first() != sent[0].last(), "max_tokens was not drawn from the range");
}
