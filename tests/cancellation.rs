//! Cancelled requests give back everything they held: a client that goes away while the
//! upstream is still working (HTTP/2 connection closed, HTTP/2 RST_STREAM, HTTP/1.1 connection
//! closed) must not leave breaker units, pool counts or active gauges behind.
//!
//! Before accounting by ownership, 60 such cancellations against `max_connections: 16` left the
//! cluster answering 503 (`upstream_cx_overflow`) for good. Each test cancels 60 requests, waits
//! for quiescence, checks the published breaker state, and then requires the cluster to serve
//! again; the harness's leak check runs at the end as in every test.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::*;

/// One worker (so its share of `max_connections: 16` is all 16) in front of a slow upstream.
fn slow_cluster(up: &TestUpstream) -> Ringway {
    let cfg = ConfigBuilder::new()
        .cluster("slow", &[up.port])
        .cluster_extra(
            "slow",
            "circuit_breakers:\n  thresholds:\n  - max_connections: 16\n    max_requests: 1024",
        )
        .route(Route::prefix("/", "slow"));
    Ringway::start_with_args(&cfg.render(), &["--concurrency", "1"])
}

/// Waits until nothing is admitted and no connection is held by an exchange, then checks the
/// cluster answers 200 over both codecs.
fn assert_cluster_recovers(rw: &Ringway, up: &TestUpstream) {
    if let Err(problems) = rw.leak_check() {
        panic!("after the cancellations:\n{problems}");
    }
    let stats = rw.stats();
    assert_eq!(
        stats["cluster.slow.circuit_breakers.default.remaining_rq"], 1024,
        "requests still admitted"
    );
    assert_eq!(stats["cluster.slow.circuit_breakers.default.rq_open"], 0);
    let idle = stats["cluster.slow.upstream_cx_idle"];
    assert_eq!(
        stats["cluster.slow.circuit_breakers.default.remaining_cx"] + idle,
        16,
        "max_connections permits held by no connection: {stats:#?}"
    );
    let before = up.requests();
    for i in 0..20 {
        let r = http_get(rw.listen_port, "/after");
        assert_eq!(
            r.status, 200,
            "HTTP/1.1 request {i} after the cancellations: {r:?}"
        );
    }
    let run = py::run_ok(
        "h2_request.py",
        &["--port", &rw.listen_port.to_string(), "--path", "/after-h2"],
    );
    assert_eq!(run.get("status"), 200, "{}", run.explain());
    assert!(up.requests() >= before + 21);
}

fn cancel_h2(mode: &str) {
    let up = TestUpstream::start();
    let rw = slow_cluster(&up);
    let run = py::run_ok(
        "h2_cancel.py",
        &[
            "--port",
            &rw.listen_port.to_string(),
            "--path",
            "/delay/1500",
            "--count",
            "60",
            "--mode",
            mode,
            "--after-ms",
            "400",
        ],
    );
    assert_eq!(
        run.get("answered_before_cancel"),
        0,
        "the upstream answered before the cancel; the test did not cancel anything in flight: {}",
        run.explain()
    );
    // The 16 connections the breaker allowed reached the upstream before the cancel.
    let reached = rw.stat("cluster.slow.upstream_cx_total");
    assert!(
        reached >= 16,
        "only {reached} upstream connections were opened"
    );
    assert_cluster_recovers(&rw, &up);
}

#[test]
fn h2_connections_closed_mid_request_release_everything() {
    cancel_h2("close");
}

#[test]
fn h2_streams_reset_mid_request_release_everything() {
    cancel_h2("rst");
}

#[test]
fn h1_connections_closed_mid_request_release_everything() {
    let up = TestUpstream::start();
    let rw = slow_cluster(&up);
    let mut conns = Vec::new();
    for _ in 0..60 {
        let mut c = RawConn::open(rw.listen_port);
        c.send(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(400));
    drop(conns);
    assert_cluster_recovers(&rw, &up);
}
