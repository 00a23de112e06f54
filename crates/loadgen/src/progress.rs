//! The live progress line.
//!
//! Request tasks bump a few atomic counters ([`Live`]); a ticker redraws one indicatif line on stderr
//! from them four times a second. The line is hidden when stderr is not a terminal (CI logs, pipes)
//! or with `--quiet`, so machine-read output stays clean.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::{Class, Outcome};

/// Counters shared by every request task.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests sent and not finished.
    pub in_flight: AtomicU64,
    /// Finished successfully.
    pub ok: AtomicU64,
    /// Finished with any failure.
    pub failed: AtomicU64,
    /// Output tokens of successful requests.
    pub output_tokens: AtomicU64,
    /// Set to stop sending new requests (Ctrl-C).
    pub stop: AtomicBool,
}

impl Live {
    /// Counts a request as started.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request as finished.
    pub fn finished(&self, outcome: &Outcome) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if outcome.class == Class::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.output_tokens.fetch_add(outcome.output_tokens, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether sending should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A progress line that follows [`Live`] until dropped.
pub struct ProgressLine {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts the line (a no-op when `quiet` or stderr is not a terminal).
    pub fn start(live: Arc<Live>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: ProgressBar::hidden(), ticker: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let line = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let seconds = start.elapsed().as_secs_f64().max(1e-3);
                let ok = live.ok.load(Ordering::Relaxed);
                let failed = live.failed.load(Ordering::Relaxed);
                let tokens = live.output_tokens.load(Ordering::Relaxed);
                line.set_message(format!(
                    "ok {ok}  failed {failed}  in flight {}  {:.1} req/s  {:.1} tok/s",
                    live.in_flight.load(Ordering::Relaxed),
                    (ok + failed) as f64 / seconds,
                    tokens as f64 / seconds,
                ));
                line.tick();
            }
        });
        Self { bar, ticker: Some(ticker) }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}
