//! Active health checks: each upstream of a provider is probed every `health_check_interval_seconds`
//! with `GET {base_url}/models` (every OpenAI-compatible server has it, and it costs no generation),
//! and the answer goes to its breaker ([`super::pool::Pool::probed`]).
//!
//! What counts as failing is what a request would count: no connection, no answer in time, or a 5xx.
//! Any other status — a 401 for a wrong key, a 404 from a server without `/models` — means the upstream
//! is there, so a probe never keeps a live upstream out; the requests' own breaker still judges it.

use std::sync::Arc;
use std::time::Duration;

use super::ProviderRuntime;

/// Starts the probes of `provider`, if it has an interval; they run until the runtime stops.
pub fn spawn(provider: Arc<ProviderRuntime>) {
    let Some(interval) = provider.config.health_check_interval else { return };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A probe slower than the interval (or the read timeout) has failed.
        let timeout = interval.min(provider.config.read_timeout).max(Duration::from_secs(1));
        loop {
            // The first tick is at once: an upstream dead at start is known before the first request.
            ticks.tick().await;
            let probes = provider.pool.base_urls().enumerate().map(|(index, base_url)| {
                let provider = &provider;
                async move { (index, probe(provider, base_url, timeout).await) }
            });
            for (index, passing) in futures::future::join_all(probes).await {
                provider.pool.probed(index, passing);
            }
        }
    });
}

/// One probe of one upstream: `true` when it answered in time with anything but a 5xx.
async fn probe(provider: &ProviderRuntime, base_url: &str, timeout: Duration) -> bool {
    let mut request = provider.client.get(format!("{base_url}/models")).timeout(timeout);
    if let Some(key) = &provider.config.api_key {
        request = request.bearer_auth(key.expose());
    }
    match request.send().await {
        Ok(response) => !response.status().is_server_error(),
        Err(e) => {
            tracing::debug!(provider = %provider.config.provider_id, error = %e.without_url(), "health probe failed");
            false
        }
    }
}
