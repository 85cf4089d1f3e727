//! Active health checks and outlier detection against the real binary: a dead endpoint is marked
//! `/failed_active_hc` and gets no traffic, a revived one comes back, an endpoint that answers 503
//! is ejected by outlier detection, and retries hide an endpoint's death from clients.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::*;

const HC_PATH: &str = "/healthz";

/// HTTP health check every 200 ms; 2 failures mark an endpoint down, 2 successes bring it back.
fn health_checks() -> String {
    format!(
        "health_checks:\n- timeout: 0.5s\n  interval: 0.2s\n  interval_jitter: 0.01s\n  no_traffic_interval: 5s\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n  http_health_check:\n    path: {HC_PATH}\n    expected_statuses: [{{start: 200, end: 300}}]\n"
    )
}

/// `cluster::ADDR::FIELD::VALUE` lines of `/clusters` for one endpoint.
fn endpoint_field(rw: &Ringway, cluster: &str, port: u16, field: &str) -> String {
    let (code, body) = rw.admin_get("/clusters");
    assert_eq!(code, 200, "{body}");
    let prefix = format!("{cluster}::127.0.0.1:{port}::{field}::");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in /clusters:\n{body}"))
        .to_string()
}

/// Waits until the endpoint's `health_flags` equal `want` (or, for a `/flag` want, include it).
fn wait_flags(rw: &Ringway, cluster: &str, port: u16, want: &str, within: Duration) {
    let seen = wait_until(within, || {
        let f = endpoint_field(rw, cluster, port, "health_flags");
        let hit = f == want || (want.starts_with('/') && f.contains(want));
        hit.then_some(f)
    });
    assert!(
        seen.is_some(),
        "{cluster} endpoint {port}: health_flags stayed {:?}, expected {want:?} within {within:?}\n{}",
        endpoint_field(rw, cluster, port, "health_flags"),
        rw.diagnostics()
    );
}

#[test]
fn dead_endpoint_fails_active_checks_and_gets_no_traffic_then_recovers() {
    let a = TestUpstream::start_with_id("a");
    let b = TestUpstream::start_with_id("b");
    let c = TestUpstream::start_with_id("c");
    let dead_port = c.port;
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[a.port, b.port, c.port])
        .cluster_extra("backend", &health_checks())
        .route(Route::prefix("/", "backend"));
    let rw = Ringway::start(&cfg.render());

    // Checks run and pass; all three endpoints serve.
    let passed = wait_until(Duration::from_secs(5), || {
        (rw.stat("cluster.backend.health_check.success") >= 3).then_some(())
    });
    assert!(
        passed.is_some(),
        "no passing health checks\n{}",
        rw.diagnostics()
    );
    assert!(c.log().iter().any(|r| r.path == HC_PATH
        && r.header("host") == Some("backend")
        && r.header("user-agent") == Some("Envoy/HC")));
    assert_eq!(rw.stat("cluster.backend.membership_healthy"), 3);
    for _ in 0..9 {
        assert_eq!(http_get(rw.listen_port, "/x").status, 200);
    }
    assert!(c.requests_except(HC_PATH) > 0);

    // Kill c: within about a second it is marked failed and out of rotation.
    drop(c);
    wait_flags(
        &rw,
        "backend",
        dead_port,
        "/failed_active_hc",
        Duration::from_secs(3),
    );
    assert_eq!(rw.stat("cluster.backend.membership_healthy"), 2);
    assert!(rw.stat("cluster.backend.health_check.failure") >= 2);
    let before = endpoint_field(&rw, "backend", dead_port, "rq_total");
    let (a0, b0) = (a.requests_except(HC_PATH), b.requests_except(HC_PATH));
    for i in 0..30 {
        let r = http_get(rw.listen_port, "/after-kill");
        assert_eq!(
            r.status, 200,
            "request {i} after the endpoint was marked down: {r:?}"
        );
    }
    assert_eq!(
        endpoint_field(&rw, "backend", dead_port, "rq_total"),
        before,
        "the failed endpoint was still picked"
    );
    let served = a.requests_except(HC_PATH) - a0 + b.requests_except(HC_PATH) - b0;
    assert_eq!(served, 30);

    // Revive it on the same port: healthy again after healthy_threshold passing checks.
    let revived = TestUpstream::start_on(dead_port);
    wait_flags(&rw, "backend", dead_port, "healthy", Duration::from_secs(3));
    assert_eq!(rw.stat("cluster.backend.membership_healthy"), 3);
    for _ in 0..12 {
        assert_eq!(http_get(rw.listen_port, "/revived").status, 200);
    }
    assert!(
        revived.requests_except(HC_PATH) > 0,
        "the revived endpoint got no traffic"
    );
}

#[test]
fn below_half_healthy_the_cluster_panics_and_uses_every_endpoint() {
    let a = TestUpstream::start_with_id("a");
    let b = TestUpstream::start_with_id("b");
    let c = TestUpstream::start_with_id("c");
    let (pb, pc) = (b.port, c.port);
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[a.port, pb, pc])
        .cluster_extra("backend", &health_checks())
        .route(Route::prefix("/", "backend"));
    let rw = Ringway::start(&cfg.render());
    // Two of three die: 1 of 3 healthy is below Envoy's 50% panic threshold, so the balancer
    // ignores health and some requests go to the dead endpoints (no retries here, so they fail).
    drop(b);
    drop(c);
    wait_flags(
        &rw,
        "backend",
        pb,
        "/failed_active_hc",
        Duration::from_secs(3),
    );
    wait_flags(
        &rw,
        "backend",
        pc,
        "/failed_active_hc",
        Duration::from_secs(3),
    );
    assert_eq!(rw.stat("cluster.backend.membership_healthy"), 1);
    let a0 = a.requests_except(HC_PATH);
    let mut failed = 0;
    for _ in 0..12 {
        if http_get(rw.listen_port, "/panic").status != 200 {
            failed += 1;
        }
    }
    assert!(
        failed > 0,
        "panic mode should balance over the dead endpoints too"
    );
    assert!(
        a.requests_except(HC_PATH) > a0,
        "the healthy endpoint got nothing"
    );
}

#[test]
fn endpoint_answering_503_is_ejected_for_base_ejection_time() {
    let good1 = TestUpstream::start_with_id("g1");
    let good2 = TestUpstream::start_with_id("g2");
    let bad = TestUpstream::start_with_id("bad");
    bad.fail_always();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[good1.port, bad.port, good2.port])
        .cluster_extra(
            "backend",
            "outlier_detection:\n  consecutive_5xx: 3\n  consecutive_gateway_failure: 5\n  interval: 0.2s\n  base_ejection_time: 60s\n  max_ejection_percent: 10\n  enforcing_consecutive_5xx: 100\n",
        )
        .route(Route::prefix("/", "backend").retry("5xx", 2, None));
    // One worker: the ejection decision is per worker, so this makes it deterministic.
    let rw = Ringway::start_with_args(&cfg.render(), &["--concurrency", "1"]);
    for i in 0..60 {
        let r = http_get(rw.listen_port, "/req");
        assert_eq!(
            r.status, 200,
            "request {i}: retry should hide the 503s: {r:?}"
        );
    }
    assert_eq!(
        bad.requests(),
        3,
        "the bad endpoint should get exactly consecutive_5xx requests before its ejection"
    );
    assert_eq!(
        rw.stat("cluster.backend.outlier_detection.ejections_enforced_total"),
        1
    );
    wait_flags(
        &rw,
        "backend",
        bad.port,
        "/failed_outlier_check",
        Duration::from_secs(3),
    );
    assert_eq!(
        rw.stat("cluster.backend.outlier_detection.ejections_active"),
        1
    );
    assert_eq!(rw.stat("cluster.backend.membership_healthy"), 2);
    // max_ejection_percent: the good endpoints are never ejected, even after failures.
    good1.fail_always();
    for _ in 0..20 {
        http_get(rw.listen_port, "/more");
    }
    assert_eq!(
        rw.stat("cluster.backend.outlier_detection.ejections_enforced_total"),
        1
    );
    assert!(rw.stat("cluster.backend.outlier_detection.ejections_overflow") >= 1);
    assert_eq!(bad.requests(), 3, "an ejected endpoint got traffic");
}

#[test]
fn ejection_ends_after_base_ejection_time() {
    let good = TestUpstream::start_with_id("good");
    let bad = TestUpstream::start_with_id("bad");
    bad.fail_always();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[good.port, bad.port])
        .cluster_extra(
            "backend",
            "outlier_detection: {consecutive_5xx: 2, base_ejection_time: 0.5s, interval: 0.1s}\n",
        )
        .route(Route::prefix("/", "backend").retry("5xx", 1, None));
    let rw = Ringway::start_with_args(&cfg.render(), &["--concurrency", "1"]);
    for _ in 0..10 {
        assert_eq!(http_get(rw.listen_port, "/a").status, 200);
    }
    assert_eq!(bad.requests(), 2);
    // After base_ejection_time the endpoint is tried again (and, still failing, ejected again).
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..10 {
        assert_eq!(http_get(rw.listen_port, "/b").status, 200);
    }
    assert_eq!(
        bad.requests(),
        4,
        "the endpoint was not re-admitted, or not re-ejected"
    );
    assert_eq!(
        rw.stat("cluster.backend.outlier_detection.ejections_enforced_total"),
        2
    );
}

#[test]
fn retries_and_health_checks_hide_an_endpoint_death() {
    let a = TestUpstream::start_with_id("a");
    let b = TestUpstream::start_with_id("b");
    let c = TestUpstream::start_with_id("c");
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[a.port, b.port, c.port])
        .cluster_extra("backend", &health_checks())
        .cluster_extra(
            "backend",
            "outlier_detection: {consecutive_5xx: 2, base_ejection_time: 30s}\n",
        )
        .route(Route::prefix("/", "backend").retry("connect-failure,reset,5xx", 2, None));
    let rw = Ringway::start(&cfg.render());
    for _ in 0..20 {
        assert_eq!(http_get(rw.listen_port, "/warm").status, 200);
    }
    let dead_port = c.port;
    drop(c);
    let mut failures = 0;
    let mut total = 0;
    // Keep load on through the detection window and beyond.
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        total += 1;
        if http_get(rw.listen_port, "/during").status != 200 {
            failures += 1;
        }
    }
    println!("{failures} failed of {total} requests while an endpoint died");
    assert_eq!(
        failures, 0,
        "retries did not hide the death ({total} requests)"
    );
    // Found by both mechanisms (connect failures also count toward consecutive_5xx).
    wait_flags(
        &rw,
        "backend",
        dead_port,
        "/failed_active_hc",
        Duration::from_secs(3),
    );
}

#[test]
fn config_fields_and_unsupported_checkers() {
    let base = ConfigBuilder::new()
        .cluster("backend", &[free_port()])
        .route(Route::prefix("/", "backend"));
    let good = base
        .clone()
        .cluster_extra("backend", &health_checks())
        .cluster_extra(
            "backend",
            "outlier_detection: {consecutive_5xx: 5, consecutive_gateway_failure: 5, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 10, enforcing_consecutive_5xx: 100}\n",
        );
    let out = Ringway::validate(&good.render());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (extra, path, msg) in [
        (
            "health_checks: [{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}]\n",
            "static_resources.clusters[0].health_checks[0].tcp_health_check",
            "not supported",
        ),
        (
            "health_checks: [{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {}}]\n",
            "static_resources.clusters[0].health_checks[0].grpc_health_check",
            "not supported",
        ),
        (
            "health_checks: [{interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /}}]\n",
            "static_resources.clusters[0].health_checks[0].timeout",
            "required",
        ),
        (
            "outlier_detection: {success_rate_stdev_factor: 1900}\n",
            "static_resources.clusters[0].outlier_detection.success_rate_stdev_factor",
            "not supported",
        ),
    ] {
        let out = Ringway::validate(&base.clone().cluster_extra("backend", extra).render());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra} was accepted");
        let line = err
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no error at {path}:\n{err}"));
        assert!(line.contains(msg), "{line}");
    }
}
