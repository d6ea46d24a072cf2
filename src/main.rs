//! The `gatehouse` binary: command line, configuration and wiring. No protocol logic lives here.

mod admin_listener;
mod cli;
mod commands;
mod serve;
mod telemetry;

// The configuration loader lives in the package's library (`src/lib.rs`) so the fuzz targets can reach it;
// `crate::config` paths in the modules above resolve through this import.
use gatehouse::config;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the gateway allocates per request (headers, proofs) from several
/// worker threads, where glibc's malloc showed up as ~12 % of the gateway's CPU in `perf` (bench/gateway.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(commands::run(cli))
}
