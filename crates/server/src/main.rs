//! `llamagate`: the binary. Everything it does lives in the library (`llamagate_server`); this file
//! only hands the command line to [`llamagate_server::cli::run`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    llamagate_server::cli::run(llamagate_server::cli::Cli::parse())
}
