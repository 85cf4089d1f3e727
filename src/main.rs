//! `ringway`: parse flags, load and validate the configuration, start the threads, drain on exit.
//!
//! The main thread never serves traffic. It binds every listener socket before starting any
//! worker (so a bad port stops start-up cleanly), then sleeps until SIGTERM, SIGINT or
//! `/quitquitquit`, and drains: `/ready` turns 503, listeners stop accepting, keep-alive
//! responses carry `Connection: close`, and in-flight requests get `--drain-time-s` to finish.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = ringway::cli::Cli::parse();
    match ringway::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
