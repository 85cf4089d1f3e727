//! The admin listener: /ready, /stats counters that equal the requests sent, /stats/prometheus in
//! a strictly valid exposition format, /clusters, /server_info, and the access log file.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::formats::{parse_access_line, parse_prometheus};
use support::*;

#[test]
fn ready_and_server_info() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let (code, body) = rw.admin_get("/ready");
    assert_eq!((code, body.trim()), (200, "LIVE"), "/ready");
    let (code, body) = rw.admin_get("/server_info");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/server_info is not JSON ({e}): {body}"));
    assert!(v.is_object(), "/server_info is not a JSON object: {body}");
}

#[test]
fn stats_count_every_request() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[u.port]).stat_prefix("ingress_http");
    let rw = Ringway::start(&cfg.render());
    const N: u64 = 30;
    for i in 0..N {
        assert_eq!(http_get(rw.listen_port, &format!("/n/{i}")).status, 200);
    }
    rw.wait_stat("http.ingress_http.downstream_rq_total", N);
    rw.wait_stat("cluster.backend.upstream_rq_total", N);
    rw.wait_stat("cluster.backend.upstream_rq_200", N);
    let cx = rw.stat("cluster.backend.upstream_cx_total");
    assert!(
        (1..=N).contains(&cx),
        "cluster.backend.upstream_cx_total = {cx}"
    );
    assert_eq!(u.requests(), N);

    // Other status classes land in their own counters.
    assert_eq!(http_get(rw.listen_port, "/status/503").status, 503);
    rw.wait_stat("cluster.backend.upstream_rq_503", 1);
    rw.wait_stat("cluster.backend.upstream_rq_total", N + 1);
}

#[test]
fn prometheus_output_parses_and_matches_stats() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[u.port])
        .route(Route::prefix("/", "service1"));
    let rw = Ringway::start(&cfg.render());
    for _ in 0..12 {
        assert_eq!(http_get(rw.listen_port, "/").status, 200);
    }
    rw.wait_stat("cluster.service1.upstream_rq_total", 12);
    let (code, body) = rw.admin_get("/stats/prometheus");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&body)
        .unwrap_or_else(|e| panic!("/stats/prometheus does not parse: {e}\n{body}"));
    let total = samples
        .iter()
        .find(|s| {
            s.name == "envoy_cluster_upstream_rq_total"
                && s.label("envoy_cluster_name") == Some("service1")
        })
        .unwrap_or_else(|| {
            panic!(
                "no envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"service1\"}} in:\n{body}"
            )
        });
    assert_eq!(total.value, 12.0);
}

#[test]
fn clusters_lists_endpoints() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[u.port])
        .route(Route::prefix("/", "service1"));
    let rw = Ringway::start(&cfg.render());
    let (code, body) = rw.admin_get("/clusters");
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!("service1::127.0.0.1:{}", u.port)),
        "/clusters does not list service1's endpoint in Envoy's `cluster::host:port::...` form:\n{body}"
    );
}

#[test]
fn access_log_has_one_envoy_format_line_per_request() {
    let u = TestUpstream::start();
    let dir = TempDir::new("access-log");
    let path = dir.join("access.log");
    let cfg = ConfigBuilder::single(&[u.port]).access_log(&path.display().to_string());
    let rw = Ringway::start(&cfg.render());
    for i in 0..5 {
        let out = curl_ok(&[
            "-A",
            "ringway-test/1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &rw.url(&format!("/log/{i}")),
        ]);
        assert_eq!(out, "200");
    }
    assert_eq!(http_get(rw.listen_port, "/status/404").status, 404);
    // Lines are flushed from per-worker buffers without blocking: give them a moment.
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let _ = wait_until(Duration::from_secs(5), || {
        (read().lines().count() >= 6).then_some(())
    });
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "expected 6 access-log lines in {}:\n{text}",
        path.display()
    );
    let mut paths = Vec::new();
    for l in &lines {
        let a = parse_access_line(l).unwrap_or_else(|e| {
            panic!("access-log line not in Envoy's default format ({e}):\n{l}")
        });
        assert_eq!(a.method, "GET");
        assert_eq!(a.protocol, "HTTP/1.1");
        assert_eq!(a.request_id.len(), 36, "{l}");
        assert_eq!(a.upstream_host, format!("127.0.0.1:{}", u.port), "{l}");
        if a.path.starts_with("/log/") {
            assert_eq!(
                (a.code, a.user_agent.as_str(), a.flags.as_str()),
                (200, "ringway-test/1", "-"),
                "{l}"
            );
            assert_eq!(
                a.bytes_sent,
                format!("{}\n", u.id()).len() as u64,
                "%BYTES_SENT% is the body size: {l}"
            );
        } else {
            assert_eq!(a.code, 404, "{l}");
        }
        paths.push(a.path);
    }
    paths.sort();
    assert_eq!(
        paths,
        [
            "/log/0",
            "/log/1",
            "/log/2",
            "/log/3",
            "/log/4",
            "/status/404"
        ]
    );
}

/// A client trickling its request a byte every 3 s holds one admin connection, not the admin:
/// `/ready` and `/stats` answer at once meanwhile, and the trickler is cut off (408) by the
/// whole-request deadline (10 s) although no single read waits long.
#[test]
fn trickling_admin_client_neither_blocks_others_nor_outlives_the_deadline() {
    use std::io::{Read, Write};
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let started = std::time::Instant::now();
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", rw.admin_port)).unwrap();
    let trickle = std::thread::spawn({
        let mut w = slow.try_clone().unwrap();
        move || {
            for b in b"GET /stats HTTP/1.1\r\nhost: admin\r\n\r\n" {
                if w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    for path in ["/ready", "/stats", "/ready", "/stats?filter=server.live"] {
        let t = std::time::Instant::now();
        let (code, _) = rw.admin_get(path);
        assert_eq!(code, 200, "{path}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path} took {:?} while a client trickled",
            t.elapsed()
        );
    }
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    let cut_after = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "trickler got: {answer:?}"
    );
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(15)).contains(&cut_after),
        "trickler cut off after {cut_after:?}"
    );
    let _ = trickle.join();
}

/// Envoy's loop statistics: with `enable_dispatcher_stats` each worker's loop duration and poll
/// delay histograms fill (in microseconds, as their names say) in `/stats` and Prometheus;
/// without it they are absent. The watchdog counters are always there.
#[test]
fn dispatcher_stats_show_each_workers_loop_when_enabled() {
    let u = TestUpstream::start();
    let yaml = ConfigBuilder::single(&[u.port]).render();
    let rw = Ringway::start(&format!("enable_dispatcher_stats: true\n{yaml}"));
    // The probe samples every 10 ms; workers hand histograms to the admin once a second.
    let names = [
        "listener_manager.worker_0.dispatcher.loop_duration_us",
        "listener_manager.worker_1.dispatcher.loop_duration_us",
        "listener_manager.worker_0.dispatcher.poll_delay_us",
        "listener_manager.worker_1.dispatcher.poll_delay_us",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, body) = rw.admin_get("/stats");
        assert_eq!(code, 200);
        let filled = names
            .iter()
            .all(|n| body.lines().any(|l| l.starts_with(&format!("{n}: P0("))));
        if filled {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "loop histograms never filled:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for counter in [
        "workers.watchdog_miss",
        "workers.watchdog_mega_miss",
        "server.worker_1.watchdog_miss",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{counter}: "))),
            "no {counter} in:\n{text}"
        );
    }
    let (_, prom) = rw.admin_get("/stats/prometheus");
    let samples =
        parse_prometheus(&prom).unwrap_or_else(|e| panic!("prometheus does not parse: {e}"));
    let count = samples
        .iter()
        .find(|s| {
            s.name == "envoy_listener_manager_dispatcher_loop_duration_us_count"
                && s.label("envoy_worker_id") == Some("1")
        })
        .unwrap_or_else(|| panic!("no loop_duration_us count for worker 1:\n{prom}"));
    assert!(count.value >= 1.0, "{prom}");

    drop(rw);
    let off = Ringway::start(&yaml);
    let (_, body) = off.admin_get("/stats");
    assert!(!body.contains("dispatcher."), "{body}");
    assert!(body.contains("workers.watchdog_miss: "), "{body}");
}

/// Envoy's phase operators attribute a slow request: an upload trickled over ~400 ms, then an
/// upstream that thinks for 300 ms, shows in `%REQUEST_DURATION%` (request fully received) and
/// `%RESPONSE_DURATION%` (first upstream byte) on HTTP/1.1 and HTTP/2; the remainder is
/// `%RESPONSE_TX_DURATION%`.
#[test]
fn access_log_phase_durations_attribute_the_time() {
    let u = TestUpstream::start();
    let dir = TempDir::new("access-log-phases");
    let path = dir.join("phases.log");
    let cfg = ConfigBuilder::single(&[u.port]).hcm_extra(&format!(
        "access_log:\n- name: envoy.access_loggers.file\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n    path: {}\n    log_format:\n      text_format_source:\n        inline_string: \"%PROTOCOL% %RESPONSE_CODE% %REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% %DURATION%\\n\"\n",
        path.display()
    ));
    let rw = Ringway::start(&cfg.render());
    // HTTP/1.1: a POST whose body arrives in pieces over ~400 ms (`-T -` streams the pipe),
    // to an upstream path that waits 300 ms before answering.
    let slow_upload = format!(
        "(printf a; sleep 0.2; printf b; sleep 0.2; printf c) | curl -s -o /dev/null -w '%{{http_code}}' -X POST -T - {}",
        rw.url("/delay/300")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &slow_upload])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // HTTP/2 (prior knowledge), same upstream wait, no body.
    let out = curl_ok(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &rw.url("/delay/300"),
    ]);
    assert_eq!(out, "200");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let _ = wait_until(Duration::from_secs(5), || {
        (read().lines().count() >= 2).then_some(())
    });
    let text = read();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let ms = |v: &str| -> u64 {
        v.parse()
            .unwrap_or_else(|_| panic!("not a number: {v} in {text}"))
    };
    let h1 = rows
        .iter()
        .find(|r| r[0] == "HTTP/1.1")
        .unwrap_or_else(|| panic!("{text}"));
    let (req, resp, tx, total) = (ms(h1[2]), ms(h1[3]), ms(h1[4]), ms(h1[5]));
    // The head arrives once curl has started (the first piece may already be in the pipe), so
    // of the ~400 ms trickle at least the last 200 ms come after it.
    assert!(req >= 200, "the upload trickled for ~400 ms: {text}");
    assert!(
        resp >= req + 250,
        "the upstream thought 300 ms after the body: {text}"
    );
    assert!(tx <= 50 && resp + tx <= total + 1, "{text}");
    let h2 = rows
        .iter()
        .find(|r| r[0] == "HTTP/2")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(ms(h2[2]) < 100 && ms(h2[3]) >= 280, "{text}");
}
