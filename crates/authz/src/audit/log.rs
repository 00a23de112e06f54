//! [`AuditLog`]: the handle the request path uses. Queues records for the writer thread without
//! doing I/O itself, applies the [`OnFull`] policy when the writer falls behind, and never blocks the
//! thread it is called on: waiting for room (policy `block`) is an `await` ([`AuditLog::record_async`])
//! or a bounded background wait ([`AuditLog::record`]), so a slow disk slows the requests it audits,
//! not the async workers that serve everyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::mpsc::{self, Receiver, Sender};

use super::config::{AuditConfig, OnFull};
use super::record::AuditRecord;
use super::writer::ChainWriter;
use crate::audit::config::AuditLogLevel;

/// Why a record was not queued.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The sinks could not be opened at start.
    #[error("cannot open the audit log: {0}")]
    Open(#[from] std::io::Error),
    /// The queue stayed full (policy `block`) or was full (policy `fail_closed`); the record is
    /// counted as dropped.
    #[error("the audit queue is full")]
    QueueFull,
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    Stopped,
    /// The sinks failed their last write (disk full, pipe closed) and the policy is `fail_closed`:
    /// the record is queued, so the next write shows whether they recovered, but the caller must
    /// refuse the request it describes.
    #[error("the audit log cannot write its records")]
    SinkFailing,
}

/// Counters for health and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Records written to the sinks.
    pub written: u64,
    /// Records that could not be queued.
    pub dropped: u64,
    /// Records the writer failed to write (I/O errors).
    pub write_errors: u64,
    /// Whether the sinks failed their last write.
    pub failing: bool,
}

/// The writer's state as the request path and an operator see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditHealth {
    /// Records are written as they come.
    Ok,
    /// The queue is more than half full or records are waiting for room: the sink is slower than the
    /// traffic (policy `block` slows the audited requests down; `fail_closed` soon refuses them).
    Slow,
    /// The sinks failed their last write (disk full, pipe closed).
    Failed,
}

impl AuditHealth {
    /// The metrics gauge's value: 0 ok, 1 slow, 2 failed.
    pub fn as_gauge(self) -> u64 {
        match self {
            Self::Ok => 0,
            Self::Slow => 1,
            Self::Failed => 2,
        }
    }
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    /// Set by a failed write or flush, cleared by a successful flush.
    failing: AtomicBool,
}

enum Message {
    Record(Box<AuditRecord>),
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Holds the writer until the other end is dropped: a sink that stalls, for tests.
    #[cfg(test)]
    Stall(std::sync::mpsc::Receiver<()>),
}

/// Cheap to clone; all clones feed the same writer thread, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    sender: Sender<Message>,
    counters: Arc<Counters>,
    /// Room for records that [`AuditLog::record`] (called where it cannot `await`) hands to a
    /// background wait under policy `block`: bounded, so a stalled sink cannot grow memory without end.
    waiting: Arc<Semaphore>,
    waiting_room: usize,
    level: AuditLogLevel,
    on_full: OnFull,
    block_timeout: Duration,
    record_prompts: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("level", &self.level).field("stats", &self.stats()).finish()
    }
}

impl AuditLog {
    /// Opens the sinks (resuming the chain) and starts the writer thread.
    pub fn start(config: &AuditConfig, level: AuditLogLevel) -> Result<Self, AuditError> {
        let writer = ChainWriter::open(config)?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run_writer(writer, receiver, &thread_counters))?;
        Ok(Self::with_queue(sender, counters, config, level))
    }

    fn with_queue(
        sender: Sender<Message>,
        counters: Arc<Counters>,
        config: &AuditConfig,
        level: AuditLogLevel,
    ) -> Self {
        let waiting_room = config.queue_capacity.div_ceil(4).max(1);
        Self {
            sender,
            counters,
            waiting: Arc::new(Semaphore::new(waiting_room)),
            waiting_room,
            level,
            on_full: config.on_full,
            block_timeout: Duration::from_millis(config.block_timeout_ms),
            record_prompts: config.record_prompts,
        }
    }

    /// True when a request whose record cannot be queued must be refused ([`OnFull::FailClosed`]).
    pub fn fails_closed(&self) -> bool {
        self.on_full == OnFull::FailClosed
    }

    /// True when prompts may be put into records (the opt-in flag).
    pub fn records_prompts(&self) -> bool {
        self.record_prompts
    }

    /// Whether the writer keeps up: for the request path, `/v1/health` and the metrics.
    pub fn health(&self) -> AuditHealth {
        if self.counters.failing.load(Ordering::Relaxed) {
            return AuditHealth::Failed;
        }
        let queued = self.sender.max_capacity() - self.sender.capacity();
        let waiting = self.waiting_room - self.waiting.available_permits();
        if queued * 2 > self.sender.max_capacity() || waiting > 0 { AuditHealth::Slow } else { AuditHealth::Ok }
    }

    /// Queues a record where the caller can wait for room (the request path). Under
    /// [`OnFull::Block`] a full queue is waited on for up to `block_timeout_ms` without holding the
    /// thread; under [`OnFull::FailClosed`] it refuses at once. `Err` means the record was not queued
    /// (counted as dropped) or, with `fail_closed`, that the sink is failing: refuse the request.
    pub async fn record_async(&self, record: AuditRecord) -> Result<(), AuditError> {
        let Some(message) = self.admit(record) else { return Ok(()) };
        if self.on_full == OnFull::FailClosed {
            return match self.sender.try_send(message) {
                Ok(()) => self.after_queued(),
                Err(TrySendError::Full(_)) => self.dropped(AuditError::QueueFull),
                Err(TrySendError::Closed(_)) => self.dropped(AuditError::Stopped),
            };
        }
        match self.sender.send_timeout(message, self.block_timeout).await {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => self.dropped(AuditError::QueueFull),
            Err(SendTimeoutError::Closed(_)) => self.dropped(AuditError::Stopped),
        }
    }

    /// Queues a record from code that cannot wait (a destructor, a synchronous callback) and never
    /// blocks. Under [`OnFull::Block`] a full queue hands the record to a bounded background wait of
    /// up to `block_timeout_ms` on the current Tokio runtime (dropped and counted when that times out
    /// or there is no room left to wait in); under [`OnFull::FailClosed`] it refuses at once.
    pub fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        let Some(message) = self.admit(record) else { return Ok(()) };
        match self.sender.try_send(message) {
            Ok(()) => self.after_queued(),
            Err(TrySendError::Full(message)) if self.on_full == OnFull::Block => self.wait_in_background(message),
            Err(TrySendError::Full(_)) => self.dropped(AuditError::QueueFull),
            Err(TrySendError::Closed(_)) => self.dropped(AuditError::Stopped),
        }
    }

    /// Applies the level filter and the prompt opt-in; `None` when the record is filtered out.
    fn admit(&self, mut record: AuditRecord) -> Option<Message> {
        if !record.severity.passes(self.level) {
            return None;
        }
        if !self.record_prompts {
            record.prompt = None;
        }
        Some(Message::Record(Box::new(record)))
    }

    /// A queued record still refuses its request when the policy is `fail_closed` and the sink failed.
    fn after_queued(&self) -> Result<(), AuditError> {
        if self.on_full == OnFull::FailClosed && self.counters.failing.load(Ordering::Relaxed) {
            Err(AuditError::SinkFailing)
        } else {
            Ok(())
        }
    }

    fn dropped(&self, error: AuditError) -> Result<(), AuditError> {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        Err(error)
    }

    fn wait_in_background(&self, message: Message) -> Result<(), AuditError> {
        let (Ok(runtime), Ok(permit)) =
            (tokio::runtime::Handle::try_current(), Arc::clone(&self.waiting).try_acquire_owned())
        else {
            return self.dropped(AuditError::QueueFull);
        };
        let (sender, counters, timeout) = (self.sender.clone(), self.counters.clone(), self.block_timeout);
        runtime.spawn(async move {
            if sender.send_timeout(message, timeout).await.is_err() {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        Ok(())
    }

    /// Waits until every record queued before this call is written and flushed (tests, shutdown:
    /// it may sleep the calling thread for up to ten seconds, so it is never on the request path).
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let mut message = Message::Flush(ack);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = done.recv_timeout(Duration::from_secs(10));
    }

    /// Current counters.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            failing: self.counters.failing.load(Ordering::Relaxed),
        }
    }
}

fn run_writer(mut writer: ChainWriter, mut receiver: Receiver<Message>, counters: &Counters) {
    while let Some(first) = receiver.blocking_recv() {
        let mut acks = Vec::new();
        let mut next = Some(first);
        // Drain whatever is queued, then flush once: one write system call per burst, not per record.
        while let Some(message) = next {
            match message {
                Message::Record(record) => match writer.write(&record) {
                    Ok(()) => {
                        counters.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::error!(%error, "audit record not written");
                        counters.failing.store(true, Ordering::Relaxed);
                        counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Message::Flush(ack) => acks.push(ack),
                #[cfg(test)]
                Message::Stall(until) => {
                    let _ = until.recv();
                }
            }
            next = receiver.try_recv().ok();
        }
        match writer.flush() {
            Ok(()) => counters.failing.store(false, Ordering::Relaxed),
            Err(error) => {
                tracing::error!(%error, "audit log flush failed");
                counters.failing.store(true, Ordering::Relaxed);
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !acks.is_empty()
            && let Some(checkpoint) = writer.checkpoint()
        {
            // A flush is asked for at shutdown: the line an operator copies off the machine.
            tracing::info!(seq = checkpoint.seq, hash = %checkpoint.hash, first_seq = checkpoint.first_seq, "audit checkpoint");
        }
        let asked_to_flush = !acks.is_empty();
        for ack in acks {
            let _ = ack.send(());
        }
        // Under steady traffic, waking for every record or two costs the request path more (a wake-up per
        // record, a write per wake-up) than the writing itself: after a burst, let the next one gather for
        // a moment. Records wait at most this long longer; nothing waits on them but a flush, answered at once.
        if !asked_to_flush {
            std::thread::sleep(GATHER);
        }
    }
    let _ = writer.flush();
}

/// How long the writer lets records gather after writing a burst.
const GATHER: Duration = Duration::from_micros(500);

#[cfg(test)]
mod tests {
    use super::super::chain::verify_files;
    use super::super::record::{AuditEvent, Outcome, Severity};
    use super::*;

    fn started(dir: &std::path::Path, level: AuditLogLevel) -> (AuditLog, std::path::PathBuf) {
        let path = dir.join("audit.log");
        let config = AuditConfig { path: Some(path.clone()), ..AuditConfig::default() };
        (AuditLog::start(&config, level).unwrap(), path)
    }

    #[test]
    fn concurrent_records_are_all_written_in_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = started(dir.path(), AuditLogLevel::Info);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = log.clone();
                thread::spawn(move || {
                    for _ in 0..250 {
                        log.record(AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed)).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        log.flush();
        assert_eq!(log.stats(), AuditStats { written: 2000, dropped: 0, write_errors: 0, failing: false });
        assert_eq!(verify_files(&[path]).unwrap().records, 2000);
    }

    #[test]
    fn level_filters_and_prompts_are_dropped_unless_opted_in() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = started(dir.path(), AuditLogLevel::Warn);
        let mut allowed = AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed);
        allowed.prompt = Some("secret prompt".into());
        log.record(allowed).unwrap();
        let mut refused = AuditRecord::new(AuditEvent::SecurityInvalidToken, Outcome::Refused);
        refused.prompt = Some("secret prompt".into());
        log.record(refused).unwrap();
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("security_invalid_token"));
        assert!(!text.contains("secret prompt"));
        assert_eq!(Severity::Warn, AuditEvent::SecurityInvalidToken.default_severity());
    }

    /// A log whose writer is stalled (the test holds the returned sender) with a queue of `capacity`.
    fn stalled(dir: &std::path::Path, capacity: usize, on_full: OnFull) -> (AuditLog, std::sync::mpsc::SyncSender<()>) {
        let config = AuditConfig {
            path: Some(dir.join("audit.log")),
            queue_capacity: capacity + 1,
            on_full,
            block_timeout_ms: 200,
            ..AuditConfig::default()
        };
        let log = AuditLog::start(&config, AuditLogLevel::Info).unwrap();
        let (release, until) = std::sync::mpsc::sync_channel(0);
        log.sender.try_send(Message::Stall(until)).ok().unwrap();
        // Wait until the writer holds the stall (it left the queue).
        while log.sender.capacity() != capacity + 1 {
            thread::sleep(Duration::from_millis(1));
        }
        // Take the extra slot so exactly `capacity` remain.
        log.sender.try_send(Message::Record(Box::new(record()))).ok().unwrap();
        (log, release)
    }

    fn record() -> AuditRecord {
        AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed)
    }

    #[test]
    fn fail_closed_refuses_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let (log, release) = stalled(dir.path(), 2, OnFull::FailClosed);
        log.record(record()).unwrap();
        log.record(record()).unwrap();
        assert!(matches!(log.record(record()), Err(AuditError::QueueFull)));
        assert_eq!(log.stats().dropped, 1);
        assert_eq!(log.health(), AuditHealth::Slow);
        drop(release);
        log.flush();
        assert_eq!(log.health(), AuditHealth::Ok);
        assert_eq!(log.stats().written, 3);
    }

    /// M4: a stalled sink under policy `block` slows the audited request (it waits for room, then its
    /// record is dropped and counted) but never holds the async worker: on a one-thread runtime another
    /// task keeps running the whole time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stalled_sink_never_blocks_the_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (log, release) = stalled(dir.path(), 1, OnFull::Block);
        log.record_async(record()).await.unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let started = Instant::now();
        assert!(matches!(log.record_async(record()).await, Err(AuditError::QueueFull)));
        assert!(started.elapsed() >= Duration::from_millis(200), "it waited block_timeout_ms for room");
        assert!(ticks.load(Ordering::Relaxed) >= 10, "the other task ran while it waited");
        assert_eq!(log.health(), AuditHealth::Slow);
        // A record from a destructor waits in the background; it lands once the sink moves again.
        log.record(record()).unwrap();
        drop(release);
        tokio::time::sleep(Duration::from_millis(50)).await;
        ticker.abort();
        log.flush();
        let stats = log.stats();
        assert_eq!((stats.written, stats.dropped), (3, 1), "{stats:?}");
        assert_eq!(log.health(), AuditHealth::Ok);
    }
}
