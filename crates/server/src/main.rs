//! `llamagate`: the binary. Everything it does lives in the library (`llamagate_server`); this file
//! only hands the command line to [`llamagate_server::cli::run`].

use clap::Parser;

/// mimalloc for the gate's small per-request allocations, the system allocator for the engine's large
/// buffers: see [`llamagate_server::allocator`].
#[global_allocator]
static ALLOCATOR: llamagate_server::allocator::SplitAllocator = llamagate_server::allocator::SplitAllocator;

fn main() -> anyhow::Result<()> {
    llamagate_server::allocator::fix_large_allocation_threshold();
    llamagate_server::cli::run(llamagate_server::cli::Cli::parse())
}
