//! Downstream connection limits (`--max-connections`, Envoy's runtime keys
//! `overload.global_downstream_max_connections` and
//! `envoy.resource_limits.listener.<name>.connection_limit`) and the accept loop at the fd limit.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use support::raw::RawConn;
use support::*;

fn listener_stat(rw: &Ringway, stat: &str) -> String {
    format!("listener.127.0.0.1_{}.{stat}", rw.listen_port)
}

/// Opens `n` connections and waits until the proxy has accepted all of them.
fn open_idle(rw: &Ringway, n: u64) -> Vec<RawConn> {
    let conns = (0..n).map(|_| RawConn::open(rw.listen_port)).collect();
    rw.wait_stat(&listener_stat(rw, "downstream_cx_active"), n);
    conns
}

/// The limit's connections are held; the next ones are closed at once and counted; closing the
/// held ones lets new connections in again.
fn check_limit(rw: &Ringway, limit: u64, overflow_stat: &str) {
    let idle = open_idle(rw, limit);
    for i in 0..3 {
        let mut c = RawConn::open(rw.listen_port);
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "connection {} over the limit of {limit} was not closed",
            i + 1
        );
    }
    rw.wait_stat(&listener_stat(rw, overflow_stat), 3);
    assert_eq!(rw.stat(&listener_stat(rw, "downstream_cx_total")), limit);
    // A held connection still works (the others close as the vector is consumed).
    let mut first = idle.into_iter().next().unwrap();
    first
        .send(b"GET /held HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(first.read_response().unwrap().status, 200);
    drop(first);
    // Every held connection closed: their slots come back.
    rw.wait_stat(&listener_stat(rw, "downstream_cx_active"), 0);
    for i in 0..limit + 2 {
        assert_eq!(http_get(rw.listen_port, &format!("/again/{i}")).status, 200);
    }
    assert_eq!(rw.stat(&listener_stat(rw, overflow_stat)), 3);
}

#[test]
fn max_connections_flag_closes_and_counts_global_overflow() {
    let u = TestUpstream::start();
    let rw = Ringway::start_with_args(
        &ConfigBuilder::single(&[u.port]).render(),
        &["--concurrency", "1", "--max-connections", "4"],
    );
    check_limit(&rw, 4, "downstream_global_cx_overflow");
    assert_eq!(rw.stat(&listener_stat(&rw, "downstream_cx_overflow")), 0);
}

#[test]
fn runtime_keys_set_global_and_listener_limits() {
    let u = TestUpstream::start();
    let base = ConfigBuilder::single(&[u.port]).render();
    let global = format!(
        "{base}layered_runtime:\n  layers:\n  - name: static_layer_0\n    static_layer:\n      overload:\n        global_downstream_max_connections: 3\n"
    );
    let rw = Ringway::start_with_args(&global, &["--concurrency", "1"]);
    check_limit(&rw, 3, "downstream_global_cx_overflow");
    drop(rw);

    let per_listener = format!(
        "{base}layered_runtime:\n  layers:\n  - name: static_layer_0\n    static_layer:\n      envoy.resource_limits.listener.listener_0.connection_limit: 2\n"
    );
    let rw = Ringway::start_with_args(&per_listener, &["--concurrency", "1"]);
    check_limit(&rw, 2, "downstream_cx_overflow");
    assert_eq!(
        rw.stat(&listener_stat(&rw, "downstream_global_cx_overflow")),
        0
    );
}

#[test]
fn unsupported_runtime_key_is_an_error() {
    let yaml = format!(
        "{}layered_runtime:\n  layers:\n  - name: l\n    static_layer: {{re2.max_program_size.error_level: 100}}\n",
        ConfigBuilder::single(&[1]).render()
    );
    let out = Ringway::validate(&yaml);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("layered_runtime.layers[0].static_layer.re2.max_program_size.error_level: runtime key re2.max_program_size.error_level is not supported by Ringway"),
        "{text}"
    );
}

#[test]
fn accept_at_the_fd_limit_backs_off_and_logs_once_a_second() {
    let u = TestUpstream::start();
    let rw = Ringway::start_with_args(
        &ConfigBuilder::single(&[u.port]).render(),
        &["--concurrency", "1"],
    );
    let pid = rw.pid();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // Room for a few connections, then EMFILE on every accept.
    let limit = open_fds + 4;
    let st = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit failed");
    // Connections the kernel completes in the backlog but the worker cannot accept.
    let conns: Vec<RawConn> = (0..40).map(|_| RawConn::open(rw.listen_port)).collect();
    let start = Instant::now();
    let window = Duration::from_millis(3500);
    std::thread::sleep(window);
    let failures = rw
        .stderr_text()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    let elapsed = start.elapsed().as_secs() as usize;
    // One line when the failures start, then at most one a second.
    assert!(
        (1..=elapsed + 2).contains(&failures),
        "{failures} 'accept failed' lines in {elapsed} s:\n{}",
        rw.stderr_text()
    );
    // Failures between two lines are counted, not lost.
    let suppressed: Vec<u64> = rw
        .stderr_text()
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" more failure(s) not logged since the last report")?;
            before.rsplit_once('(')?.1.parse().ok()
        })
        .collect();
    assert!(
        suppressed.iter().any(|n| *n > 0),
        "no report counts suppressed failures ({suppressed:?}):\n{}",
        rw.stderr_text()
    );
    drop(conns);
}
