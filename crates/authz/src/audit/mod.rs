//! The audit log: one JSON line per decision, chained by hashes so that an edited, deleted or
//! reordered line is detectable.
//!
//! Shape of the pipeline:
//! - the request path builds an [`AuditRecord`] (who, which client, model, decision, reason — never
//!   the token, its signature, keys or the prompt unless [`AuditConfig::record_prompts`] asks) and
//!   hands it to [`AuditLog::record`], which only queues it on a bounded channel;
//! - one writer thread ([`writer`]) numbers each record, seals it into the hash chain ([`chain`]) and
//!   appends it to the file (rotated by size or day, with retention) and/or stdout. A single writer is
//!   what makes the chain's order the file's order;
//! - when the channel is full the configured [`OnFull`] policy decides: wait briefly for room, or
//!   refuse the request (fail closed). Every record that could not be queued is counted in
//!   [`AuditStats::dropped`], so an operator sees that auditing fell behind instead of silently
//!   losing records;
//! - [`chain::verify_files`] (behind `llamagate audit verify`) replays the chain and reports the first
//!   broken or missing record; a [`checkpoint::Checkpoint`] kept outside the log (written after every
//!   burst, logged at shutdown) also shows records cut off either end.

pub mod chain;
pub mod checkpoint;
pub mod config;
pub mod log;
pub mod record;
pub mod writer;

pub use chain::{VerifyError, VerifyReport, verify_files, verify_files_pinned};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::{AuditConfig, AuditLogLevel, AuditSchema, OnFull};
pub use log::{AuditError, AuditHealth, AuditLog, AuditStats};
pub use record::{AuditEvent, AuditRecord, Outcome, Severity};
