//! [`AuditLog`]: the handle the request path uses. Queues records for the writer thread without
//! doing I/O itself, and applies the [`OnFull`] policy when the writer falls behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

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
    Flush(SyncSender<()>),
}

/// Cheap to clone; all clones feed the same writer thread, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    sender: SyncSender<Message>,
    counters: Arc<Counters>,
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
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run_writer(writer, receiver, &thread_counters))?;
        Ok(Self {
            sender,
            counters,
            level,
            on_full: config.on_full,
            block_timeout: Duration::from_millis(config.block_timeout_ms),
            record_prompts: config.record_prompts,
        })
    }

    /// True when a request whose record cannot be queued must be refused ([`OnFull::FailClosed`]).
    pub fn fails_closed(&self) -> bool {
        self.on_full == OnFull::FailClosed
    }

    /// True when prompts may be put into records (the opt-in flag).
    pub fn records_prompts(&self) -> bool {
        self.record_prompts
    }

    /// Queues a record unless `audit_log_level` filters it out. `Err` means the record was not
    /// queued and is counted as dropped; with [`OnFull::FailClosed`] the caller refuses the request.
    pub fn record(&self, mut record: AuditRecord) -> Result<(), AuditError> {
        if !record.severity.passes(self.level) {
            return Ok(());
        }
        if !self.record_prompts {
            record.prompt = None;
        }
        let mut message = Message::Record(Box::new(record));
        let deadline = Instant::now() + self.block_timeout;
        loop {
            match self.sender.try_send(message) {
                Ok(()) if self.on_full == OnFull::FailClosed && self.counters.failing.load(Ordering::Relaxed) => {
                    return Err(AuditError::SinkFailing);
                }
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(AuditError::Stopped);
                }
                Err(TrySendError::Full(back)) => {
                    if self.on_full == OnFull::FailClosed || Instant::now() >= deadline {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return Err(AuditError::QueueFull);
                    }
                    message = back;
                    // Blocking briefly: the writer drains thousands of records per millisecond, so
                    // a full queue means a stalled disk, and waiting is the policy asked for.
                    thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Waits until every record queued before this call is written and flushed (tests, shutdown).
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
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

fn run_writer(mut writer: ChainWriter, receiver: Receiver<Message>, counters: &Counters) {
    while let Ok(first) = receiver.recv() {
        let mut acks = Vec::new();
        let mut next = Some(first);
        // Drain whatever is queued, then flush once: one write system call per burst, not per record.
        while let Some(message) = next {
            match message {
                Message::Record(record) => match writer.write(&record) {
                    Ok(()) => counters.written.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        tracing::error!(%error, "audit record not written");
                        counters.failing.store(true, Ordering::Relaxed);
                        counters.write_errors.fetch_add(1, Ordering::Relaxed)
                    }
                },
                Message::Flush(ack) => {
                    acks.push(ack);
                    0
                }
            };
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
        for ack in acks {
            let _ = ack.send(());
        }
    }
    let _ = writer.flush();
}

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

    #[test]
    fn fail_closed_refuses_when_the_queue_is_full() {
        // A writer that never drains: a receiver nobody reads, so the queue fills deterministically.
        let (sender, _receiver) = mpsc::sync_channel(2);
        let log = AuditLog {
            sender,
            counters: Arc::default(),
            level: AuditLogLevel::Info,
            on_full: OnFull::FailClosed,
            block_timeout: Duration::ZERO,
            record_prompts: false,
        };
        let record = || AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed);
        log.record(record()).unwrap();
        log.record(record()).unwrap();
        assert!(matches!(log.record(record()), Err(AuditError::QueueFull)));
        assert_eq!(log.stats().dropped, 1);

        let blocking = AuditLog { on_full: OnFull::Block, block_timeout: Duration::from_millis(5), ..log };
        assert!(matches!(blocking.record(record()), Err(AuditError::QueueFull)));
        assert_eq!(blocking.stats().dropped, 2);
    }
}
