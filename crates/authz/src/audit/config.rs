//! The `oauth_config.audit` section: where records go, how files rotate, and what happens when
//! the writer falls behind.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// Level at which audit records are emitted (`oauth_config.audit_log_level`). Read in any case,
/// with Python's `logging` names too (`WARNING`, `CRITICAL`, `FATAL`, `NOTSET`), since Llama Stack
/// configurations are written for a Python server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLogLevel {
    /// Every decision, including successful ones, with extra detail.
    Debug,
    /// Every decision.
    #[default]
    Info,
    /// Refusals only.
    Warn,
    /// Server-side failures only.
    Error,
}

impl<'de> Deserialize<'de> for AuditLogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.trim().to_ascii_lowercase().as_str() {
            "debug" | "notset" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" | "critical" | "fatal" => Ok(Self::Error),
            _ => Err(serde::de::Error::custom(format!(
                "unknown audit level `{name}`, expected debug, info, warning, error or critical (any case)"
            ))),
        }
    }
}

/// What [`super::AuditLog::record`] does when the queue to the writer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Wait up to `block_timeout_ms` for room, then count the record as dropped. Requests slow down
    /// a little under a slow disk instead of going unaudited.
    #[default]
    Block,
    /// Refuse the request (503) when its record cannot be queued at once: nothing runs unaudited.
    FailClosed,
}

/// Audit sinks and their limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines file to append to (e.g. `/var/log/llamagate/audit.log`). Unset and `stdout` off:
    /// `llamagate serve` writes `inference_audit.log` beside its config file, as Llama Stack's design
    /// does.
    pub path: Option<PathBuf>,
    /// Also write every record to stdout (for a platform's log pipeline); with `path` unset, stdout
    /// alone.
    pub stdout: bool,
    /// Rotate the file once it would grow past this many bytes.
    pub rotate_max_bytes: u64,
    /// Rotate the file when the UTC day changes.
    pub rotate_daily: bool,
    /// Rotated files to keep; older ones are deleted.
    pub retention_files: usize,
    /// Records that may wait for the writer; beyond this [`OnFull`] applies.
    pub queue_capacity: usize,
    /// What to do when the queue is full.
    pub on_full: OnFull,
    /// How long [`OnFull::Block`] waits for room.
    pub block_timeout_ms: u64,
    /// Put the prompt text into request records. Off by default: prompts are user data; turn on only
    /// for research deployments that need them and protect the log accordingly.
    pub record_prompts: bool,
    /// The field names records are written with.
    pub schema: AuditSchema,
    /// Where to keep the chain's [`super::Checkpoint`] (newest record and oldest kept record), replaced
    /// after every burst of writes: put it where whoever can rewrite the log cannot. Unset: no
    /// checkpoint file (the checkpoint is still logged at shutdown).
    pub checkpoint_path: Option<PathBuf>,
}

/// The field names of a written record. The hash chain (`seq`, `prev_hash`, `hash`) and
/// `llamagate audit verify` are the same for both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSchema {
    /// llamagate's own: `event`, `decision`, `subject`, `model`, … (docs/audit.md).
    #[default]
    Llamagate,
    /// The Llama Stack OAuth design's: `event_type`, `user_id`, `model_id`, `request_type`,
    /// `token_issuer`, `success`, `error`, the rest under `metadata`; severities `INFO`, `WARNING`,
    /// `ERROR` — for log pipelines built for that design.
    LlamaStack,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            stdout: false,
            rotate_max_bytes: 100 * 1024 * 1024,
            rotate_daily: true,
            retention_files: 30,
            queue_capacity: 65_536,
            on_full: OnFull::Block,
            block_timeout_ms: 250,
            record_prompts: false,
            schema: AuditSchema::default(),
            checkpoint_path: None,
        }
    }
}

impl AuditConfig {
    /// Checks the section; errors name the key (`oauth_config.audit.<key>`) and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::invalid(
                "audit.path",
                "is empty",
                "give a file path, or remove the key to use stdout",
            ));
        }
        if let (Some(checkpoint), Some(log)) = (&self.checkpoint_path, &self.path) {
            let log_name = log.file_name().map(|n| format!("{}", n.to_string_lossy()));
            let name = checkpoint.file_name().map(|n| n.to_string_lossy().into_owned());
            let beside_log = checkpoint.parent() == log.parent();
            // `<log>.<anything>` beside the log is a rotated file to the writer (and would be pruned).
            if checkpoint == log
                || (beside_log && name.zip(log_name).is_some_and(|(n, l)| n.starts_with(&format!("{l}."))))
            {
                return Err(ConfigError::invalid(
                    "audit.checkpoint_path",
                    "is the log file or looks like one of its rotated files",
                    "give another file, ideally on another volume",
                ));
            }
        }
        if self.rotate_max_bytes < 4096 {
            return Err(ConfigError::invalid(
                "audit.rotate_max_bytes",
                "must be at least 4096",
                "use e.g. 104857600 (100 MiB)",
            ));
        }
        if self.retention_files == 0 {
            return Err(ConfigError::invalid("audit.retention_files", "must be at least 1", "use e.g. 30"));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::invalid("audit.queue_capacity", "must be at least 1", "use e.g. 65536"));
        }
        if self.block_timeout_ms > 10_000 {
            return Err(ConfigError::invalid("audit.block_timeout_ms", "must be at most 10000", "use e.g. 250"));
        }
        Ok(())
    }
}
