//! HTTP/2 through the proxy: h2c with prior knowledge downstream (curl, nghttp, h2load, raw
//! frames from tests/py), translation to HTTP/1.1 upstreams and from HTTP/1.1 clients to HTTP/2
//! upstreams (nginx `listen http2`, tests/py/h2_server.py), trailers, 50 MiB bodies both ways,
//! `codec_type`, `http2_protocol_options` and the http2 connection stats.
//!
//! `tools_work_against_nginx_h2` runs the same clients against nginx alone: when it passes and a
//! Ringway test fails, the fault is Ringway's, not the harness's.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::py::{run_ok, tool};
use support::*;

const FIFTY_MIB: usize = 50 * 1024 * 1024;
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn h2_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Runs h2load and returns (requests succeeded, 2xx count) from its summary.
fn h2load(args: &[&str]) -> (u64, u64, String) {
    let (ok, out, err) = tool("h2load", args, TOOL_TIMEOUT);
    assert!(ok, "h2load {args:?} failed:\n{out}\n{err}");
    let num_after = |line_start: &str, word: &str| -> Option<u64> {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(line_start))?;
        let idx = line.find(word)?;
        line[..idx].split_whitespace().last()?.parse().ok()
    };
    let succeeded = num_after("requests:", "succeeded").unwrap_or(0);
    let two_xx = num_after("status codes:", "2xx").unwrap_or(0);
    (succeeded, two_xx, out)
}

fn json_str<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn tools_work_against_nginx_h2() {
    let n = NginxH2::start(1024);
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "-w",
        "%{http_version}",
        &h2_url(n.port, "/"),
    ]);
    assert_eq!(out, "nginx-h2\n2");
    let (ok, stdout, stderr) = tool(
        "nghttp",
        &["-n", "-m", "100", &h2_url(n.port, "/")],
        TOOL_TIMEOUT,
    );
    assert!(ok, "nghttp: {stdout}{stderr}");
    let (succeeded, two_xx, _) =
        h2load(&["-n", "2000", "-c", "4", "-m", "50", &h2_url(n.port, "/")]);
    assert_eq!((succeeded, two_xx), (2000, 2000));
    let port = n.port.to_string();
    let r = run_ok("h2_request.py", &["--port", &port, "--path", "/headers"]);
    assert_eq!(r.get("status"), &Value::from(200), "{}", r.explain());
    assert!(
        json_str(&r.json, "body").contains("proto=HTTP/2.0"),
        "{}",
        r.explain()
    );
}

#[test]
fn curl_prior_knowledge_reaches_h1_upstream() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &rw.url("/hello"),
    ]);
    assert_eq!(
        out,
        format!("{}\n\n2", u.id()),
        "body then the HTTP version curl used"
    );
    assert_eq!(
        u.last_request().unwrap().version,
        1,
        "upstream spoke HTTP/1.1"
    );
    rw.wait_stat("http.ingress_http.downstream_cx_http2_total", 1);
}

#[test]
fn h2_request_headers_map_to_h1_upstream() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let port = rw.listen_port.to_string();
    let r = run_ok(
        "h2_request.py",
        &[
            "--port",
            &port,
            "--path",
            "/mapped?q=1",
            "--authority",
            "svc.example:8443",
            "-H",
            "te: trailers",
            "-H",
            "x-custom: kept",
        ],
    );
    assert_eq!(r.get("status"), &Value::from(200), "{}", r.explain());
    let req = u.last_request().unwrap();
    assert_eq!(req.path, "/mapped?q=1");
    assert_eq!(req.method, "GET");
    assert_eq!(req.version, 1);
    assert_eq!(
        req.header("host"),
        Some("svc.example:8443"),
        ":authority becomes Host: {:?}",
        req.headers
    );
    assert_eq!(req.header_count("host"), 1, "{:?}", req.headers);
    assert_eq!(
        req.header("te"),
        Some("trailers"),
        "te: trailers is kept: {:?}",
        req.headers
    );
    assert_eq!(req.header("x-custom"), Some("kept"));
    for name in [
        ":authority",
        ":path",
        ":method",
        ":scheme",
        "keep-alive",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(
            req.header(name),
            None,
            "{name} must not reach an HTTP/1.1 upstream: {:?}",
            req.headers
        );
    }
    // `connection` may only carry Ringway's own keep-alive token, never a client's.
    if let Some(c) = req.header("connection") {
        assert!(c.eq_ignore_ascii_case("keep-alive"), "connection: {c}");
    }
}

#[test]
fn h2_body_without_length_reaches_h1_upstream_intact() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let port = rw.listen_port.to_string();
    // DATA frames without content-length: the h1 side must frame it (chunked) itself.
    let r = run_ok(
        "h2_request.py",
        &[
            "--port",
            &port,
            "--method",
            "POST",
            "--path",
            "/sha256",
            "--body-size",
            "40000",
        ],
    );
    assert_eq!(r.get("status"), &Value::from(200), "{}", r.explain());
    assert_eq!(json_str(&r.json, "body"), sha256_hex(&pattern(40000)));
    let req = u.last_request().unwrap();
    assert_eq!(req.body_len, 40000);
    assert!(
        req.header("transfer-encoding") == Some("chunked")
            || req.header("content-length") == Some("40000"),
        "{:?}",
        req.headers
    );
}

#[test]
fn nghttp_many_concurrent_streams() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let (ok, out, err) = tool("nghttp", &["-v", &rw.url("/v")], TOOL_TIMEOUT);
    assert!(ok, "nghttp -v: {out}{err}");
    assert!(out.contains(":status: 200"), "{out}");
    let (ok, out, err) = tool(
        "nghttp",
        &["-n", "-s", "-m", "100", &rw.url("/many")],
        TOOL_TIMEOUT,
    );
    assert!(ok, "nghttp -m 100: {out}{err}");
    let many = u.log().iter().filter(|r| r.path == "/many").count();
    assert_eq!(many, 100, "every stream reached the upstream");
}

#[test]
fn h2load_multiplexed_all_2xx() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    // 4 connections x 10 streams: each stream needs its own HTTP/1.1 upstream connection, and
    // the test upstream (a thread per connection) drops SYNs when hundreds arrive at once.
    let (succeeded, two_xx, out) = h2load(&["-n", "2000", "-c", "4", "-m", "10", &rw.url("/")]);
    assert_eq!((succeeded, two_xx), (2000, 2000), "{out}");
    rw.wait_stat("http.ingress_http.downstream_cx_http2_total", 4);
}

#[test]
fn h1_clients_share_few_h2_connections_to_nginx() {
    let n = NginxH2::start(1024);
    let rw = Ringway::start(
        &ConfigBuilder::single(&[n.port])
            .h2_cluster("backend")
            .render(),
    );
    let body = curl_ok(&[&rw.url("/headers")]);
    assert!(body.contains("proto=HTTP/2.0"), "nginx saw: {body}");
    assert!(
        body.contains("host=127.0.0.1"),
        "Host became :authority: {body}"
    );
    // HTTP/1.1 clients, many connections, many requests: the upstream side multiplexes.
    let (succeeded, two_xx, out) = h2load(&["--h1", "-n", "1000", "-c", "16", &rw.url("/")]);
    assert_eq!((succeeded, two_xx), (1000, 1000), "{out}");
    let mut conns = BTreeSet::new();
    for _ in 0..40 {
        conns.insert(curl_ok(&[&rw.url("/conn")]));
    }
    let h2_cx = rw.stat("cluster.backend.upstream_cx_http2_total");
    assert!(h2_cx >= 1, "upstream_cx_http2_total = {h2_cx}");
    // Two workers, each with its own pool: a handful of connections, not one per request.
    assert!(
        conns.len() <= 4,
        "requests spread over {} upstream connections: {conns:?}",
        conns.len()
    );
    assert!(rw.stat("cluster.backend.upstream_cx_total") <= 8);
}

#[test]
fn h1_to_h2_upstream_header_mapping() {
    let up = PyProcess::h2_server();
    let rw = Ringway::start(
        &ConfigBuilder::single(&[up.port])
            .h2_cluster("backend")
            .render(),
    );
    let body = curl_ok(&[
        "-H",
        "Host: app.example",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "x-hop: dropped",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "te: trailers",
        "-H",
        "x-custom: kept",
        &rw.url("/seen?a=b"),
    ]);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json_str(&v, "method"), "GET");
    assert_eq!(json_str(&v, "path"), "/seen?a=b");
    assert_eq!(
        json_str(&v, "authority"),
        "app.example",
        "Host becomes :authority"
    );
    let headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for name in [
        "connection",
        "keep-alive",
        "x-hop",
        "host",
        "transfer-encoding",
        "upgrade",
    ] {
        assert_eq!(
            header_value(&headers, name),
            None,
            "{name} must not be sent over h2: {headers:?}"
        );
    }
    assert_eq!(header_value(&headers, "te"), Some("trailers"));
    assert_eq!(header_value(&headers, "x-custom"), Some("kept"));
    assert_eq!(header_value(&headers, ":scheme"), Some("http"));
    rw.wait_stat("cluster.backend.upstream_cx_http2_total", 1);
}

#[test]
fn trailers_pass_h2_to_h2_both_ways() {
    let up = PyProcess::h2_server();
    let rw = Ringway::start(
        &ConfigBuilder::single(&[up.port])
            .h2_cluster("backend")
            .render(),
    );
    let port = rw.listen_port.to_string();
    let r = run_ok(
        "h2_request.py",
        &[
            "--port",
            &port,
            "--method",
            "POST",
            "--path",
            "/echo",
            "--body",
            "hello",
            "--trailer",
            "x-req-trailer: one",
            "--trailer",
            "x-other: two",
        ],
    );
    assert_eq!(r.get("status"), &Value::from(200), "{}", r.explain());
    assert_eq!(json_str(&r.json, "body"), "hello");
    let t = r.get("trailers");
    assert_eq!(
        json_str(t, "x-echoed-x-req-trailer"),
        "one",
        "request trailers reached the upstream: {}",
        r.explain()
    );
    assert_eq!(json_str(t, "x-echoed-x-other"), "two");
    assert_eq!(
        json_str(t, "x-body-len"),
        "5",
        "response trailers came back"
    );
    let r = run_ok("h2_request.py", &["--port", &port, "--path", "/trailers"]);
    assert_eq!(json_str(&r.json, "body"), "trailers\n");
    assert_eq!(
        json_str(r.get("trailers"), "x-trailer-one"),
        "1",
        "{}",
        r.explain()
    );
    assert_eq!(json_str(r.get("trailers"), "x-trailer-two"), "2");
}

#[test]
fn fifty_mib_upload_over_h2_digest_matches() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let dir = TempDir::new("h2-upload");
    let file = dir.join("upload.bin");
    let data = pattern(FIFTY_MIB);
    std::fs::write(&file, &data).unwrap();
    let at = format!("@{}", file.display());
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "--max-time",
        "120",
        "--data-binary",
        &at,
        "-w",
        "\n%{http_code} %{http_version}",
        &rw.url("/sha256"),
    ]);
    assert_eq!(out, format!("{}\n200 2", sha256_hex(&data)));
    assert_eq!(u.last_request().unwrap().body_len, FIFTY_MIB as u64);
}

#[test]
fn fifty_mib_download_over_h2_from_h1_upstream_digest_matches() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let out = curl(&[
        "--http2-prior-knowledge",
        "--max-time",
        "120",
        &rw.url(&format!("/bytes/{FIFTY_MIB}")),
    ]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), FIFTY_MIB);
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&pattern(FIFTY_MIB)));
}

#[test]
fn fifty_mib_download_h2_to_h2_digest_matches() {
    let n = NginxH2::start(FIFTY_MIB);
    let rw = Ringway::start(
        &ConfigBuilder::single(&[n.port])
            .h2_cluster("backend")
            .render(),
    );
    let out = curl(&[
        "--http2-prior-knowledge",
        "--max-time",
        "120",
        &rw.url("/big"),
    ]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), FIFTY_MIB);
    assert_eq!(sha256_hex(&out.stdout), n.big_sha256);
}

#[test]
fn codec_type_http2_forces_h2() {
    let u = TestUpstream::start();
    let rw = Ringway::start(
        &ConfigBuilder::single(&[u.port])
            .codec_type("HTTP2")
            .render(),
    );
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &rw.url("/"),
    ]);
    assert_eq!(out, format!("{}\n\n2", u.id()));
    // An HTTP/1.1 request on an HTTP2-only listener is not answered as HTTP/1.1.
    let h1 = RawConn::connect(rw.listen_port).and_then(|mut c| {
        c.timeout = Duration::from_secs(5);
        c.send(b"GET /h1 HTTP/1.1\r\nHost: x\r\n\r\n")?;
        c.read_response()
    });
    assert!(
        h1.is_err(),
        "an HTTP/1.1 request got an HTTP/1.1 answer: {h1:?}"
    );
    assert!(
        u.log().iter().all(|r| r.path != "/h1"),
        "the HTTP/1.1 request reached the upstream"
    );
    rw.wait_stat("http.ingress_http.downstream_cx_http2_total", 2);
}

#[test]
fn codec_type_auto_serves_both_on_one_port() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).codec_type("AUTO").render());
    assert_eq!(
        curl_ok(&["-w", "%{http_version}", "-o", "/dev/null", &rw.url("/")]),
        "1.1"
    );
    assert_eq!(
        curl_ok(&[
            "--http2-prior-knowledge",
            "-w",
            "%{http_version}",
            "-o",
            "/dev/null",
            &rw.url("/")
        ]),
        "2"
    );
    rw.wait_stat("http.ingress_http.downstream_cx_http2_total", 1);
    rw.wait_stat("http.ingress_http.downstream_cx_http1_total", 1);
}

#[test]
fn http2_protocol_options_are_advertised() {
    let u = TestUpstream::start();
    let port = |rw: &Ringway| rw.listen_port.to_string();
    // SETTINGS ids: 3 = MAX_CONCURRENT_STREAMS, 4 = INITIAL_WINDOW_SIZE.
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let r = run_ok("h2_request.py", &["--port", &port(&rw)]);
    let s = r.get("server_settings");
    assert_eq!(
        s.get("3"),
        Some(&Value::from(100)),
        "default max_concurrent_streams: {}",
        r.explain()
    );
    assert_eq!(
        s.get("4"),
        Some(&Value::from(65536)),
        "default initial_stream_window_size: {}",
        r.explain()
    );
    drop(rw);
    let rw = Ringway::start(
        &ConfigBuilder::single(&[u.port])
            .http2_protocol_options(7, 131072, 2 * 1024 * 1024)
            .render(),
    );
    let r = run_ok("h2_request.py", &["--port", &port(&rw)]);
    let s = r.get("server_settings");
    assert_eq!(s.get("3"), Some(&Value::from(7)), "{}", r.explain());
    assert_eq!(s.get("4"), Some(&Value::from(131072)), "{}", r.explain());
    assert_eq!(r.get("status"), &Value::from(200));
}

#[test]
fn h2_requests_are_access_logged_in_envoys_format() {
    let u = TestUpstream::start();
    let dir = TempDir::new("h2-access-log");
    let path = dir.join("access.log");
    let cfg = ConfigBuilder::single(&[u.port]).access_log(&path.display().to_string());
    let rw = Ringway::start(&cfg.render());
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "-A",
        "h2-test/1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &rw.url("/logged"),
    ]);
    assert_eq!(out, "200");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let _ = wait_until(Duration::from_secs(5), || {
        (read().lines().count() >= 1).then_some(())
    });
    let text = read();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no access-log line"));
    let a = support::formats::parse_access_line(line)
        .unwrap_or_else(|e| panic!("not Envoy's default format ({e}):\n{line}"));
    assert_eq!(
        (
            a.method.as_str(),
            a.path.as_str(),
            a.protocol.as_str(),
            a.code
        ),
        ("GET", "/logged", "HTTP/2", 200),
        "{line}"
    );
    assert_eq!(a.user_agent, "h2-test/1", "{line}");
    assert_eq!(a.request_id.len(), 36, "generated x-request-id: {line}");
    assert_eq!(a.upstream_host, format!("127.0.0.1:{}", u.port), "{line}");
    assert_eq!(a.bytes_sent, format!("{}\n", u.id()).len() as u64, "{line}");
}
