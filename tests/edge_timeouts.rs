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

/// Opens `streams` stalled HTTP/2 streams on `path` (HEADERS without END_STREAM, then
/// silence) for `hold_s` seconds; returns how many got a 408 and the whole outcome.
fn stall_h2(port: u16, path: &str, streams: u32, hold_s: f64) -> py::PyProcess {
    py::PyProcess::background(
        "h2_stall.py",
        &[
            "--port",
            &port.to_string(),
            "--streams",
            &streams.to_string(),
            "--hold-s",
            &hold_s.to_string(),
            "--path",
            path,
        ],
    )
}

/// The status curl gets for GET `path` over h2c (prior knowledge).
fn h2c_status(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn statuses(run: &py::PyRun, code: &str) -> u64 {
    run.get("statuses")
        .get(code)
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// HCM `request_timeout` bounds the whole request: an upload that trickles a byte every
/// 200 ms (so it never idles) gets Envoy's 408 "request timeout" once the time is up, and the
/// connection closes.
#[test]
fn request_timeout_cuts_a_steadily_trickling_upload() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[up.port]).hcm_extra("request_timeout: 1s");
    let rw = Ringway::start(&cfg.render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    // 15 bytes over 3 s: never idle, never complete.
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        if c.send(b"y").is_err() {
            break;
        }
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.body_text(), "request timeout");
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_timeout"), 1);
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 0);
    // A request that arrives in time is not touched by it, however long its answer takes.
    let r = http_get(rw.listen_port, "/delay/1500");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_timeout"), 1);
}

/// `request_timeout` on HTTP/2: streams whose request never completes get 408 from it (the
/// stream idle timeout is the default 5 minutes, so only this limit can fire).
#[test]
fn request_timeout_answers_stalled_h2_streams() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[up.port]).hcm_extra("request_timeout: 1s");
    let rw = Ringway::start(&cfg.render());
    let run = stall_h2(rw.listen_port, "/", 4, 3.0).finish();
    assert!(run.status.success(), "{}", run.explain());
    assert_eq!(statuses(&run, "408"), 4, "{}", run.explain());
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_timeout"), 4);
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 0);
}

/// `common_http_protocol_options.max_stream_duration` ends an exchange that lasts too long,
/// with Envoy's 504 "downstream duration timeout" once the request was all in, on both codecs;
/// a route's `max_stream_duration: {max_stream_duration: 0s}` switches it off for that route.
#[test]
fn max_stream_duration_ends_long_exchanges_unless_the_route_lifts_it() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .route(
            Route::prefix("/delay/1500", "backend")
                .action_extra("max_stream_duration: {max_stream_duration: 0s}"),
        )
        .route(Route::prefix("/", "backend"))
        .hcm_extra("common_http_protocol_options: {max_stream_duration: 1s}");
    let rw = Ringway::start(&cfg.render());
    let r = http_get(rw.listen_port, "/delay/3000");
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.body_text(), "downstream duration timeout");
    assert_eq!(h2c_status(rw.listen_port, "/delay/3000"), "504");
    assert_eq!(
        rw.stat("http.ingress_http.downstream_rq_max_duration_reached"),
        2
    );
    // The route that sets 0s is not bounded by the connection manager's limit.
    let r = http_get(rw.listen_port, "/delay/1500");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        rw.stat("http.ingress_http.downstream_rq_max_duration_reached"),
        2
    );
}

/// A route's `idle_timeout` replaces the connection manager's `stream_idle_timeout`: streams
/// on a route with 1 s are cut while the connection manager allows 5 minutes, and streams on
/// a route with `idle_timeout: 0s` are never cut although the connection manager says 1 s.
#[test]
fn route_idle_timeout_overrides_the_stream_idle_timeout() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .route(
            Route::prefix("/quick/", "backend")
                .prefix_rewrite("/")
                .action_extra("idle_timeout: 1s"),
        )
        .route(Route::prefix("/", "backend"))
        .hcm_extra("stream_idle_timeout: 300s");
    let rw = Ringway::start(&cfg.render());
    let quick = stall_h2(rw.listen_port, "/quick/stall", 3, 3.0).finish();
    assert!(quick.status.success(), "{}", quick.explain());
    assert_eq!(statuses(&quick, "408"), 3, "{}", quick.explain());
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 3);

    // An HTTP/1.1 client that stops reading a response on the quick route is cut too.
    let mut s = TcpStream::connect(("127.0.0.1", rw.listen_port)).unwrap();
    s.write_all(b"GET /quick/bytes/67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).unwrap();
    let ended = wait_until(Duration::from_secs(8), || {
        (rw.stat("http.ingress_http.downstream_rq_active") == 0).then_some(())
    });
    assert!(
        ended.is_some(),
        "the h1 request outlived the route's idle_timeout"
    );
    drop(s);

    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .route(Route::prefix("/patient", "backend").action_extra("idle_timeout: 0s"))
        .route(Route::prefix("/", "backend"))
        .hcm_extra("stream_idle_timeout: 1s");
    let rw = Ringway::start(&cfg.render());
    let patient = stall_h2(rw.listen_port, "/patient", 2, 2.5);
    let hasty = stall_h2(rw.listen_port, "/other", 2, 2.5).finish();
    let patient = patient.finish();
    assert_eq!(statuses(&hasty, "408"), 2, "{}", hasty.explain());
    assert_eq!(statuses(&patient, "408"), 0, "{}", patient.explain());
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 2);
}

/// The idle timeout covers a silent upstream on both codecs (one watchdog, fed by every read
/// and write of the exchange): a response that does not start within the route's 1 s
/// `idle_timeout` gets Envoy's 504 "stream timeout" long before the 15 s route timeout.
#[test]
fn an_idle_timeout_cuts_a_silent_upstream_on_both_codecs() {
    let up = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[up.port])
        .route(Route::prefix("/", "backend").action_extra("idle_timeout: 1s"));
    let rw = Ringway::start(&cfg.render());
    let t = Instant::now();
    let r = http_get(rw.listen_port, "/delay/4000");
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.body_text(), "stream timeout");
    assert_eq!(h2c_status(rw.listen_port, "/delay/4000"), "504");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(rw.stat("http.ingress_http.downstream_rq_idle_timeout"), 2);
    // A response that keeps moving is not idle however long it takes.
    let r = http_get(rw.listen_port, "/delay/500");
    assert_eq!(r.status, 200, "{r:?}");
}
