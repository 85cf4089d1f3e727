//! The command line, Envoy-style where Envoy has the flag.
//!
//! Every tunable is a flag with a default that suits most hosts; `tuning/README.md` says when to
//! change each. Parsing only checks shapes; `runtime::Plan::from_cli` turns the flags into a
//! validated plan (cores exist, counts are positive) before anything is bound.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Load the configuration and serve traffic.
    Serve,
    /// Load and validate the configuration, print every error (or "configuration OK"), exit.
    Validate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoDriver {
    /// io_uring only; start-up fails if the kernel or sandbox refuses it.
    Uring,
    /// The epoll-based legacy driver.
    Epoll,
    /// io_uring when available, else epoll (said in the log and in /server_info).
    Auto,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringway",
    version,
    about = "Thread-per-core io_uring edge and service proxy that runs Envoy v3 configuration"
)]
pub struct Cli {
    /// Path to an Envoy v3 bootstrap configuration (YAML or JSON).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    pub config_path: Option<PathBuf>,

    /// Inline configuration YAML (use either this or --config-path; Ringway does not merge the two).
    #[arg(long = "config-yaml", value_name = "YAML")]
    pub config_yaml: Option<String>,

    /// serve: run the proxy; validate: check the configuration, print the result, exit 0 or 1.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    pub mode: Mode,

    /// Worker threads, one per core [default: the number of cores this process may use].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// CPUs to pin workers to, e.g. "0-3,6" [default: every CPU this process may use].
    #[arg(long = "cpu-set", value_name = "LIST")]
    pub cpu_set: Option<String>,

    /// Do not pin worker threads to cores.
    #[arg(long = "no-pin")]
    pub no_pin: bool,

    /// I/O driver for the workers.
    #[arg(long = "io-driver", value_enum, default_value_t = IoDriver::Uring)]
    pub io_driver: IoDriver,

    /// io_uring submission queue entries per worker.
    #[arg(long = "ring-entries", value_name = "N", default_value_t = 1024)]
    pub ring_entries: u32,

    /// Log level: trace, debug, info, warning, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT or /quitquitquit.
    #[arg(long = "drain-time-s", value_name = "SECONDS", default_value_t = 600)]
    pub drain_time_s: u64,

    /// Initial read buffer per downstream connection, in bytes (grows up to the header limit).
    #[arg(long = "read-buffer-bytes", value_name = "BYTES", default_value_t = 16 * 1024)]
    pub read_buffer_bytes: usize,

    /// Largest chunk of body moved per read, in bytes.
    #[arg(long = "body-chunk-bytes", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub body_chunk_bytes: usize,

    /// Bytes of request body kept so a request can be retried (Envoy's retry buffer default).
    #[arg(long = "retry-buffer-bytes", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub retry_buffer_bytes: usize,

    /// Idle upstream connections kept per endpoint per worker.
    #[arg(
        long = "max-idle-per-endpoint",
        value_name = "N",
        default_value_t = 256
    )]
    pub max_idle_per_endpoint: usize,

    /// Open downstream connections over all listeners (Envoy's runtime key
    /// overload.global_downstream_max_connections; this flag wins over the config). Split evenly
    /// between workers; a connection over its worker's share is closed at once and counted in
    /// listener.<address>.downstream_global_cx_overflow [default: no limit].
    #[arg(long = "max-connections", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

impl Cli {
    /// (flag, value) pairs for `/server_info`'s `command_line_options`.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "config_path",
                self.config_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("mode", format!("{:?}", self.mode)),
            (
                "concurrency",
                self.concurrency.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("cpu_set", self.cpu_set.clone().unwrap_or_default()),
            ("no_pin", self.no_pin.to_string()),
            ("io_driver", format!("{:?}", self.io_driver).to_lowercase()),
            ("ring_entries", self.ring_entries.to_string()),
            ("log_level", self.log_level.clone()),
            ("drain_time_s", self.drain_time_s.to_string()),
            ("read_buffer_bytes", self.read_buffer_bytes.to_string()),
            ("body_chunk_bytes", self.body_chunk_bytes.to_string()),
            ("retry_buffer_bytes", self.retry_buffer_bytes.to_string()),
            (
                "max_idle_per_endpoint",
                self.max_idle_per_endpoint.to_string(),
            ),
            (
                "max_connections",
                self.max_connections
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// CPU ids this many and above cannot be named: glibc's `cpu_set_t` (what `sched_setaffinity`,
/// and so core pinning, takes) has 1024 bits. Checking ids against it before a range is expanded
/// keeps a typo like `0-18446744073709551615` from allocating the range.
pub const CPU_ID_LIMIT: usize = 1024;

/// Parses a CPU list such as "0-3,6". Every id must be below `CPU_ID_LIMIT`; whether the CPUs
/// exist and this process may use them is `runtime::Plan`'s check.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cpu-set: '{part}' is not a CPU number or range like 2-5");
        let id = |text: &str| -> Result<usize, String> {
            let id: usize = text.trim().parse().map_err(|_| bad())?;
            if id >= CPU_ID_LIMIT {
                return Err(format!(
                    "--cpu-set: CPU {id} in '{part}' is out of range (CPU ids are below {CPU_ID_LIMIT})"
                ));
            }
            Ok(id)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (id(a)?, id(b)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(id(part)?),
        }
    }
    if out.is_empty() {
        return Err("--cpu-set: empty CPU list".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("3,1,1").unwrap(), vec![1, 3]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn cpu_ids_past_the_limit_are_refused_before_expanding() {
        let e = parse_cpu_list("0-18446744073709551615").unwrap_err();
        assert!(
            e.contains("CPU 18446744073709551615 in '0-18446744073709551615' is out of range"),
            "{e}"
        );
        let e = parse_cpu_list("1024").unwrap_err();
        assert!(e.contains("CPU 1024 in '1024' is out of range"), "{e}");
        assert!(parse_cpu_list("0-18446744073709551616").is_err());
        assert_eq!(parse_cpu_list("1023").unwrap(), vec![1023]);
        assert_eq!(parse_cpu_list("0-1023").unwrap().len(), 1024);
    }
}
