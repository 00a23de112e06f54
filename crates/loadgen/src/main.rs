//! `llamagate-load`: parses the command line, runs the scenario, prints and writes the report.
//! Everything else lives in the library (`src/lib.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::Parser;
use llamagate_loadgen::cli::Cli;
use llamagate_loadgen::progress::ProgressLine;
use llamagate_loadgen::{Live, chart, run_scenario, trivial_server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    llamagate_loadgen::install_crypto_provider();
    if let Some(addr) = &cli.self_test_server {
        return trivial_server::serve(addr).await;
    }
    let scenario = cli.scenario()?;
    let live = Arc::new(Live::default());
    // The first Ctrl-C stops sending and still reports what finished; a second one quits at once.
    let stopper = live.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.stop.store(true, Ordering::Relaxed);
            eprintln!("\nstopping: waiting for requests in flight (Ctrl-C again to quit)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let progress = ProgressLine::start(live.clone(), cli.quiet);
    let report = run_scenario(&scenario, live).await;
    drop(progress);
    let report = report?;
    print!("{}", report.render());
    if let Some(path) = &cli.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.chart {
        chart::write_svg(&report, path)?;
    }
    Ok(())
}
