//! Checkpoints: where the chain stood, kept outside the log so that cutting records off either end
//! of the log is detectable.
//!
//! The hash chain shows an edited, inserted or reordered record, but not records removed from the
//! ends: drop the newest lines, or delete the oldest file and the first lines of the next, and what is
//! left is still a valid chain. A [`Checkpoint`] pins both ends: the newest record's `seq` and hash,
//! and the `seq` of the oldest record the writer still keeps. The writer replaces the checkpoint file
//! (atomically, mode 0600) after every burst it writes and logs it at shutdown; put the file where
//! whoever can rewrite the log cannot (another volume or host, a log pipeline), or copy the logged
//! line off the machine. `llamagate audit verify --checkpoint FILE` then reports a log that ends
//! before the checkpoint, differs at the checkpointed record, or starts after the kept oldest record.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chain::VerifyReport;

/// Where the chain stood when the writer last flushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `seq` of the newest record written.
    pub seq: u64,
    /// Hash of that record.
    pub hash: String,
    /// `seq` of the oldest record still kept (in the oldest file retention left).
    pub first_seq: u64,
    /// When it was taken (RFC 3339, UTC).
    pub written_at: String,
}

/// Why a log does not match its checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint file could not be read or parsed.
    #[error("{path}: {problem}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The log ends before the checkpointed record: the newest records were removed.
    #[error(
        "the log ends at seq {last_seq:?} but the checkpoint saw seq {checkpoint_seq}: the newest records were removed"
    )]
    TailMissing {
        /// The last `seq` in the files given.
        last_seq: Option<u64>,
        /// The checkpoint's `seq`.
        checkpoint_seq: u64,
    },
    /// The record at the checkpoint's `seq` is not the one checkpointed: the log was rewritten.
    #[error("record seq {seq} differs from the checkpoint (the log was rewritten from there or before)")]
    Rewritten {
        /// The checkpoint's `seq`.
        seq: u64,
    },
    /// The log starts after the oldest record the writer kept: the oldest records were removed.
    #[error(
        "the log starts at seq {first_seq:?} but the checkpoint says records from seq {kept_from} were kept: \
         the oldest records were removed"
    )]
    HeadMissing {
        /// The first `seq` in the files given.
        first_seq: Option<u64>,
        /// The checkpoint's oldest kept `seq`.
        kept_from: u64,
    },
}

impl Checkpoint {
    /// Replaces the file at `path` with this checkpoint: written beside it, then renamed, so a reader
    /// never sees half of one. Created 0600 (it names no one, but it is part of the audit trail).
    pub fn store(&self, path: &Path) -> io::Result<()> {
        let line = serde_json::to_string(self).map_err(io::Error::other)?;
        let name = path.file_name().map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
        let temporary = path.with_file_name(format!(".{name}.tmp"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).write(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        drop(file);
        std::fs::rename(&temporary, path)
    }

    /// Reads a checkpoint file: the file [`Checkpoint::store`] writes, or any text whose last
    /// non-empty line is such a JSON object (a copy kept by a log pipeline, say).
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let unreadable = |problem: String| CheckpointError::Unreadable { path: path.into(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| unreadable("empty".into()))?;
        serde_json::from_str(line).map_err(|e| unreadable(format!("not a checkpoint: {e}")))
    }

    /// Checks a verified chain against this checkpoint. `hash_at_checkpoint` is the hash the chain
    /// holds at [`Checkpoint::seq`] (from [`super::chain::verify_files_pinned`]).
    pub fn check(&self, report: &VerifyReport, hash_at_checkpoint: Option<&str>) -> Result<(), CheckpointError> {
        if report.first_seq.is_none_or(|first| first > self.first_seq) {
            return Err(CheckpointError::HeadMissing { first_seq: report.first_seq, kept_from: self.first_seq });
        }
        if report.last_seq.is_none_or(|last| last < self.seq) {
            return Err(CheckpointError::TailMissing { last_seq: report.last_seq, checkpoint_seq: self.seq });
        }
        if hash_at_checkpoint != Some(self.hash.as_str()) {
            return Err(CheckpointError::Rewritten { seq: self.seq });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::verify_files_pinned;
    use super::super::config::AuditConfig;
    use super::super::record::{AuditEvent, AuditRecord, Outcome};
    use super::super::writer::ChainWriter;
    use super::*;

    /// Writes `n` records through a writer that rotates every ~2 KB and keeps 2 rotated files, with a
    /// checkpoint file; returns the log files (oldest first) and the checkpoint path.
    fn written(dir: &Path, n: usize) -> (Vec<PathBuf>, PathBuf) {
        let log = dir.join("audit.log");
        let checkpoint = dir.join("anchor").join("audit.checkpoint");
        std::fs::create_dir_all(checkpoint.parent().unwrap()).unwrap();
        let config = AuditConfig {
            path: Some(log.clone()),
            rotate_max_bytes: 4096,
            retention_files: 2,
            checkpoint_path: Some(checkpoint.clone()),
            ..AuditConfig::default()
        };
        let mut writer = ChainWriter::open(&config).unwrap();
        for i in 0..n {
            let mut record = AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed);
            record.subject = Some(format!("user-{i}"));
            writer.write(&record).unwrap();
            if i % 7 == 0 {
                writer.flush().unwrap();
            }
        }
        writer.flush().unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("audit.log"))
            .collect();
        files.sort_by_key(|p| super::super::chain::first_seq(p).unwrap());
        (files, checkpoint)
    }

    fn check(files: &[PathBuf], checkpoint: &Path) -> Result<(), CheckpointError> {
        let checkpoint = Checkpoint::load(checkpoint)?;
        let (report, pinned) = verify_files_pinned(files, Some(checkpoint.seq)).expect("the chain itself holds");
        checkpoint.check(&report, pinned.as_deref())
    }

    fn drop_lines(path: &Path, from_start: usize, from_end: usize) {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let kept = &lines[from_start..lines.len() - from_end];
        std::fs::write(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    #[test]
    fn the_checkpoint_follows_rotation_and_an_intact_log_matches_it() {
        let dir = tempfile::tempdir().unwrap();
        let (files, checkpoint_path) = written(dir.path(), 200);
        assert_eq!(files.len(), 3, "the current file and two rotated ones: {files:?}");
        let checkpoint = Checkpoint::load(&checkpoint_path).unwrap();
        assert_eq!(checkpoint.seq, 199);
        let oldest = super::super::chain::first_seq(&files[0]).unwrap().unwrap();
        assert!(oldest > 0, "retention deleted the first files");
        assert_eq!(checkpoint.first_seq, oldest, "the oldest kept record, after pruning");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&checkpoint_path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        check(&files, &checkpoint_path).expect("an intact log matches its checkpoint");
    }

    #[test]
    fn records_cut_off_the_newest_end_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (files, checkpoint) = written(dir.path(), 200);
        drop_lines(files.last().unwrap(), 0, 3);
        assert!(verify_files_pinned(&files, None).is_ok(), "the chain alone cannot tell");
        match check(&files, &checkpoint) {
            Err(CheckpointError::TailMissing { last_seq: Some(196), checkpoint_seq: 199 }) => {}
            other => panic!("expected TailMissing, got {other:?}"),
        }
    }

    #[test]
    fn records_cut_off_the_oldest_end_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (files, checkpoint) = written(dir.path(), 200);
        // The oldest file, and the first lines of the next.
        std::fs::remove_file(&files[0]).unwrap();
        drop_lines(&files[1], 2, 0);
        let rest = &files[1..];
        assert!(verify_files_pinned(rest, None).is_ok(), "the chain alone cannot tell");
        assert!(matches!(check(rest, &checkpoint), Err(CheckpointError::HeadMissing { .. })));
    }

    #[test]
    fn a_rewritten_record_at_the_checkpoint_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (files, checkpoint_path) = written(dir.path(), 50);
        let mut checkpoint = Checkpoint::load(&checkpoint_path).unwrap();
        checkpoint.hash = "0".repeat(64);
        let (report, pinned) = verify_files_pinned(&files, Some(checkpoint.seq)).unwrap();
        assert!(matches!(checkpoint.check(&report, pinned.as_deref()), Err(CheckpointError::Rewritten { seq: 49 })));
    }
}
