//! Upstream failures become Envoy's local replies: retries on 5xx, 504 on a route timeout, 503
//! when no endpoint accepts, 502 on a bad or reset upstream response.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn retry_on_5xx_hides_a_failing_endpoint() {
    let bad = TestUpstream::start_with_id("bad");
    bad.fail_always();
    let good = TestUpstream::start_with_id("good");
    let cfg = ConfigBuilder::new()
        .cluster("flaky", &[bad.port, good.port])
        .route(Route::prefix("/", "flaky").retry("5xx", 2, None));
    let rw = Ringway::start(&cfg.render());
    for i in 0..20 {
        let r = http_get(rw.listen_port, "/retry");
        assert_eq!(
            r.status, 200,
            "request {i} was not retried onto the good endpoint: {r:?}"
        );
        assert_eq!(r.body_text(), "good\n");
    }
    assert!(
        bad.requests() > 0,
        "the failing endpoint never got a request: round robin not used?"
    );
    let retries = rw.stat("cluster.flaky.upstream_rq_retry");
    assert!(
        retries > 0,
        "cluster.flaky.upstream_rq_retry = 0 although {} requests got 503",
        bad.requests()
    );
}

#[test]
fn slow_upstream_times_out_with_504() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("slow", &[u.port])
        .route(Route::prefix("/", "slow").timeout("0.5s"));
    let rw = Ringway::start(&cfg.render());
    let t = Instant::now();
    let r = http_get(rw.listen_port, "/delay/3000");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        took < Duration::from_secs(3),
        "504 took {took:?}: the 0.5 s route timeout did not fire"
    );
    rw.wait_stat("cluster.slow.upstream_rq_timeout", 1);
}

#[test]
fn closed_endpoint_port_gives_503() {
    let dead = free_port(); // nothing listens here
    let cfg = ConfigBuilder::new()
        .cluster("dead", &[dead])
        .route(Route::prefix("/", "dead"));
    let rw = Ringway::start(&cfg.render());
    let r = http_get(rw.listen_port, "/");
    assert_eq!(r.status, 503, "{r:?}");
    // The proxy keeps serving after the failure.
    let r = http_get(rw.listen_port, "/again");
    assert_eq!(r.status, 503, "{r:?}");
}

#[test]
fn non_http_upstream_response_gives_502() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let r = http_get(rw.listen_port, "/garbage");
    assert_eq!(
        r.status, 502,
        "an unparseable upstream response must be a 502: {r:?}"
    );
    // And an ordinary request afterwards still works (the bad connection was not pooled).
    assert_eq!(http_get(rw.listen_port, "/ok").status, 200);
}

#[test]
fn upstream_reset_before_response_gives_502() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let r = http_get(rw.listen_port, "/close");
    assert_eq!(
        r.status, 502,
        "upstream closed without answering; the contract says 502: {r:?}"
    );
    assert_eq!(http_get(rw.listen_port, "/ok").status, 200);
}

#[test]
fn fail_next_503_passes_through_without_retry_policy() {
    let u = TestUpstream::start();
    u.fail_next(1);
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    assert_eq!(http_get(rw.listen_port, "/").status, 503);
    assert_eq!(http_get(rw.listen_port, "/").status, 200);
    assert_eq!(
        u.requests(),
        2,
        "a request was retried although no retry_policy is configured"
    );
    rw.wait_stat("cluster.backend.upstream_rq_503", 1);
}
