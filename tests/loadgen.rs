//! End-to-end tests of `ringway-loadgen` as a process: the upstream fleet with its control
//! endpoint, the graceful churn driver against a fake admin API that records every POST, the
//! JSON and SVG reports, and the demo (which must shout when its churn actions fail).
//!
//! The binary is `$LOADGEN_BIN`, else `target/<profile>/ringway-loadgen` built on demand with
//! `cargo build -p ringway-loadgen` (this package's tests cannot name another package's binary).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use support::fleet::{http, loadgen, FleetProc};
use support::{free_port, ConfigBuilder, Ringway, TempDir, TestUpstream};

/// (method, path, body) of each request the fake admin received.
type AdminLog = Arc<Mutex<Vec<(String, String, String)>>>;

/// Fake Ringway admin: records (method, path, body) of every request and answers 200.
fn fake_admin() -> (u16, AdminLog) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            // Read head and Content-Length body.
            let (head, body) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                }
            };
            let mut first = head.split_whitespace();
            let (m, p) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            log2.lock()
                .unwrap()
                .push((m.to_string(), p.to_string(), body));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    });
    (port, log)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn graceful_churn_posts_membership_changes_and_reports_them() {
    let dir = TempDir::new("loadgen-churn");
    // Four churned endpoints and a fifth, never churned, that the load targets directly.
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let control = free_port();
    let _fleet = FleetProc::start(&ports, control);
    let (admin, log) = fake_admin();
    let churned: Vec<String> = ports[..4].iter().map(u16::to_string).collect();
    let (json, svg) = (dir.join("run.json"), dir.join("run.svg"));
    let out = Command::new(loadgen())
        .args([
            "--rate",
            "400",
            "--duration",
            "3s",
            "--warmup",
            "200ms",
            "-c",
            "4",
        ])
        .args(["--churn-every", "500ms", "--churn-mode", "graceful"])
        .args(["--churn-drain", "100ms", "--churn-cluster", "fleet"])
        .args(["--churn-ports", &churned.join(",")])
        .args(["--admin", &format!("http://127.0.0.1:{admin}")])
        .args(["--fleet-control", &format!("http://127.0.0.1:{control}")])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&svg)
        .arg(format!("http://127.0.0.1:{}/", ports[4]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phase split"), "{}", text(&out));

    // The admin saw removes and adds of churned endpoints, each endpoint alternating
    // remove/add, and every endpoint added back by the end.
    let posts = log.lock().unwrap().clone();
    assert!(posts.len() >= 6, "{posts:?}");
    let mut down = std::collections::BTreeSet::new();
    for (m, p, body) in &posts {
        assert_eq!(
            (m.as_str(), p.as_str()),
            ("POST", "/clusters/fleet/endpoints")
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let (verb, eps) = v.as_object().unwrap().iter().next().unwrap();
        let ep = eps[0].as_str().unwrap().to_string();
        assert!(
            churned.iter().any(|c| ep == format!("127.0.0.1:{c}")),
            "{ep}"
        );
        match verb.as_str() {
            "remove" => assert!(down.insert(ep), "{posts:?}"),
            "add" => assert!(down.remove(&ep), "{posts:?}"),
            other => panic!("unexpected verb {other}"),
        }
        assert!(down.len() <= 2, "more than half down: {posts:?}");
    }
    assert!(down.is_empty(), "{posts:?}");
    // The fleet is whole again.
    let (_, status) = http(control, "GET", "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["ports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["up"] == true));

    // JSON: series per second, every action with its time, zero errors with every kind shown.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["series"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["errors"]["total"], 0, "{j}");
    for k in ["connect", "reset", "timeout", "protocol", "status_5xx"] {
        assert_eq!(j["errors"][k], 0, "{k}: {j}");
    }
    assert_eq!(j["errors"]["status"]["503"], 0);
    let events = j["churn"]["events"].as_array().unwrap();
    assert_eq!(j["churn"]["failed_actions"], 0);
    // remove -> (drain) -> stop for each take-down.
    let first_remove = &events[0];
    assert_eq!(first_remove["action"], "remove");
    assert_eq!(events[1]["action"], "stop");
    assert_eq!(events[1]["endpoint"], first_remove["endpoint"]);
    let gap = events[1]["t_s"].as_f64().unwrap() - first_remove["t_s"].as_f64().unwrap();
    assert!(gap >= 0.099, "drain not respected: {gap}");
    assert!(first_remove["t_s"].as_f64().unwrap() >= 0.49);
    assert!(
        j["phases"]["steady"]["completed"].as_u64().unwrap() > 0,
        "{j}"
    );
    assert!(
        j["phases"]["churn"]["completed"].as_u64().unwrap() > 0,
        "{j}"
    );
    let total = j["phases"]["steady"]["completed"].as_u64().unwrap()
        + j["phases"]["churn"]["completed"].as_u64().unwrap();
    assert_eq!(total, j["completed"].as_u64().unwrap());

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(
        chart
            .matches("stroke-dasharray=\"5,3\" stroke-opacity")
            .count()
            >= 6
    );
}

#[test]
fn demo_runs_ringway_and_is_loud_about_failed_churn() {
    let dir = TempDir::new("loadgen-demo");
    let json = dir.join("demo.json");
    let out = Command::new(loadgen())
        .env("RINGWAY_BIN", support::ringway::binary())
        .args([
            "demo",
            "--duration",
            "3s",
            "--rate",
            "300",
            "--churn-every",
            "1s",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(dir.join("demo.html"))
        .output()
        .unwrap();
    let all = text(&out);
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON ({e}): {all}")),
    )
    .unwrap();
    assert!(j["completed"].as_u64().unwrap() > 0, "{all}");
    assert!(j["churn"]["actions"].as_u64().unwrap() >= 4, "{all}");
    let failed = j["churn"]["failed_actions"].as_u64().unwrap();
    // Either the proxy has the membership API and graceful churn lost nothing, or it does not
    // and the demo says so loudly with a distinct exit status: never a quiet half-result.
    if failed == 0 {
        assert!(out.status.success(), "{all}");
        assert_eq!(
            j["errors"]["total"], 0,
            "graceful churn failed requests: {all}"
        );
    } else {
        assert_eq!(out.status.code(), Some(3), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("DEMO CHURN FAILED"), "{all}");
        assert!(stderr.contains("CHURN ACTION FAILED"), "{all}");
    }
    let page = std::fs::read_to_string(dir.join("demo.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("phase split"));
}

/// Run the load against `url` with `extra` options, 200 req/s for 2 s over 2 connections; returns
/// the process output and its JSON report.
fn load_run(extra: &[&str], url: &str) -> (Output, serde_json::Value) {
    load_run_at("200", "2", extra, url)
}

/// `load_run` at `rate` req/s over `connections` connections.
fn load_run_at(
    rate: &str,
    connections: &str,
    extra: &[&str],
    url: &str,
) -> (Output, serde_json::Value) {
    let dir = TempDir::new("loadgen-proto");
    let json = dir.join("out.json");
    let out = Command::new(loadgen())
        .args(["--rate", rate, "--duration", "2s", "--warmup", "0s"])
        .args(["-c", connections, "--timeout", "5s"])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .arg(url)
        .output()
        .unwrap();
    let j = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (out, j)
}

/// Every one of the 400 scheduled requests got a 2xx over `protocol`.
fn assert_all_ok(out: &Output, j: &serde_json::Value, protocol: &str) {
    assert!(out.status.success(), "{}", text(out));
    assert_eq!(j["protocol"], protocol, "{}", text(out));
    assert_eq!(j["sent"], 400, "{}", text(out));
    assert_eq!(j["completed"], 400, "{}", text(out));
    assert_eq!(j["errors"]["total"], 0, "{}", text(out));
}

#[test]
fn h2c_against_nginx_http2_listener() {
    use support::nginx_h2::NginxH2;
    // nginx `listen ... http2` without ssl speaks only h2c with prior knowledge: an HTTP/1.1
    // request there fails, so 2xx responses prove the load really went over HTTP/2.
    let nginx = NginxH2::start(16);
    let url = format!("h2c://127.0.0.1:{}/", nginx.port);
    let (out, j) = load_run(&["--streams", "4", "--progress"], &url);
    assert_all_ok(&out, &j, "h2c");
    // The live progress line went to stderr, overwritten in place.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains('\r') && stderr.contains("p99(1s)") && stderr.contains("/2s"),
        "{}",
        text(&out)
    );
    // nginx ends an h2 connection with GOAWAY (NO_ERROR) after 1000 requests (its
    // http2_max_requests): 3000 requests on one connection cross that twice, and requests the
    // server refused unprocessed are retried on the new connection rather than counted as resets.
    let (out, j) = load_run_at("1500", "1", &["--streams", "8"], &url);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(j["completed"], 3000, "{}", text(&out));
    assert_eq!(j["errors"]["total"], 0, "{}", text(&out));
    // --http2 with http:// is the same thing (here with Poisson arrivals).
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let (out, j) = load_run(&["--http2", "--poisson", "--quiet"], &url);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("p99(1s)"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(j["protocol"], "h2c", "{}", text(&out));
    assert_eq!(j["errors"]["total"], 0, "{}", text(&out));
    assert!(j["completed"].as_u64().unwrap() > 300, "{}", text(&out));
    // Control: HTTP/1.1 to the same port fails.
    let (_, j) = load_run(&[], &url);
    assert_eq!(j["protocol"], "http/1.1");
    assert_eq!(j["completed"], 0, "{j}");
    assert!(j["errors"]["total"].as_u64().unwrap() > 0, "{j}");
}

#[test]
fn tls_h1_and_h2_against_nginx() {
    use support::nginx_h2::NginxH2;
    let nginx = NginxH2::start_with_tls(16);
    let port = nginx.tls_port.expect("nginx TLS port");
    let url = format!("https://localhost:{port}/");
    // HTTP/1.1 over TLS 1.3 (the default), ALPN http/1.1.
    let (out, j) = load_run(&["--insecure"], &url);
    assert_all_ok(&out, &j, "http/1.1+tls");
    // h2 over TLS, ALPN h2 (the client refuses a connection where the server did not pick h2).
    let (out, j) = load_run(&["--insecure", "--http2", "--streams", "3"], &url);
    assert_all_ok(&out, &j, "h2+tls");
    // A new connection per request (the server closes after each response): with resumption on
    // (the default) the reconnects resume, with --no-resumption every handshake is full; both
    // on TLS 1.3 and on TLS 1.2.
    for version in ["1.3", "1.2"] {
        let args = [
            "--insecure",
            "--tls-version",
            version,
            "-H",
            "Connection: close",
        ];
        let (out, j) = load_run(&args, &url);
        assert_all_ok(&out, &j, "http/1.1+tls");
        let resumed = j["tls_handshakes"]["resumed"].as_u64().unwrap();
        assert!(resumed >= 300, "TLS {version}: {}", text(&out));
        let mut args = args.to_vec();
        args.push("--no-resumption");
        let (out, j) = load_run(&args, &url);
        assert_all_ok(&out, &j, "http/1.1+tls");
        assert_eq!(j["tls_handshakes"]["resumed"], 0, "{}", text(&out));
        assert!(
            j["tls_handshakes"]["full"].as_u64().unwrap() >= 400,
            "{}",
            text(&out)
        );
    }
    // Verification is on unless --insecure: nginx's self-signed certificate is refused.
    let (out, j) = load_run(&[], &url);
    assert_eq!(j["completed"], 0, "{}", text(&out));
    assert!(
        j["errors"]["connect"].as_u64().unwrap() > 0,
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS handshake failed"),
        "{}",
        text(&out)
    );
}

/// `--loop-stats`: the load generator scrapes Ringway's worker loop lag (published with
/// `enable_dispatcher_stats`) once a second and reports one point per second of the run, in
/// the JSON and on the chart; without dispatcher stats there is nothing to difference, so no
/// point is invented.
#[test]
fn loop_stats_overlay_the_proxys_loop_lag() {
    let u = TestUpstream::start();
    let yaml = ConfigBuilder::single(&[u.port]).render();
    let rw = Ringway::start(&format!("enable_dispatcher_stats: true\n{yaml}"));
    let admin = format!("http://127.0.0.1:{}", rw.admin_port);
    let dir = TempDir::new("loop-stats");
    let report = dir.join("run.svg");
    let report_arg = report.display().to_string();
    let (out, j) = load_run_at(
        "200",
        "2",
        &["--loop-stats", &admin, "--report", &report_arg],
        &rw.url("/"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let points = j["loop_lag"]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!points.is_empty(), "no loop-lag point: {}", j["loop_lag"]);
    for p in &points {
        assert!(p["samples"].as_u64().unwrap_or(0) > 0, "{p}");
        assert!(p["p99_ms"].is_number() || p["p99_ms"].is_null(), "{p}");
    }
    assert!(
        text(&out).contains("proxy loop lag (poll_delay_us"),
        "{}",
        text(&out)
    );
    let svg = std::fs::read_to_string(&report).unwrap();
    assert!(svg.contains("loop lag p99"), "no overlay on the chart");
    drop(rw);

    let rw = Ringway::start(&yaml);
    let admin = format!("http://127.0.0.1:{}", rw.admin_port);
    let (out, j) = load_run(&["--loop-stats", &admin], &rw.url("/"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        j["loop_lag"]["points"],
        serde_json::json!([]),
        "{}",
        j["loop_lag"]
    );
}
