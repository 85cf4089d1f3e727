//! Endpoint churn under open-loop load, end to end: the `ringway-loadgen` fleet behind a real
//! Ringway, and the load generator's churn driver taking endpoints away and bringing them back
//! while it measures. Graceful churn (remove through the admin membership API, drain, stop)
//! must lose no request at all; abrupt churn (endpoints die unannounced) must be hidden by
//! retries, active health checks and outlier detection to below 0.1% failures.
//!
//! Each test prints its steady-state and churn-phase percentiles, so a run's output doubles as
//! a measurement (`cargo test --test churn -- --nocapture`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use serde_json::Value;
use support::fleet::{describe, run_load, FleetProc};
use support::{free_port, ConfigBuilder, Ringway, Route, TempDir};

/// Endpoints in the fleet; the churn driver keeps at least half of them up.
const ENDPOINTS: usize = 6;
/// Offered load, requests per second (open loop, evenly spaced).
const RATE: &str = "1000";
/// Measured window; churn starts one period into it.
const DURATION: &str = "20s";

fn start_fleet() -> FleetProc {
    let ports: Vec<u16> = (0..ENDPOINTS).map(|_| free_port()).collect();
    FleetProc::start(&ports, free_port())
}

/// Load arguments common to both tests: open loop at RATE for DURATION through Ringway.
fn load_args(rw: &Ringway, fleet: &FleetProc, every: &str, mode: &str) -> Vec<String> {
    [
        "--rate",
        RATE,
        "--duration",
        DURATION,
        "--warmup",
        "1s",
        "--connections",
        "32",
        "--timeout",
        "5s",
        "--churn-every",
        every,
        "--churn-mode",
        mode,
        "--churn-ports",
        &fleet.port_list(),
        "--fleet-control",
        &fleet.control_url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()
    .into_iter()
    .chain(std::iter::once(rw.url("/")))
    .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a count, got {v}"))
}

/// The steady vs churn split of a report, one line per phase.
fn phase_summary(j: &Value) -> String {
    let mut s = String::new();
    for name in ["steady", "churn"] {
        let p = &j["phases"][name];
        s.push_str(&format!(
            "  {name:<6}: {:>6} completed, {:>3} errors, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms\n",
            p["completed"], p["errors"], p["p50_ms"].as_f64().unwrap_or(f64::NAN),
            p["p99_ms"].as_f64().unwrap_or(f64::NAN), p["p99_9_ms"].as_f64().unwrap_or(f64::NAN),
            p["max_ms"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    s
}

/// Churn actions that were recorded, and the first failed one (if any) with its error.
fn churn_actions(j: &Value) -> (u64, u64, Option<String>) {
    let events = j["churn"]["events"].as_array().cloned().unwrap_or_default();
    let first_failed = events
        .iter()
        .find(|e| e["ok"] != true)
        .map(|e| format!("{} {}: {}", e["action"], e["endpoint"], e["detail"]));
    (
        u(&j["churn"]["actions"]),
        u(&j["churn"]["failed_actions"]),
        first_failed,
    )
}

#[test]
fn graceful_churn_every_second_loses_no_request() {
    let fleet = start_fleet();
    let cfg = ConfigBuilder::new()
        .cluster("fleet", &fleet.ports)
        .route(Route::prefix("/", "fleet"));
    let rw = Ringway::start(&cfg.render());
    let dir = TempDir::new("churn-graceful");
    let mut args = load_args(&rw, &fleet, "1s", "graceful");
    args.splice(
        0..0,
        [
            "--admin".to_string(),
            rw.admin_url(""),
            "--churn-cluster".into(),
            "fleet".into(),
            "--churn-drain".into(),
            "300ms".into(),
        ],
    );
    let (out, j) = run_load(dir.path(), &args);
    let all = || format!("{}\n{}", describe(&out), rw.diagnostics());

    let (actions, failed, first_failed) = churn_actions(&j);
    println!(
        "graceful churn, {ENDPOINTS} endpoints every 1s at {RATE} req/s for {DURATION}: \
         {actions} churn actions ({failed} failed), {} sent, {} completed, {} failed requests\n{}",
        j["sent"],
        j["completed"],
        j["errors"]["total"],
        phase_summary(&j)
    );
    // The churn must have happened, or zero failures would prove nothing.
    assert_eq!(
        failed,
        0,
        "churn actions failed: {first_failed:?}\n{}",
        all()
    );
    assert!(actions > 10, "only {actions} churn actions\n{}", all());
    let removes = j["churn"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "remove")
        .count();
    assert!(removes >= 10, "only {removes} removals\n{}", all());

    // Zero failed requests of any kind, and every request sent was answered.
    assert_eq!(u(&j["errors"]["total"]), 0, "{}\n{}", j["errors"], all());
    for kind in [
        "connect",
        "reset",
        "timeout",
        "protocol",
        "status_4xx",
        "status_5xx",
    ] {
        assert_eq!(
            u(&j["errors"][kind]),
            0,
            "{kind}: {}\n{}",
            j["errors"],
            all()
        );
    }
    let (sent, completed) = (u(&j["sent"]), u(&j["completed"]));
    assert_eq!(
        completed,
        sent,
        "requests sent but not completed\n{}",
        all()
    );
    assert_eq!(u(&j["unsent"]), 0, "the generator fell behind\n{}", all());
    // Open loop at 1000/s for 20 s: the whole schedule ran (allowing for the edges).
    assert!(completed >= 19_000, "only {completed} completed\n{}", all());
    assert!(u(&j["phases"]["churn"]["completed"]) > 0, "{}", all());
    assert!(fleet.all_up(), "the fleet was not restored\n{}", all());
    // Ringway saw every change and ends with all six members.
    rw.wait_stat("cluster.fleet.membership_total", ENDPOINTS as u64);
    assert!(rw.stat("cluster.fleet.membership_change") >= removes as u64 * 2);
}

/// HTTP health check every 200 ms: 2 failures mark an endpoint down, 1 success brings it back.
const HEALTH_CHECKS: &str = "health_checks:
- timeout: 0.2s
  interval: 0.2s
  interval_jitter: 0.01s
  unhealthy_threshold: 2
  healthy_threshold: 1
  http_health_check:
    path: /healthz
";

/// Eject after 3 consecutive 5xx (connect failures and resets count), for about a second.
const OUTLIER_DETECTION: &str = "outlier_detection:
  consecutive_5xx: 3
  interval: 0.2s
  base_ejection_time: 1s
  max_ejection_time: 2s
  max_ejection_percent: 50
  enforcing_consecutive_5xx: 100
";

/// Retries wait out a jittered back-off (25 ms and up) and count against `max_retries` meanwhile;
/// Envoy's default of 3 outstanding retries is too few when an endpoint dies under 1000 req/s with
/// many requests in flight on it, so this cluster allows more, as an operator relying on retries
/// would configure.
const CIRCUIT_BREAKERS: &str = "circuit_breakers:
  thresholds:
  - max_retries: 64
";

#[test]
fn abrupt_churn_is_hidden_by_retries_health_checks_and_outlier_detection() {
    let fleet = start_fleet();
    let cfg = ConfigBuilder::new()
        .cluster("fleet", &fleet.ports)
        .cluster_extra(
            "fleet",
            &format!("{HEALTH_CHECKS}{OUTLIER_DETECTION}{CIRCUIT_BREAKERS}"),
        )
        .route(Route::prefix("/", "fleet").retry("connect-failure,reset,5xx", 3, None));
    let rw = Ringway::start(&cfg.render());
    let dir = TempDir::new("churn-abrupt");
    let args = load_args(&rw, &fleet, "2s", "abrupt");
    let (out, j) = run_load(dir.path(), &args);
    let all = || format!("{}\n{}", describe(&out), rw.diagnostics());

    let (actions, failed, first_failed) = churn_actions(&j);
    let (sent, completed) = (u(&j["sent"]), u(&j["completed"]));
    let errors = u(&j["errors"]["total"]);
    println!(
        "abrupt churn, {ENDPOINTS} endpoints every 2s at {RATE} req/s for {DURATION}: \
         {actions} churn actions ({failed} failed), {sent} sent, {completed} completed, \
         FAILED REQUESTS: {errors} ({:.4}%) {}\n{}",
        100.0 * errors as f64 / sent.max(1) as f64,
        j["errors"],
        phase_summary(&j)
    );
    assert_eq!(
        failed,
        0,
        "churn actions failed: {first_failed:?}\n{}",
        all()
    );
    let stops = j["churn"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "stop")
        .count();
    assert!(stops >= 5, "only {stops} endpoints were killed\n{}", all());
    assert!(completed >= 19_000, "only {completed} completed\n{}", all());
    // Below 0.1%: errors * 1000 < sent.
    assert!(
        errors * 1000 < sent,
        "{errors} of {sent} requests failed (limit 0.1%): {}\n{}",
        j["errors"],
        all()
    );
    // How the proxy hid the deaths.
    let stat = |n: &str| rw.stat(&format!("cluster.fleet.{n}"));
    let (retries, hc_failures) = (stat("upstream_rq_retry"), stat("health_check.failure"));
    println!(
        "  proxy: {retries} retries ({} succeeded), {} connect failures, {hc_failures} failed health checks, {} outlier ejections",
        stat("upstream_rq_retry_success"),
        stat("upstream_cx_connect_fail"),
        stat("outlier_detection.ejections_enforced_total"),
    );
    // The deaths were noticed and retried around, not just dodged by luck.
    assert!(hc_failures > 0, "no failed health check\n{}", all());
    assert!(retries > 0, "no request was retried\n{}", all());
    // Retries are what hid the deaths, so some succeeded, and the proxy must count them.
    assert!(
        stat("upstream_rq_retry_success") > 0,
        "retries hid every failure but upstream_rq_retry_success is 0\n{}",
        all()
    );
    assert!(fleet.all_up(), "the fleet was not restored\n{}", all());
}
