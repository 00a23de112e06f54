//! The single writer: numbers records, seals them into the chain and appends them to the sinks.
//!
//! The file sink rotates by size and by UTC day. A rotated file is renamed to
//! `<name>.<UTC timestamp>` (names sort in time order) and the oldest beyond `retention_files` are
//! deleted. The chain runs on across files; after a restart it resumes from the last line of the
//! newest file, so restarts do not break it either.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::chain::{GENESIS, Link, first_seq, last_link, seal};
use super::checkpoint::Checkpoint;
use super::config::{AuditConfig, AuditSchema};
use super::record::{AuditEvent, AuditRecord, Outcome};

/// A record plus its place in the chain, as serialized (the hash is appended by [`seal`]).
#[derive(Serialize)]
struct Chained<'a, R: Serialize> {
    #[serde(flatten)]
    record: &'a R,
    seq: u64,
    prev_hash: &'a str,
}

/// Appends sealed records to the configured sinks.
pub struct ChainWriter {
    next_seq: u64,
    prev_hash: String,
    file: Option<RotatingFile>,
    stdout: bool,
    schema: AuditSchema,
    /// `seq` of the oldest record kept (the first line of the oldest file), once there is one.
    oldest_kept: Option<u64>,
    checkpoint_path: Option<PathBuf>,
    /// `seq` of the newest record the checkpoint file names.
    checkpointed: Option<u64>,
}

impl ChainWriter {
    /// Opens the sinks and resumes the chain from the newest existing file, if any. A last line cut
    /// short by a crash is set aside first, and a `security_audit_recovered` record says so.
    pub fn open(config: &AuditConfig) -> io::Result<Self> {
        let torn = match config.path.as_deref() {
            Some(path) => set_aside_torn_tail(path)?,
            None => None,
        };
        let file = config.path.as_deref().map(|p| RotatingFile::open(p, config)).transpose()?;
        let resume = match &file {
            Some(f) => f.newest_link()?,
            None => None,
        };
        let (next_seq, prev_hash) = match resume {
            Some(link) => (link.seq + 1, link.hash),
            None => (0, GENESIS.to_string()),
        };
        let oldest_kept = match &file {
            Some(f) => f.oldest_kept_seq()?,
            None => None,
        };
        let mut writer = Self {
            next_seq,
            prev_hash,
            file,
            stdout: config.stdout || config.path.is_none(),
            schema: config.schema,
            oldest_kept,
            checkpoint_path: config.checkpoint_path.clone(),
            checkpointed: None,
        };
        if let Some((aside, bytes)) = torn {
            let mut record = AuditRecord::new(AuditEvent::SecurityAuditRecovered, Outcome::Failed);
            let name = aside.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            record.reason = Some(format!("a torn last record ({bytes} bytes) was set aside in {name}"));
            writer.write(&record)?;
            writer.flush()?;
        }
        Ok(writer)
    }

    /// Seals and writes one record. Buffered: call [`ChainWriter::flush`] when the queue is drained.
    pub fn write(&mut self, record: &AuditRecord) -> io::Result<()> {
        let (seq, prev_hash) = (self.next_seq, self.prev_hash.as_str());
        let body = match self.schema {
            AuditSchema::Llamagate => serde_json::to_string(&Chained { record, seq, prev_hash }),
            AuditSchema::LlamaStack => {
                serde_json::to_string(&Chained { record: &record.llama_stack(), seq, prev_hash })
            }
        }
        .map_err(io::Error::other)?;
        let (line, hash) = seal(&body);
        if let Some(file) = &mut self.file
            && file.append(&line)?
        {
            // Retention deleted the oldest file: the oldest kept record moved on.
            self.oldest_kept = file.oldest_kept_seq()?;
        }
        self.oldest_kept.get_or_insert(seq);
        if self.stdout {
            let mut out = io::stdout().lock();
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        self.next_seq += 1;
        self.prev_hash = hash;
        Ok(())
    }

    /// Pushes buffered lines to the operating system, then replaces the checkpoint file (when one is
    /// configured and records were written since the last one).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.out.flush()?;
        }
        if self.stdout {
            io::stdout().lock().flush()?;
        }
        if let (Some(path), Some(checkpoint)) = (&self.checkpoint_path, self.checkpoint())
            && self.checkpointed != Some(checkpoint.seq)
        {
            checkpoint.store(path)?;
            self.checkpointed = Some(checkpoint.seq);
        }
        Ok(())
    }

    /// Where the chain stands now; `None` before the first record.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let seq = self.next_seq.checked_sub(1)?;
        Some(Checkpoint {
            seq,
            hash: self.prev_hash.clone(),
            first_seq: self.oldest_kept.unwrap_or(seq),
            written_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

struct RotatingFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    day: NaiveDate,
    max_bytes: u64,
    daily: bool,
    keep: usize,
}

/// If the last line of `path` is not a whole sealed record (the process was killed mid-write), moves
/// it into `<name>-torn-<time>` beside the log (0600) and cuts the log back to its last whole record,
/// so the chain can resume. Returns where it went and how many bytes it held.
fn set_aside_torn_tail(path: &Path) -> io::Result<Option<(PathBuf, usize)>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // A record is a few KB at most: the last line lies in the file's last 1 MiB.
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let line_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last_line = &tail[line_start..];
    let whole = last_line.ends_with(b"\n")
        && super::chain::is_sealed(std::str::from_utf8(last_line).unwrap_or("").trim_end_matches('\n'));
    if last_line.is_empty() || whole {
        return Ok(None);
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let name = path.file_name().map_or_else(|| "audit".into(), |n| n.to_string_lossy().into_owned());
    let aside = path.with_file_name(format!("{name}-torn-{stamp}"));
    std::fs::write(&aside, last_line)?;
    #[cfg(unix)]
    std::fs::set_permissions(&aside, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.set_len(start + line_start as u64)?;
    Ok(Some((aside, last_line.len())))
}

/// Opens `path` for appending, created 0600: audit records name who asked for what, so only the
/// server's own user may read them. An existing file keeps its mode (an operator may have chosen one).
fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl RotatingFile {
    fn open(path: &Path, config: &AuditConfig) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            size,
            day: Utc::now().date_naive(),
            max_bytes: config.rotate_max_bytes,
            daily: config.rotate_daily,
            keep: config.retention_files,
        })
    }

    /// The last link in the current file, or in the newest rotated one when the current file is empty.
    fn newest_link(&self) -> io::Result<Option<Link>> {
        if let Some(link) = last_link(&self.path)? {
            return Ok(Some(link));
        }
        match self.rotated()?.last() {
            Some(newest) => last_link(newest),
            None => Ok(None),
        }
    }

    /// Appends one line, rotating first when due; true when rotation deleted old files.
    fn append(&mut self, line: &str) -> io::Result<bool> {
        let today = Utc::now().date_naive();
        let needed = line.len() as u64 + 1;
        let mut pruned = false;
        if self.size > 0 && (self.size + needed > self.max_bytes || (self.daily && today != self.day)) {
            pruned = self.rotate()?;
        }
        self.day = today;
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += needed;
        Ok(pruned)
    }

    /// `seq` of the first record of the oldest file kept; `None` while there are no records.
    fn oldest_kept_seq(&self) -> io::Result<Option<u64>> {
        let invalid = |e: super::chain::VerifyError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        for path in self.rotated()?.iter().chain(std::iter::once(&self.path)) {
            if let Some(seq) = first_seq(path).map_err(invalid)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Renames the current file aside and starts a new one; true when old files were deleted.
    fn rotate(&mut self) -> io::Result<bool> {
        self.out.flush()?;
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let mut target = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{}.{stamp}-{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &target)?;
        let file = open_private(&self.path)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        let rotated = self.rotated()?;
        if rotated.len() <= self.keep {
            return Ok(false);
        }
        for old in &rotated[..rotated.len() - self.keep] {
            std::fs::remove_file(old)?;
        }
        Ok(true)
    }

    /// Rotated siblings (`<name>.<stamp>`), oldest first.
    fn rotated(&self) -> io::Result<Vec<PathBuf>> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else { return Ok(Vec::new()) };
        let prefix = format!("{name}.");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
            .map(|e| e.path())
            .collect();
        found.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::verify_files;
    use super::super::record::{AuditEvent, Outcome};
    use super::*;

    fn config(path: &Path, max_bytes: u64, keep: usize) -> AuditConfig {
        AuditConfig {
            path: Some(path.to_path_buf()),
            rotate_max_bytes: max_bytes,
            retention_files: keep,
            ..AuditConfig::default()
        }
    }

    fn all_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
    }

    /// A process killed mid-write leaves a last line without its end: the next start sets it aside,
    /// says so in a record, and the chain verifies across the repair.
    #[test]
    fn a_torn_last_record_is_set_aside_and_the_chain_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut writer = ChainWriter::open(&config(&path, 1 << 20, 10)).unwrap();
        for _ in 0..3 {
            writer.write(&AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed)).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let torn = br#"{"timestamp":"2026-12-04T17:00:00.000Z","event":"inference_resp"#;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(torn).unwrap();

        let mut writer = ChainWriter::open(&config(&path, 1 << 20, 10)).expect("a torn tail does not stop the start");
        writer.write(&AuditRecord::new(AuditEvent::InferenceResponse, Outcome::Allowed)).unwrap();
        writer.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().nth(3).unwrap().contains("security_audit_recovered"), "{text}");
        let report = verify_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(report.records, 5, "3 + the recovery record + 1");
        let aside: Vec<PathBuf> = all_files(dir.path()).into_iter().filter(|p| p != &path).collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), torn);
    }

    /// The Llama Stack schema writes the design's field names, and the chain verifies the same.
    #[test]
    fn the_llama_stack_schema_keeps_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let config = AuditConfig { schema: AuditSchema::LlamaStack, ..config(&path, 1 << 20, 10) };
        let mut writer = ChainWriter::open(&config).unwrap();
        let mut refused = AuditRecord::new(AuditEvent::SecurityInvalidToken, Outcome::Refused);
        refused.reason = Some("expired".into());
        refused.status = Some(401);
        writer.write(&refused).unwrap();
        let mut allowed = AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed);
        allowed.subject = Some("alice".into());
        allowed.model = Some("m".into());
        writer.write(&allowed).unwrap();
        writer.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["event_type"], "security_invalid_token");
        assert_eq!((lines[0]["severity"].as_str(), lines[0]["success"].as_bool()), (Some("WARNING"), Some(false)));
        assert_eq!(lines[0]["error"], "expired");
        assert_eq!(lines[0]["metadata"]["status"], 401);
        assert_eq!((lines[1]["user_id"].as_str(), lines[1]["model_id"].as_str()), (Some("alice"), Some("m")));
        assert_eq!((lines[1]["severity"].as_str(), lines[1]["success"].as_bool()), (Some("INFO"), Some(true)));
        assert!(lines[1].get("event").is_none() && lines[1].get("subject").is_none());
        let report = verify_files(&[path]).unwrap();
        assert_eq!(report.records, 2);
    }

    #[test]
    fn rotation_keeps_the_chain_and_private_files_and_prunes_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut writer = ChainWriter::open(&config(&path, 4096, 100)).unwrap();
        for _ in 0..100 {
            writer.write(&AuditRecord::new(AuditEvent::InferenceRequest, Outcome::Allowed)).unwrap();
        }
        writer.flush().unwrap();
        let files = all_files(dir.path());
        assert!(files.len() > 2, "expected rotation, got {files:?}");
        for file in &files {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "only the owner reads audit records: {}", file.display());
        }
        let report = verify_files(&files).unwrap();
        assert_eq!(report.records, 100);
        assert!(report.from_genesis);

        // A restart continues the chain; a small retention prunes the oldest files.
        drop(writer);
        let mut writer = ChainWriter::open(&config(&path, 4096, 1)).unwrap();
        for _ in 0..40 {
            writer.write(&AuditRecord::new(AuditEvent::InferenceResponse, Outcome::Allowed)).unwrap();
        }
        writer.flush().unwrap();
        let files = all_files(dir.path());
        assert!(files.len() <= 2, "{files:?}");
        let report = verify_files(&files).unwrap();
        assert_eq!(report.last_seq, Some(139));
        assert!(!report.from_genesis);
    }
}
