//! Running a plan: the closed and the open loop.
//!
//! **Closed loop** (`concurrency: N`): N workers, each sending its next request as soon as its
//! previous one finished. The server sees exactly N requests at a time; this measures latency under a
//! known load, and throughput at saturation.
//!
//! **Open loop** (`rate: R`): requests start at the arrival times of a Poisson process with R
//! arrivals per second, independent of how fast earlier ones finish — how independent users behave.
//! A server slower than the offered load builds a queue and its latency grows, which a closed loop
//! would hide. In-flight requests are capped (`max_in_flight`); when the cap is reached, arrivals wait
//! and the achieved rate falls below the offered one (the report shows both).
//!
//! Either loop stops *sending* at the duration or request count (whichever comes first) or on
//! Ctrl-C, then waits for the requests in flight: every request sent is counted, so the report's
//! totals can be checked against the server's own logs.
//!
//! Outcomes flow over a channel to one collector (this task), which owns the [`Recorder`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{Semaphore, mpsc};

use crate::client::LoadClient;
use crate::progress::Live;
use crate::scenario::{Mode, Plan};
use crate::stats::{Outcome, Recorder};
use crate::tokens::TenantMix;
use crate::workload::{PoissonArrivals, RequestShape};

/// What a run sends: request bodies and the tenants they come from.
pub struct Workload {
    /// Bodies.
    pub shape: RequestShape,
    /// Tenants.
    pub mix: TenantMix,
}

/// What a run recorded.
pub struct RunResult {
    /// Everything recorded.
    pub recorder: Recorder,
    /// From the first request sent to the last one finished.
    pub wall: Duration,
    /// When the last request was sent, from the start.
    pub sending: Duration,
}

/// The random stream of one worker (stream 0 is the open loop's arrival schedule).
fn worker_rng(seed: u64, worker: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(worker + 1);
    rng
}

/// The arrival schedule of an open-loop run with this seed.
pub fn arrival_schedule(rate: f64, seed: u64) -> PoissonArrivals {
    PoissonArrivals::new(rate, ChaCha8Rng::seed_from_u64(seed))
}

/// Runs the plan to the end.
pub async fn run(plan: &Plan, workload: Workload, live: Arc<Live>) -> anyhow::Result<RunResult> {
    let client = LoadClient::new(plan)?;
    let workload = Arc::new(workload);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    let sender = match plan.mode {
        Mode::Concurrency(n) => {
            tokio::spawn(closed_loop(plan.clone(), n, client, workload.clone(), live.clone(), tx, start))
        }
        Mode::Rate(rate) => {
            tokio::spawn(open_loop(plan.clone(), rate, client, workload.clone(), live.clone(), tx, start))
        }
    };
    let mut recorder = Recorder::new(workload.mix.tenants().len());
    while let Some(outcome) = rx.recv().await {
        recorder.add(&outcome);
    }
    let wall = start.elapsed();
    let sending = sender.await??;
    Ok(RunResult { recorder, wall, sending })
}

/// The sending end of a loop: counts the request in [`Live`] and hands its outcome to the collector.
async fn send_one(
    client: &LoadClient,
    workload: &Workload,
    live: &Live,
    tx: &mpsc::UnboundedSender<Outcome>,
    rng: &mut ChaCha8Rng,
    start: Instant,
) {
    let index = workload.mix.pick(rng);
    let tenant = &workload.mix.tenants()[index];
    let body = workload.shape.body(rng, tenant.body_bytes);
    live.started();
    let outcome = client.send(index, tenant.authorization.as_ref(), body, tenant.disconnect, start).await;
    live.finished(&outcome);
    // The collector outlives every sender, so this cannot fail while the run is going on.
    let _ = tx.send(outcome);
}

async fn closed_loop(
    plan: Plan,
    workers: usize,
    client: LoadClient,
    workload: Arc<Workload>,
    live: Arc<Live>,
    tx: mpsc::UnboundedSender<Outcome>,
    start: Instant,
) -> anyhow::Result<Duration> {
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = plan.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (client, workload, live, tx, issued) =
            (client.clone(), workload.clone(), live.clone(), tx.clone(), issued.clone());
        let mut rng = worker_rng(plan.seed, worker as u64);
        let limit = plan.requests;
        tasks.push(tokio::spawn(async move {
            let mut last_sent = Duration::ZERO;
            loop {
                if live.stopping() || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if limit.is_some_and(|limit| issued.fetch_add(1, Ordering::Relaxed) >= limit) {
                    break;
                }
                last_sent = start.elapsed();
                send_one(&client, &workload, &live, &tx, &mut rng, start).await;
            }
            last_sent
        }));
    }
    drop(tx);
    let mut sending = Duration::ZERO;
    for task in tasks {
        sending = sending.max(task.await?);
    }
    Ok(sending)
}

async fn open_loop(
    plan: Plan,
    rate: f64,
    client: LoadClient,
    workload: Arc<Workload>,
    live: Arc<Live>,
    tx: mpsc::UnboundedSender<Outcome>,
    start: Instant,
) -> anyhow::Result<Duration> {
    let slots = Arc::new(Semaphore::new(plan.max_in_flight));
    let mut rng = worker_rng(plan.seed, 0);
    let mut last_sent = Duration::ZERO;
    for (index, offset) in arrival_schedule(rate, plan.seed).enumerate() {
        if live.stopping()
            || plan.requests.is_some_and(|limit| index as u64 >= limit)
            || plan.duration.is_some_and(|d| offset >= d)
        {
            break;
        }
        tokio::time::sleep_until((start + offset).into()).await;
        let permit = slots.clone().acquire_owned().await?;
        // Choices are drawn here, in arrival order, so they do not depend on task scheduling.
        let index = workload.mix.pick(&mut rng);
        let body = workload.shape.body(&mut rng, workload.mix.tenants()[index].body_bytes);
        let (client, workload, live, tx) = (client.clone(), workload.clone(), live.clone(), tx.clone());
        last_sent = start.elapsed();
        tokio::spawn(async move {
            let tenant = &workload.mix.tenants()[index];
            live.started();
            let outcome = client.send(index, tenant.authorization.as_ref(), body, tenant.disconnect, start).await;
            live.finished(&outcome);
            drop(permit);
            let _ = tx.send(outcome);
        });
    }
    Ok(last_sent)
}
