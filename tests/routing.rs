//! Routing and load balancing through the real binary: prefix routes to two clusters (Envoy's
//! front-proxy example shape), 404 on no route, round robin across three endpoints, upstream
//! connection reuse, and nginx as a real upstream.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[test]
fn prefix_routes_reach_their_clusters() {
    let u1 = TestUpstream::start_with_id("service1-a");
    let u2 = TestUpstream::start_with_id("service2-a");
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[u1.port])
        .cluster("service2", &[u2.port])
        .route(Route::prefix("/service/1", "service1"))
        .route(Route::prefix("/service/2", "service2"));
    let rw = Ringway::start(&cfg.render());

    let r = http_get(rw.listen_port, "/service/1/x");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "service1-a\n"),
        "{r:?}"
    );
    assert_eq!(r.header("x-upstream-id"), Some("service1-a"));
    let r = http_get(rw.listen_port, "/service/2");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "service2-a\n"),
        "{r:?}"
    );

    // The path reaches the upstream unchanged (no prefix_rewrite configured).
    assert_eq!(
        u1.log().iter().map(|q| q.path.as_str()).collect::<Vec<_>>(),
        ["/service/1/x"]
    );
    assert_eq!(
        u2.log().iter().map(|q| q.path.as_str()).collect::<Vec<_>>(),
        ["/service/2"]
    );
}

#[test]
fn no_matching_route_is_404_and_nothing_reaches_upstream() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[u.port])
        .route(Route::prefix("/service/1", "service1"));
    let rw = Ringway::start(&cfg.render());
    let r = http_get(rw.listen_port, "/elsewhere");
    assert_eq!(r.status, 404, "no route must be a local 404: {r:?}");
    assert_eq!(
        u.requests(),
        0,
        "a request with no route reached the upstream"
    );
}

#[test]
fn round_robin_spreads_evenly_over_three_endpoints() {
    let ups: Vec<TestUpstream> = (0..3).map(|_| TestUpstream::start()).collect();
    let ports: Vec<u16> = ups.iter().map(|u| u.port).collect();
    let rw = Ringway::start(&ConfigBuilder::single(&ports).render());
    for i in 0..30 {
        let r = http_get(rw.listen_port, "/rr");
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    // Each worker runs its own round robin; 30 requests split over 2 workers still give each of
    // 3 endpoints 10 ± 1.
    let counts: Vec<u64> = ups.iter().map(|u| u.requests()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30, "{counts:?}");
    for (i, c) in counts.iter().enumerate() {
        assert!(
            (9..=11).contains(c),
            "endpoint {i} got {c} of 30 requests: {counts:?}"
        );
    }
}

#[test]
fn keep_alive_connections_are_reused_upstream() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let url = rw.url("/ka");
    // curl reuses its connection for several URLs on one command line.
    let mut args: Vec<&str> = vec!["-w", "\n%{http_code}\n"];
    args.extend(std::iter::repeat_n(url.as_str(), 50));
    let out = curl_ok(&args);
    assert_eq!(
        out.lines().filter(|l| *l == "200").count(),
        50,
        "not every request got 200:\n{out}"
    );
    assert_eq!(u.requests(), 50);
    assert!(
        u.connections() < 50,
        "upstream saw {} connections for 50 sequential requests: no pooling",
        u.connections()
    );
}

#[test]
fn upstream_closing_idle_connections_does_not_fail_requests() {
    // The upstream closes idle keep-alive connections after 50 ms; requests spaced past that must
    // still succeed (the pool must notice the close, or retry the request on a fresh connection).
    let u = TestUpstream::start();
    u.idle_close_after(std::time::Duration::from_millis(50));
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    for i in 0..10 {
        c.send(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = c.read_response().unwrap();
        assert_eq!(
            r.status, 200,
            "request {i} after the upstream closed its idle connection: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(120));
    }
    assert!(
        u.connections() >= 2,
        "expected new upstream connections after idle closes"
    );
}

#[test]
fn nginx_upstream_serves_through_ringway() {
    let n = Nginx::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[n.port]).render());
    let r = http_get(rw.listen_port, "/");
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "nginx\n"),
        "{r:?}"
    );
    // nginx sends its own Server header; Ringway keeps an upstream's.
    assert!(
        r.header("server").is_some_and(|s| s.starts_with("nginx")),
        "server header: {:?}",
        r.header("server")
    );
    let out = curl(&[&rw.url("/big")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), support::nginx::BIG_LEN);
    assert_eq!(sha256_hex(&out.stdout), n.big_sha256);
    // Many requests over one client connection.
    let url = rw.url("/");
    let mut args: Vec<&str> = vec!["-w", "\n%{http_code}\n"];
    args.extend(std::iter::repeat_n(url.as_str(), 20));
    let out = curl_ok(&args);
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 20, "{out}");
}
