//! `llamagate audit verify <files...>`: replays the audit log's hash chain and names the first
//! modified, missing or reordered record; with `--checkpoint`, also records cut off either end.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use llamagate_authz::audit::{Checkpoint, verify_files_pinned};

/// `llamagate audit ...`.
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log (pass rotated files too, in any order:
    /// e.g. `audit.log*`). Exits non-zero at the first broken record.
    Verify {
        /// The audit log file(s).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The checkpoint kept outside the log (`audit.checkpoint_path`, or the logged `audit
        /// checkpoint` line saved as JSON): the log must reach its record unchanged and start no later
        /// than the oldest record it says was kept.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log must start at this `seq` or earlier (0: from the first record ever written).
        #[arg(long)]
        expect_from: Option<u64>,
    },
}

/// Runs the subcommand; a broken chain is an error naming the file and line.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { paths, checkpoint, expect_from } => {
            let checkpoint = checkpoint.as_deref().map(Checkpoint::load).transpose()?;
            let (report, pinned) = verify_files_pinned(&paths, checkpoint.as_ref().map(|c| c.seq))?;
            if let Some(checkpoint) = &checkpoint {
                checkpoint.check(&report, pinned.as_deref())?;
            }
            if let Some(expected) = expect_from
                && report.first_seq.is_none_or(|first| first > expected)
            {
                anyhow::bail!("the log starts at seq {:?}, after the expected seq {expected}", report.first_seq);
            }
            let range = match (report.first_seq, report.last_seq) {
                (Some(first), Some(last)) => format!("seq {first}..={last}"),
                _ => "no records".to_string(),
            };
            let start = if report.from_genesis {
                "from the first record ever written"
            } else {
                "starting after earlier files that were not given (rotated away?)"
            };
            let pinned = checkpoint.map_or_else(String::new, |c| format!("; matches the checkpoint at seq {}", c.seq));
            println!("ok: {} records in {} file(s), {range}, {start}{pinned}", report.records, report.files.len());
            Ok(())
        }
    }
}
