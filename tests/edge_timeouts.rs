//! The exchange's edges: pooled connections the upstream closed, upstreams that answer before
//! the body is sent, and peers that go slow or silent. Each test shows the defence fired (the
//! answer a client gets that it would not get without it, or our stat).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::raw::http_request;
use support::*;

/// A pooled keep-alive connection the upstream closed while idle is never handed a request:
/// a POST larger than the retry buffer (so not replayable) must still succeed.
#[test]
fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    let up = TestUpstream::start();
    up.idle_close_after(Duration::from_millis(100));
    let rw = Ringway::start_with_args(
        &ConfigBuilder::single(&[up.port]).render(),
        &["--concurrency", "1"],
    );
    assert_eq!(http_get(rw.listen_port, "/warm").status, 200);
    // The upstream closes the idle pooled connection; our side sits in CLOSE-WAIT.
    std::thread::sleep(Duration::from_millis(400));
    let body: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let r = http_request(rw.listen_port, "POST", "/sha256", &body).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), sha256_hex(&body));
    assert_eq!(
        rw.stat("cluster.backend.upstream_rq_reuse_retry"),
        0,
        "the dead connection was written to (and the race retry needed)"
    );
    assert!(rw.stat("cluster.backend.upstream_cx_destroy_remote") >= 1);
    assert_eq!(up.connections(), 2, "a fresh connection served the POST");
}

/// An upstream that answers 413 and closes before reading a large body: its answer reaches the
/// client (nginx relays it too), instead of a 502.
#[test]
fn an_early_upstream_answer_is_relayed() {
    let up = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[up.port]).render());
    let body = vec![b'x'; 1024 * 1024];
    let r = http_request(rw.listen_port, "POST", "/reject/413", &body).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.body_text(), "413\n");
    // Nothing was retried or reported as a reset of ours.
    assert_eq!(rw.stat("cluster.backend.upstream_rq_413"), 1);
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_5xx"), 0);
}

/// A connection that never sends a byte is closed by request_headers_timeout, counted from accept.
#[test]
fn a_silent_connection_is_closed_by_the_headers_timeout() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[up.port]).hcm_extra("request_headers_timeout: 1s");
    let rw = Ringway::start(&cfg.render());
    let mut silent = RawConn::open(rw.listen_port);
    assert!(
        silent.closed_within(Duration::from_secs(5)),
        "a silent connection outlived request_headers_timeout"
    );
    rw.wait_stat("http.ingress_http.downstream_rq_header_timeout", 1);
    // A keep-alive connection between requests is governed by idle_timeout instead.
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
}

/// Clients trickling small uploads hold no upstream slot while they trickle: admission waits
/// for a buffered body to be complete, so other requests keep being served.
#[test]
fn trickling_uploads_do_not_fill_max_requests() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .cluster_extra(
            "backend",
            "circuit_breakers:\n  thresholds:\n  - max_requests: 4",
        )
        .route(Route::prefix("/", "backend"));
    let rw = Ringway::start_with_args(&cfg.render(), &["--concurrency", "1"]);
    let mut tricklers = Vec::new();
    for _ in 0..12 {
        let mut c = RawConn::open(rw.listen_port);
        c.send(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
        tricklers.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        let r = http_get(rw.listen_port, "/other");
        assert_eq!(r.status, 200, "request {i} while 12 uploads trickle: {r:?}");
    }
    assert_eq!(rw.stat("cluster.backend.upstream_rq_pending_overflow"), 0);
    // The tricklers finish and are served.
    for c in &mut tricklers {
        c.send(&[b'y'; 97]).unwrap();
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}

/// A client that stops reading its response does not hold the request and the upstream
/// connection past stream_idle_timeout.
#[test]
fn a_client_that_stops_reading_is_cut_by_stream_idle_timeout() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[up.port]).hcm_extra("stream_idle_timeout: 1s");
    let rw = Ringway::start(&cfg.render());
    let mut s = TcpStream::connect(("127.0.0.1", rw.listen_port)).unwrap();
    s.write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read a little, then stop: Ringway's writes block once the socket buffers fill.
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).unwrap();
    let t = Instant::now();
    // The request ends (and its upstream connection goes) within the idle timeout and slack.
    let deadline = t + Duration::from_secs(8);
    loop {
        let active = rw.stat("http.ingress_http.downstream_rq_active");
        if active == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request still active {:?} after the client stopped reading",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rw.stat("cluster.backend.upstream_rq_active"), 0);
    drop(s);
}

/// HTTP/2 streams that send HEADERS without END_STREAM and then stall are reset after
/// stream_idle_timeout and hold nothing while they wait.
#[test]
fn stalled_h2_streams_time_out_and_hold_no_slot() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .cluster_extra(
            "backend",
            "circuit_breakers:\n  thresholds:\n  - max_requests: 2",
        )
        .route(Route::prefix("/", "backend"))
        .hcm_extra("stream_idle_timeout: 1s");
    let rw = Ringway::start_with_args(&cfg.render(), &["--concurrency", "1"]);
    let stall = py::PyProcess::background(
        "h2_stall.py",
        &[
            "--port",
            &rw.listen_port.to_string(),
            "--streams",
            "8",
            "--hold-s",
            "4",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    // While 8 streams stall, other requests are admitted.
    for i in 0..5 {
        let r = http_get(rw.listen_port, "/ok");
        assert_eq!(
            r.status, 200,
            "request {i} while 8 HTTP/2 streams stall: {r:?}"
        );
    }
    let run = stall.finish();
    assert!(run.status.success(), "{}", run.explain());
    let answered = run.get("statuses").get("408").and_then(|v| v.as_u64());
    assert_eq!(
        answered,
        Some(8),
        "each stalled stream gets Envoy's 408 for a stream idle timeout: {}",
        run.explain()
    );
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 8);
}
