//! The hash chain that makes the audit log tamper-evident, and its verifier.
//!
//! Each line is the record's JSON (with `seq` and `prev_hash`, the previous line's hash) followed by
//! `"hash"`, the SHA-256 of exactly the bytes before it (the line as it would read without the
//! `hash` member). Hashing the written bytes rather than a re-serialization means the verifier
//! needs no canonical JSON form: any edited byte changes the hash of its own line, and a deleted,
//! inserted or reordered line breaks the `prev_hash`/`seq` link of the line after it. The chain
//! continues across rotated files; the first record ever written links to [`GENESIS`].
//!
//! This is evidence of tampering, not prevention: someone who can rewrite the whole file can
//! recompute every hash after their edit. Shipping lines off the machine as they are written
//! (the stdout sink) is what pins the chain.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_KEY: &str = ",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// Where a sealed line sits in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Position in the whole log, from 0.
    pub seq: u64,
    /// Hash of this line.
    pub hash: String,
}

/// Seals `body`, a JSON object that already holds `seq` and `prev_hash`, into one line (without the
/// newline) ending with its own hash.
pub fn seal(body: &str) -> (String, String) {
    let hash = hex_sha256(body.as_bytes());
    let open = body.strip_suffix('}').unwrap_or(body);
    (format!("{open}{HASH_KEY}{hash}\"}}"), hash)
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a log does not verify. Line numbers count from 1.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The line is not a sealed record at all (truncated, or not written by llamagate).
    #[error("{path}:{line}: not a sealed audit record ({problem})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The line's content does not match its hash: it was edited.
    #[error("{path}:{line}: record seq {seq} was modified (its hash does not match its content)")]
    Modified {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The record's `seq` as it now reads.
        seq: u64,
    },
    /// The line does not follow the one before it: records before it are missing or out of order.
    #[error(
        "{path}:{line}: chain broken: expected record seq {expected_seq} linked to the previous record, \
         found seq {found_seq} (a record was deleted, inserted or moved)"
    )]
    Broken {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The `seq` that should have come next.
        expected_seq: u64,
        /// The `seq` found.
        found_seq: u64,
    },
}

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// `seq` of the first record checked.
    pub first_seq: Option<u64>,
    /// `seq` of the last record checked.
    pub last_seq: Option<u64>,
    /// True when the first record is the first ever written (linked to [`GENESIS`]); false when the
    /// files given start later (older files rotated away), so the first record is taken on trust.
    pub from_genesis: bool,
    /// The files in chain order.
    pub files: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev_hash: String,
}

/// Checks one line's own hash and returns its link fields.
fn open_line(path: &Path, line_no: usize, line: &str) -> Result<(ChainFields, String), VerifyError> {
    let malformed =
        |problem: &str| VerifyError::Malformed { path: path.into(), line: line_no, problem: problem.into() };
    if line.len() < SUFFIX_LEN + 2 || !line.ends_with("\"}") {
        return Err(malformed("no trailing hash"));
    }
    let split = line.len() - SUFFIX_LEN;
    let (open, suffix) = line.split_at(split);
    let Some(hash) = suffix.strip_prefix(HASH_KEY).and_then(|s| s.strip_suffix("\"}")) else {
        return Err(malformed("no trailing hash"));
    };
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("hash is not hex"));
    }
    let body = format!("{open}}}");
    let fields: ChainFields = serde_json::from_str(&body).map_err(|_| malformed("no seq/prev_hash"))?;
    if hex_sha256(body.as_bytes()) != hash {
        return Err(VerifyError::Modified { path: path.into(), line: line_no, seq: fields.seq });
    }
    Ok((fields, hash.to_string()))
}

/// The `seq` of a file's first record, used to put files in chain order; `None` for an empty file.
pub fn first_seq(path: &Path) -> Result<Option<u64>, VerifyError> {
    let io = |source| VerifyError::Io { path: path.into(), source };
    let file = File::open(path).map_err(io)?;
    let Some(line) = BufReader::new(file).lines().next() else { return Ok(None) };
    let line = line.map_err(io)?;
    Ok(Some(open_line(path, 1, &line)?.0.seq))
}

/// Verifies the chain through `paths` (any order: files are sorted by their first record) and reports
/// the first modified, missing or out-of-order record.
pub fn verify_files(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    verify_files_pinned(paths, None).map(|(report, _)| report)
}

/// [`verify_files`], also returning the hash of the record at `pin` when the chain holds it (what a
/// [`super::checkpoint::Checkpoint`] is compared with).
pub fn verify_files_pinned(paths: &[PathBuf], pin: Option<u64>) -> Result<(VerifyReport, Option<String>), VerifyError> {
    let mut pinned = None;
    let mut ordered = Vec::new();
    for path in paths {
        if let Some(seq) = first_seq(path)? {
            ordered.push((seq, path.clone()));
        }
    }
    ordered.sort();
    let mut report = VerifyReport {
        records: 0,
        first_seq: None,
        last_seq: None,
        from_genesis: false,
        files: ordered.iter().map(|(_, p)| p.clone()).collect(),
    };
    let mut previous: Option<Link> = None;
    for (_, path) in &ordered {
        let io = |source| VerifyError::Io { path: path.clone(), source };
        let reader = BufReader::new(File::open(path).map_err(io)?);
        for (index, line) in reader.lines().enumerate() {
            let line_no = index + 1;
            let line = line.map_err(io)?;
            let (fields, hash) = open_line(path, line_no, &line)?;
            match &previous {
                None => report.from_genesis = fields.seq == 0 && fields.prev_hash == GENESIS,
                Some(prev) => {
                    if fields.prev_hash != prev.hash || fields.seq != prev.seq + 1 {
                        return Err(VerifyError::Broken {
                            path: path.clone(),
                            line: line_no,
                            expected_seq: prev.seq + 1,
                            found_seq: fields.seq,
                        });
                    }
                }
            }
            report.first_seq.get_or_insert(fields.seq);
            report.last_seq = Some(fields.seq);
            report.records += 1;
            if pin == Some(fields.seq) {
                pinned = Some(hash.clone());
            }
            previous = Some(Link { seq: fields.seq, hash });
        }
    }
    Ok((report, pinned))
}

/// Whether `line` is a sealed record whose own hash checks out (its place in the chain aside).
pub fn is_sealed(line: &str) -> bool {
    open_line(Path::new(""), 0, line).is_ok()
}

/// Reads the link of the last line of `path`, to continue the chain after a restart.
pub fn last_link(path: &Path) -> std::io::Result<Option<Link>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut last = None;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if !line.is_empty() {
            last = Some(line);
        }
    }
    let Some(line) = last else { return Ok(None) };
    let (fields, hash) =
        open_line(path, 0, &line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(Some(Link { seq: fields.seq, hash }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write_chain(path: &Path, start: u64, prev: &str, n: u64) -> String {
        let mut file = File::create(path).unwrap();
        let mut prev = prev.to_string();
        for seq in start..start + n {
            let body = format!("{{\"event\":\"inference_request\",\"seq\":{seq},\"prev_hash\":\"{prev}\"}}");
            let (line, hash) = seal(&body);
            writeln!(file, "{line}").unwrap();
            prev = hash;
        }
        prev
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    #[test]
    fn an_intact_chain_verifies_across_files_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("audit.log.1"), dir.path().join("audit.log"));
        let tail = write_chain(&a, 0, GENESIS, 5);
        write_chain(&b, 5, &tail, 3);
        let report = verify_files(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(report.records, 8);
        assert_eq!((report.first_seq, report.last_seq), (Some(0), Some(7)));
        assert!(report.from_genesis);
        assert_eq!(report.files, vec![a, b.clone()]);
        assert_eq!(last_link(&b).unwrap().unwrap().seq, 7);
    }

    #[test]
    fn an_edited_line_fails_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_chain(&path, 0, GENESIS, 6);
        let mut l = lines(&path);
        l[3] = l[3].replace("inference_request", "inference_respons_");
        rewrite(&path, &l);
        match verify_files(std::slice::from_ref(&path)).unwrap_err() {
            VerifyError::Modified { line, seq, .. } => assert_eq!((line, seq), (4, 3)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_deleted_or_reordered_line_breaks_the_chain_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_chain(&path, 0, GENESIS, 6);
        let original = lines(&path);

        let mut deleted = original.clone();
        deleted.remove(2);
        rewrite(&path, &deleted);
        match verify_files(std::slice::from_ref(&path)).unwrap_err() {
            VerifyError::Broken { line, expected_seq, found_seq, .. } => {
                assert_eq!((line, expected_seq, found_seq), (3, 2, 3))
            }
            other => panic!("{other}"),
        }

        let mut swapped = original.clone();
        swapped.swap(1, 4);
        rewrite(&path, &swapped);
        match verify_files(std::slice::from_ref(&path)).unwrap_err() {
            VerifyError::Broken { line, .. } => assert_eq!(line, 2),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_truncated_line_is_malformed_and_a_late_start_is_not_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_chain(&path, 10, &"a".repeat(64), 2);
        let report = verify_files(std::slice::from_ref(&path)).unwrap();
        assert!(!report.from_genesis);
        let mut l = lines(&path);
        l[1].truncate(40);
        rewrite(&path, &l);
        assert!(matches!(verify_files(&[path]).unwrap_err(), VerifyError::Malformed { line: 2, .. }));
    }
}
