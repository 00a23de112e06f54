//! `llamagate audit verify <files...>`: replays the audit log's hash chain and names the first
//! modified, missing or reordered record.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use llamagate_authz::audit::verify_files;

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
    },
}

/// Runs the subcommand; a broken chain is an error naming the file and line.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { paths } => {
            let report = verify_files(&paths)?;
            let range = match (report.first_seq, report.last_seq) {
                (Some(first), Some(last)) => format!("seq {first}..={last}"),
                _ => "no records".to_string(),
            };
            let start = if report.from_genesis {
                "from the first record ever written"
            } else {
                "starting after earlier files that were not given (rotated away?)"
            };
            println!("ok: {} records in {} file(s), {range}, {start}", report.records, report.files.len());
            Ok(())
        }
    }
}
