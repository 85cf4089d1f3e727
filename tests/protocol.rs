//! HTTP/1.1 semantics through the proxy: forwarding headers added, hop-by-hop headers removed,
//! response headers, HEAD, HTTP/1.0 close, pipelining.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::*;

#[test]
fn forwarding_headers_added_and_hop_by_hop_removed() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(
        b"GET /hdr HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, x-drop-me\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\nX-Drop-Me: 1\r\nUser-Agent: ringway-test\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    let seen = u.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "upstream saw {:?}",
        seen.headers
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("http"),
        "upstream saw {:?}",
        seen.headers
    );
    let rid = seen
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {:?}", seen.headers));
    assert_eq!(rid.len(), 36, "x-request-id {rid:?} is not a 36-char UUID");
    assert_eq!(
        rid.matches('-').count(),
        4,
        "x-request-id {rid:?} is not a UUID"
    );
    for hop in ["connection", "keep-alive", "proxy-connection", "x-drop-me"] {
        // `connection` may be re-added by the proxy for its own upstream connection only if it
        // says keep-alive; the client's value must never pass through.
        let v = seen.header(hop);
        let ok = v.is_none()
            || (hop == "connection" && v.is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")));
        assert!(
            ok,
            "hop-by-hop header {hop}: {v:?} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("host"), Some("example.test"));
    assert_eq!(seen.header("user-agent"), Some("ringway-test"));

    let st = r
        .header("x-envoy-upstream-service-time")
        .unwrap_or_else(|| panic!("no x-envoy-upstream-service-time: {:?}", r.headers));
    assert!(
        st.parse::<u64>().is_ok(),
        "x-envoy-upstream-service-time {st:?} is not an integer"
    );
    assert_eq!(r.header("server"), Some("ringway"), "{:?}", r.headers);
    assert_eq!(r.header("x-upstream-id"), Some(u.id()));
}

#[test]
fn client_request_id_is_kept() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let out = curl_ok(&[
        "-H",
        "x-request-id: 0b8e3b8c-0000-4000-8000-000000000001",
        &rw.url("/"),
    ]);
    assert_eq!(out, format!("{}\n", u.id()));
    let seen = u.last_request().unwrap();
    assert_eq!(
        seen.header("x-request-id"),
        Some("0b8e3b8c-0000-4000-8000-000000000001")
    );
    assert_eq!(seen.header_count("x-request-id"), 1);
}

#[test]
fn http10_without_keep_alive_is_closed() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /h10 HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), format!("{}\n", u.id()));
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "HTTP/1.0 connection without keep-alive left open"
    );
}

#[test]
fn head_response_has_no_body() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = c.read_head_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"), "{:?}", r.headers);
    // Were any body bytes sent after the HEAD response, the next response would be misparsed.
    c.send(b"GET /bytes/7 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(7));
    assert_eq!(u.log()[0].method, "HEAD");
}

#[test]
fn pipelined_requests_answered_in_order() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(
        b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let a = c.read_response().unwrap();
    let b = c.read_response().unwrap();
    let d = c.read_response().unwrap();
    assert_eq!(
        (a.status, b.status, d.status),
        (201, 200, 202),
        "responses out of order"
    );
    assert_eq!(b.body, pattern(3));
    assert!(
        !c.closed_within(Duration::from_millis(200)),
        "keep-alive connection closed after pipelined requests"
    );
}

#[test]
fn connection_close_request_is_honoured() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "connection: close request left the connection open"
    );
}

#[test]
fn direct_response_route_answers_locally() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[u.port])
        .route(Route::direct("/direct", 200, "from ringway\n"))
        .route(Route::prefix("/", "backend"));
    let rw = Ringway::start(&cfg.render());
    let r = http_get(rw.listen_port, "/direct");
    assert_eq!((r.status, r.body_text().as_str()), (200, "from ringway\n"));
    assert_eq!(u.requests(), 0);
}

#[test]
fn oversized_head_gets_431_and_long_request_line_414() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    let big = "a".repeat(200 * 1024);
    let _ = c.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 431, "{r:?}");
    let mut c = RawConn::open(rw.listen_port);
    let path = "/".repeat(200 * 1024);
    let _ = c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 414, "{r:?}");
    assert_eq!(u.requests(), 0);
}

/// Envoy's rule for HTTP/1.0 without a host: 426 unless `accept_http_10`, which routes it by
/// `default_host_for_http_10`. (An HTTP/1.0 request naming its host is served as before.)
#[test]
fn http10_without_host_gets_426_unless_accepted_with_a_default_host() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /nohost HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 426, "{r:?}");
    assert!(
        u.log().iter().all(|q| q.path != "/nohost"),
        "forwarded anyway"
    );
    drop(rw);

    let cfg = ConfigBuilder::single(&[u.port]).hcm_extra(
        "http_protocol_options:\n  accept_http_10: true\n  default_host_for_http_10: legacy.example",
    );
    let rw = Ringway::start(&cfg.render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /nohost HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let seen = u.last_request().unwrap();
    assert_eq!(seen.path, "/nohost");
    assert_eq!(seen.header("host"), Some("legacy.example"));
}

/// An error reply to an oversized request reaches a client that is still sending: the
/// connection closes with a lingering read, not a reset that would destroy the reply.
#[test]
fn oversized_uri_gets_its_414_while_the_client_still_sends() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 32 * 1024 * 1024));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    // Written from another thread: the proxy answers long before the client is done.
    let mut writer = c.try_clone_stream();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&req)
    });
    let r = c.read_response().unwrap();
    assert!(
        r.status == 414 || r.status == 431,
        "expected the URI refusal, got {r:?}"
    );
    // The proxy kept reading what the client sent after its reply: the client's write went
    // through, where closing on unread bytes would have reset the connection under it.
    let wrote = t.join().unwrap();
    assert!(
        wrote.is_ok(),
        "the client's write was reset ({wrote:?}): no lingering close"
    );
    assert!(c.closed_within(Duration::from_secs(10)));
}
