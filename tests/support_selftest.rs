//! Tests of the test scaffolding itself, run without Ringway: the test upstream driven by curl and
//! by the raw client, nginx start/stop, the config builder and the output parsers. If these fail,
//! the proxy tests' verdicts cannot be trusted.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[test]
fn upstream_default_path_returns_id() {
    let u = TestUpstream::start_with_id("alpha");
    let r = http_get(u.port, "/anything");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "alpha\n");
    assert_eq!(r.header("x-upstream-id"), Some("alpha"));
    assert_eq!(u.requests(), 1);
    assert_eq!(u.log()[0].path, "/anything");
}

#[test]
fn upstream_paths_via_curl() {
    let u = TestUpstream::start();
    let base = format!("http://127.0.0.1:{}", u.port);

    // /bytes/N: exact deterministic bytes with Content-Length.
    let out = curl(&[
        "-D",
        "-",
        &format!("{base}/bytes/100000"),
        "-o",
        "/dev/null",
    ]);
    assert!(out.status.success());
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("content-length: 100000"), "{head}");
    let body = curl(&[&format!("{base}/bytes/100000")]).stdout;
    assert_eq!(body, pattern(100_000));

    // /chunked/N: same bytes, chunked.
    let out = curl(&[
        "-D",
        "-",
        &format!("{base}/chunked/50000"),
        "-o",
        "/dev/null",
    ]);
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(
        curl(&[&format!("{base}/chunked/50000")]).stdout,
        pattern(50_000)
    );

    // /status/CODE.
    let code = curl_ok(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/status/418"),
    ]);
    assert_eq!(code, "418");

    // /sha256 of an uploaded body, with Content-Length and chunked.
    let data = pattern(300_000);
    let want = sha256_hex(&data);
    let out = curl_with_stdin(
        &["--data-binary", "@-", &format!("{base}/sha256")],
        Some(data.clone()),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let out = curl_with_stdin(
        &[
            "-T",
            "-",
            "-H",
            "Transfer-Encoding: chunked",
            &format!("{base}/sha256"),
        ],
        Some(data.clone()),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let chunked_req = u.last_request().unwrap();
    assert_eq!(chunked_req.header("transfer-encoding"), Some("chunked"));
    assert_eq!(chunked_req.body_len, 300_000);

    // /echo with a chunked upload comes back chunked and equal.
    let out = curl_with_stdin(
        &[
            "-T",
            "-",
            "-H",
            "Transfer-Encoding: chunked",
            "-D",
            "/dev/stderr",
            &format!("{base}/echo"),
        ],
        Some(data.clone()),
    );
    assert_eq!(out.stdout, data);
    assert!(String::from_utf8_lossy(&out.stderr)
        .to_lowercase()
        .contains("transfer-encoding: chunked"));

    // /delay/MS sleeps.
    let t = std::time::Instant::now();
    curl_ok(&[&format!("{base}/delay/300")]);
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
}

#[test]
fn upstream_keep_alive_and_switches() {
    let u = TestUpstream::start();
    let url = format!("http://127.0.0.1:{}/", u.port);
    // Five URLs in one curl invocation share one connection.
    let out = curl_ok(&["-w", "\n%{http_code}\n", &url, &url, &url, &url, &url]);
    assert_eq!(out.lines().filter(|l| *l == "200").count(), 5, "{out}");
    assert_eq!(u.connections(), 1);
    assert_eq!(u.requests(), 5);

    u.fail_next(2);
    // curl's -o applies to one URL: one per URL.
    let out = curl_ok(&[
        "-w",
        "%{http_code}\n",
        "-o",
        "/dev/null",
        &url,
        "-o",
        "/dev/null",
        &url,
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(out, "503\n503\n200\n");

    u.fail_always();
    for _ in 0..3 {
        assert_eq!(http_get(u.port, "/").status, 503);
    }
    u.fail_next(0);
    assert_eq!(http_get(u.port, "/").status, 200);

    // Idle close: a connection left idle longer than the limit is closed by the upstream.
    u.idle_close_after(std::time::Duration::from_millis(100));
    let mut c = RawConn::open(u.port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    assert!(
        c.closed_within(std::time::Duration::from_secs(2)),
        "idle connection not closed"
    );
}

#[test]
fn raw_client_pipelining_head_and_close() {
    let u = TestUpstream::start();
    let mut c = RawConn::open(u.port);
    c.send(b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 201);
    let h = c.read_head_response().unwrap();
    assert_eq!(h.header("content-length"), Some("1000"));
    assert!(h.body.is_empty());
    let r = c.read_response().unwrap();
    assert_eq!(r.body, pattern(5));
    assert!(
        !c.closed_within(std::time::Duration::from_millis(100)),
        "keep-alive connection closed"
    );

    // HTTP/1.0 without keep-alive: the upstream closes.
    let mut c = RawConn::open(u.port);
    c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.version, 0);
    assert!(c.closed_within(std::time::Duration::from_secs(2)));

    // Chunked echo through the raw client, split at an awkward boundary.
    let body = pattern(70_000);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(support::chunked::encode(&body, 7_777));
    let mut c = RawConn::open(u.port);
    c.send_split(&req, 61, std::time::Duration::from_millis(5))
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, body);

    // Expect: 100-continue gets an interim response, then the final one.
    let mut c = RawConn::open(u.port);
    c.send(
        b"POST /sha256 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    assert_eq!(c.read_response_any(false).unwrap().status, 100);
    c.send(b"abc").unwrap();
    assert_eq!(c.read_response().unwrap().body_text(), sha256_hex(b"abc"));

    // /close and /garbage misbehave as intended.
    let mut c = RawConn::open(u.port);
    c.send(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(c.read_response().is_err());
    let mut c = RawConn::open(u.port);
    c.send(b"GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(c.read_response().is_err());
}

#[test]
fn nginx_starts_serves_and_stops() {
    let mut n = Nginx::start();
    let r = http_get(n.port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "nginx\n");
    let big = http_get(n.port, "/big");
    assert_eq!(big.body.len(), support::nginx::BIG_LEN);
    assert_eq!(sha256_hex(&big.body), n.big_sha256);
    assert!(n.is_running());
    let port = n.port;
    n.stop();
    assert!(
        support::wait_until(std::time::Duration::from_secs(2), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        })
        .is_some(),
        "nginx still listening after stop"
    );
}

#[test]
fn config_builder_renders_envoy_shape() {
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[1001, 1002])
        .cluster("service2", &[2001])
        .route(
            Route::prefix("/service/1", "service1")
                .timeout("0.5s")
                .retry("5xx,connect-failure,reset", 2, Some("0.2s")),
        )
        .route(
            Route::path("/exact", "service2")
                .header("x-k", "v")
                .prefix_rewrite("/"),
        )
        .route(Route::direct("/direct", 200, "hi"))
        .access_log("/tmp/x.log");
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&cfg.render()).unwrap();
    let hcm =
        &y["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["stat_prefix"].as_str(), Some("ingress_http"));
    let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
    assert_eq!(routes[0]["match"]["prefix"].as_str(), Some("/service/1"));
    assert_eq!(routes[0]["route"]["timeout"].as_str(), Some("0.5s"));
    assert_eq!(
        routes[0]["route"]["retry_policy"]["num_retries"].as_u64(),
        Some(2)
    );
    assert_eq!(routes[1]["match"]["path"].as_str(), Some("/exact"));
    assert_eq!(
        routes[1]["match"]["headers"][0]["string_match"]["exact"].as_str(),
        Some("v")
    );
    assert_eq!(routes[1]["route"]["prefix_rewrite"].as_str(), Some("/"));
    assert_eq!(routes[2]["direct_response"]["status"].as_u64(), Some(200));
    assert_eq!(
        hcm["access_log"][0]["typed_config"]["path"].as_str(),
        Some("/tmp/x.log")
    );
    assert_eq!(
        hcm["http_filters"][0]["name"].as_str(),
        Some("envoy.filters.http.router")
    );
    let c = &y["static_resources"]["clusters"][0];
    assert_eq!(c["lb_policy"].as_str(), Some("ROUND_ROBIN"));
    let eps = &c["load_assignment"]["endpoints"][0]["lb_endpoints"];
    assert_eq!(
        eps[1]["endpoint"]["address"]["socket_address"]["port_value"].as_u64(),
        Some(1002)
    );
    assert_eq!(
        y["admin"]["address"]["socket_address"]["port_value"].as_u64(),
        Some(u64::from(cfg.admin_port))
    );
}

#[test]
fn stats_text_parser_is_strict() {
    use support::formats::parse_stats_text;
    let m = parse_stats_text("cluster.a.upstream_rq_total: 30\nserver.live: 1\ncluster.a.upstream_rq_time: P0(nan,1) P25(nan,2)\n").unwrap();
    assert_eq!(m["cluster.a.upstream_rq_total"], 30);
    assert_eq!(m.len(), 2);
    assert!(parse_stats_text("cluster.a.x 30\n").is_err());
    assert!(parse_stats_text("a: 1\na: 2\n").is_err());
    assert!(parse_stats_text("a: -1\n").is_err());
}

#[test]
fn prometheus_parser_is_strict() {
    use support::formats::parse_prometheus;
    let good = "# TYPE envoy_cluster_upstream_rq_total counter\n\
                envoy_cluster_upstream_rq_total{envoy_cluster_name=\"service1\"} 30\n\
                # TYPE envoy_cluster_upstream_rq_time histogram\n\
                envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"s\",le=\"0.5\"} 1\n\
                envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"s\",le=\"+Inf\"} 2\n\
                envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"s\"} 3.5\n\
                envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"s\"} 2\n\
                envoy_server_live 1\n";
    let s = parse_prometheus(good).unwrap();
    assert_eq!(s[0].label("envoy_cluster_name"), Some("service1"));
    assert_eq!(s[0].value, 30.0);
    assert_eq!(s.len(), 6);
    for bad in [
        "x{a=\"1\"} \n",
        "x{a=1} 2\n",
        "1x 2\n",
        "x 1\n# TYPE x counter\n",
        "# TYPE x counter\n# TYPE x counter\n",
        "# TYPE x countr\n",
        "x{a=\"1\",a=\"2\"} 1\n",
        "x 1\nx 1\n",
        "x{a=\"1\"} 1 2 3\n",
        "# TYPE h histogram\nh_bucket{a=\"1\"} 1\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn access_log_parser_reads_envoy_default_format() {
    use support::formats::parse_access_line;
    let l = parse_access_line(
        "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 - 154 0 226 100 \"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \"locations\" \"10.0.2.1:80\"",
    )
    .unwrap();
    assert_eq!(l.code, 204);
    assert_eq!(l.path, "/api/v1/locations");
    assert_eq!(l.request_id.len(), 36);
    assert_eq!(l.upstream_host, "10.0.2.1:80");
    assert!(parse_access_line(
        "[2016-04-15 20:17:00] \"GET / HTTP/1.1\" 200 - 0 0 1 - \"-\" \"-\" \"-\" \"-\" \"-\""
    )
    .is_err());
    assert!(parse_access_line(
        "[2016-04-15T20:17:00.310Z] \"GET / HTTP/1.1\" 200 - 0 0 1 - \"-\" \"-\" \"-\" \"-\""
    )
    .is_err());
}

#[test]
fn ringway_start_failure_explains_itself() {
    // Until the proxy exists this documents the failure message; afterwards it checks that a
    // config ringway rejects makes `start` panic with the process's stderr rather than hang.
    let cfg = "static_resources: {listeners: [], clusters: []}\nadmin: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}\nbogus_field: 1\n";
    let t = std::time::Instant::now();
    let r = std::panic::catch_unwind(|| Ringway::start(cfg));
    assert!(
        r.is_err(),
        "ringway started on a config with an unknown top-level field"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(12));
}
