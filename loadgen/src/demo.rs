//! `ringway-loadgen demo`: the whole churn story on one machine in about a minute. Starts the
//! upstream fleet in process (ephemeral ports), starts Ringway on a generated Envoy config (one
//! listener, STATIC cluster `fleet` over the fleet, admin API, all on free ports), drives
//! open-loop load with graceful churn through Ringway's admin membership API, prints the
//! table and writes the JSON and SVG reports.
//!
//! Ringway is `$RINGWAY_BIN`, else `ringway` next to this binary (both land in
//! `target/release/`). Churn actions that fail (for example an admin API that does not
//! support membership changes) are printed as they happen, summarised in a banner, and make
//! the demo exit with status 3: a churn demo whose churn did not happen must not look green.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Args, DemoArgs};
use crate::control::Endpoint;
use crate::run;
use crate::upstream::Fleet;

/// Cluster name in the generated config (and in the admin API paths).
pub const CLUSTER: &str = "fleet";
/// How long Ringway may take to answer /ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Ringway binary: `$RINGWAY_BIN`, else next to this executable.
pub fn ringway_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RINGWAY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let p = me.with_file_name("ringway");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no Ringway binary at {} (build it with `cargo build --release`, or set RINGWAY_BIN)",
            p.display()
        ))
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Envoy v3 config: one listener routing everything to STATIC cluster `fleet`, and the admin.
pub fn envoy_config(listen: u16, admin: u16, endpoints: &[u16]) -> String {
    let mut y = format!(
        "static_resources:
  listeners:
  - name: demo
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: demo
          route_config:
            name: demo
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{ prefix: \"/\" }}
                route: {{ cluster: {CLUSTER} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: {CLUSTER}
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: {CLUSTER}
      endpoints:
      - lb_endpoints:
"
    );
    for p in endpoints {
        y.push_str(&format!(
            "        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {p} }}\n"
        ));
    }
    y.push_str(&format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}\n"
    ));
    y
}

/// The Ringway child; killed (by its own pid) on drop.
struct Proxy {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn start_ringway(dir: &std::path::Path, yaml: &str, admin: u16) -> Result<Proxy, String> {
    let bin = ringway_binary()?;
    let cfg = dir.join("ringway.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let stderr = dir.join("ringway.stderr");
    let err_file =
        std::fs::File::create(&stderr).map_err(|e| format!("cannot create log file: {e}"))?;
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "-l", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut proxy = Proxy { child, stderr };
    let admin_ep = Endpoint::from_addr(([127, 0, 0, 1], admin).into());
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            return Err(format!(
                "ringway exited during start-up ({status}):\n{}",
                proxy.stderr_tail()
            ));
        }
        if let Ok((200, _)) = admin_ep.call("GET", "/ready", None) {
            return Ok(proxy);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ringway not ready within {READY_TIMEOUT:?}:\n{}",
                proxy.stderr_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the demo; exit status 3 when churn actions failed.
pub fn main(d: &DemoArgs) -> ExitCode {
    match demo(d) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringway-loadgen demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(d: &DemoArgs) -> Result<ExitCode, String> {
    if d.endpoints < 2 {
        return Err("--endpoints must be at least 2".into());
    }
    let fleet = Fleet::start(&vec![0; d.endpoints], 64, Duration::ZERO)?;
    let ports = fleet.ports();
    let (listen, admin) = (free_port()?, free_port()?);
    let dir = std::env::temp_dir().join(format!("ringway-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let proxy = start_ringway(&dir, &envoy_config(listen, admin, &ports), admin)?;
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let argv: Vec<String> = [
        "ringway-loadgen",
        "--rate",
        &d.rate.to_string(),
        "--duration",
        &format!("{}ms", d.duration.as_millis()),
        "--warmup",
        "1s",
        "--connections",
        "32",
        "--timeout",
        "5s",
        "--churn-every",
        &format!("{}ms", d.churn_every.as_millis()),
        "--churn-mode",
        "graceful",
        "--churn-ports",
        &port_list.join(","),
        "--admin",
        &format!("http://127.0.0.1:{admin}"),
        "--churn-cluster",
        CLUSTER,
        &format!("http://127.0.0.1:{listen}/"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = Args::try_parse_from(&argv)
        .map_err(|e| e.to_string())?
        .into_config()?;
    println!(
        "demo: {} endpoints {:?}, Ringway {} on :{listen} (admin :{admin}), {} req/s for {:?}, graceful churn every {:?}",
        ports.len(),
        ports,
        ringway_binary()?.display(),
        d.rate,
        d.duration,
        d.churn_every
    );
    let summary = run::execute(&cfg, Some(Box::new(fleet.clone())));
    let tail = proxy.stderr_tail();
    drop(proxy);
    fleet.shutdown();
    let summary = summary?;
    run::output(&summary, d.json.as_deref(), d.report.as_deref())?;
    let failed = summary.churn_failures();
    if failed > 0 {
        let first = summary
            .churn
            .iter()
            .find(|e| !e.ok)
            .map(|e| format!("{} {}: {}", e.action.as_str(), e.endpoint, e.detail))
            .unwrap_or_default();
        eprintln!(
            "\n==================================================================\n\
             DEMO CHURN FAILED: {failed} of {} churn actions failed.\n\
             First failure: {first}\n\
             Does this Ringway build have the admin membership API\n\
             (POST /clusters/{CLUSTER}/endpoints)? Without it the endpoints were stopped\n\
             without being removed first, so this run is NOT a graceful-churn result.\n\
             ==================================================================",
            summary.churn.len()
        );
        if !tail.is_empty() {
            eprintln!("ringway stderr (last lines):\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(ExitCode::from(3));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_lists_every_endpoint_and_the_admin() {
        let y = envoy_config(8080, 8001, &[9101, 9102, 9103]);
        assert_eq!(y.matches("- endpoint:").count(), 3);
        assert!(y.contains("port_value: 9103 }"));
        assert!(y.contains(
            "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 8001 }"
        ));
        assert!(y.contains("route: { cluster: fleet }"));
        // Indentation is spaces only (YAML forbids tabs).
        assert!(!y.contains('\t'));
    }
}
