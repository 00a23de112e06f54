//! Tenants that misbehave on purpose, as a soak run needs them: clients that hang up after the first
//! token or after a delay, and bodies padded to a size. The fake server's side is checked too: it must
//! see the hang-ups (streams dropped before their end) and receive bodies of the asked size.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use llamagate_loadgen::scenario::{Disconnect, TenantSpec};
use llamagate_loadgen::{Live, Scenario, run_scenario};

use crate::support::{self, FIRST_DELAY};

fn scenario(url: &str, tenants: Vec<TenantSpec>, requests: u64) -> Scenario {
    Scenario {
        url: Some(url.to_string()),
        requests: Some(requests),
        concurrency: Some(4),
        stream: Some(true),
        tenants: Some(tenants),
        ..Default::default()
    }
}

/// Waits (up to 10 s) until the fake server has seen `n` abandoned streams, and returns how many it saw.
async fn abandoned(fake: &support::Fake, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.seen.abandoned.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.seen.abandoned.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_after_the_first_token_is_counted_and_seen_by_the_server() {
    let fake = support::start().await;
    let quitter = TenantSpec {
        token: Some("good".into()),
        disconnect_after: Some(Disconnect::FirstToken),
        ..TenantSpec::named("quitter", 1.0)
    };
    let report = run_scenario(&scenario(&fake.url, vec![quitter], 12), Arc::new(Live::default())).await.unwrap();
    let all = &report.overall;
    assert_eq!((all.requests, all.status["disconnected"], all.ok), (12, 12, 0), "{:?}", report.errors);
    assert_eq!(all.http_status.get(&200), Some(&12), "the status line arrived before the hang-up");
    assert!(report.errors.is_empty(), "a planned hang-up is not an error: {:?}", report.errors);
    assert_eq!(abandoned(&fake, 12).await, 12, "the server must see every stream dropped before its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_after_a_delay_leaves_before_the_first_token() {
    let fake = support::start().await;
    // The fake server waits FIRST_DELAY (40 ms) before the first token; this client leaves at 10 ms.
    let impatient = TenantSpec {
        token: Some("good".into()),
        disconnect_after: Some(Disconnect::After(FIRST_DELAY / 4)),
        ..TenantSpec::named("impatient", 1.0)
    };
    // A patient tenant next to it still gets whole answers over the same client.
    let patient = support::tenant("patient", 1.0, Some("good"));
    let report =
        run_scenario(&scenario(&fake.url, vec![impatient, patient], 40), Arc::new(Live::default())).await.unwrap();
    let impatient = &report.tiers[0].report;
    let patient = &report.tiers[1].report;
    assert!(impatient.requests > 0 && patient.requests > 0);
    assert_eq!(impatient.status["disconnected"], impatient.requests, "{:?}", impatient.status);
    assert_eq!((impatient.output_tokens, impatient.ttft_ms), (0, None));
    assert_eq!((patient.ok, patient.status["transport"]), (patient.requests, 0), "{:?}", report.errors);
    assert_eq!(abandoned(&fake, impatient.requests).await, impatient.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_padded_to_the_asked_size_and_stay_valid_requests() {
    let fake = support::start().await;
    let big = TenantSpec { token: Some("good".into()), body_bytes: Some(300_000), ..TenantSpec::named("big", 1.0) };
    let small = support::tenant("small", 1.0, Some("good"));
    let report = run_scenario(&scenario(&fake.url, vec![big, small], 20), Arc::new(Live::default())).await.unwrap();
    assert_eq!(report.overall.ok, 20, "{:?}", report.errors);
    let sizes = fake.seen.body_sizes.lock().unwrap().clone();
    let padded = sizes.iter().filter(|&&n| n == 300_000).count() as u64;
    assert_eq!(padded, report.tiers[0].report.requests, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n == 300_000 || n < 1_000), "{sizes:?}");
    // Every body the server parsed is a chat request with its model and messages.
    let bodies = fake.seen.bodies.lock().unwrap().clone();
    assert!(bodies.iter().all(|b| b["model"].is_string() && b["messages"][0]["content"].is_string()));
    let longest = bodies.iter().filter_map(|b| b["messages"][0]["content"].as_str()).map(str::len).max();
    assert!(longest.is_some_and(|n| n > 299_000), "{longest:?}");

    // `first_token` without streaming is refused before anything is sent.
    let quitter = TenantSpec { disconnect_after: Some(Disconnect::FirstToken), ..TenantSpec::named("q", 1.0) };
    let plain = Scenario { stream: Some(false), ..scenario(&fake.url, vec![quitter], 1) };
    let error = run_scenario(&plain, Arc::new(Live::default())).await.unwrap_err().to_string();
    assert!(error.contains("first_token needs stream"), "{error}");
}
