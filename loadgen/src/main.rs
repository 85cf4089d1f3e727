//! `ringway-loadgen`: open-loop HTTP/1.1 load generator. This file only wires the pieces:
//! parse and validate the command line, run the workers, print and save the report.

mod cli;
mod conn;
mod h1;
mod report;
mod schedule;
mod workers;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cfg = match cli::Args::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringway-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let summary = match workers::run(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary.to_text());
    if let Some(path) = &cfg.json {
        let text = match serde_json::to_string_pretty(&summary.to_json()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ringway-loadgen: cannot encode JSON: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("ringway-loadgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
