//! `ringway-loadgen`: open-loop HTTP load generator (HTTP/1.1, h2c, HTTPS, h2 over TLS) with an
//! upstream fleet and an endpoint churn driver. This file only dispatches: the load run (default), `upstream` and `demo`.

mod churn;
mod cli;
mod conn;
mod control;
mod demo;
mod h1;
mod h2conn;
mod loop_lag;
mod net;
mod plan;
mod progress;
mod report;
mod run;
mod schedule;
mod svg;
mod timeline;
mod units;
mod upstream;
mod url;
mod workers;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match args.command {
        Some(cli::Command::Upstream(u)) => return serve_upstream(&u),
        Some(cli::Command::Demo(d)) => return demo::main(&d),
        None => {}
    }
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringway-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let summary = match run::execute(&cfg, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = run::output(&summary, cfg.json.as_deref(), cfg.report.as_deref()) {
        eprintln!("ringway-loadgen: {e}");
        return ExitCode::FAILURE;
    }
    if summary.churn_failures() > 0 {
        eprintln!(
            "ringway-loadgen: {} churn actions failed (see above)",
            summary.churn_failures()
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// `upstream`: serve until killed.
fn serve_upstream(u: &cli::UpstreamArgs) -> ExitCode {
    let ports = match cli::parse_ports(&u.ports) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringway-loadgen upstream: {e}");
            return ExitCode::from(2);
        }
    };
    let fleet = match upstream::Fleet::start(&ports, u.response_bytes, u.delay) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringway-loadgen upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "upstream fleet: {} ports ({}), {} byte bodies, delay {:?}",
        ports.len(),
        u.ports,
        u.response_bytes,
        u.delay
    );
    match u.control_port {
        Some(p) => match std::net::TcpListener::bind(("127.0.0.1", p)) {
            Ok(l) => {
                println!("control: http://127.0.0.1:{p} (POST /stop/<port>, POST /start/<port>, GET /status)");
                upstream::serve_control(fleet, l);
            }
            Err(e) => {
                eprintln!("ringway-loadgen upstream: cannot listen on control port {p}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => loop {
            // Nothing else to do: the fleet's threads serve; keep the process (and `fleet`) alive.
            std::thread::park();
            let _ = &fleet;
        },
    }
    ExitCode::SUCCESS
}
