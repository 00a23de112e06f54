//! `llamagate`: the binary. Everything it does lives in the library (`llamagate_server`); this file
//! only hands the command line to [`llamagate_server::cli::run`].

use clap::Parser;

/// mimalloc rather than glibc's malloc: the gate's per-request allocations (headers, audit records, JSON)
/// spent about 15 % of a saturated core in glibc's allocator (`benches/RESULTS.md`, the gate under wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    llamagate_server::cli::run(llamagate_server::cli::Cli::parse())
}
