//! Process lifecycle: `--mode validate`, draining on SIGTERM, and POST /quitquitquit.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn validate_accepts_a_good_config() {
    let cfg = ConfigBuilder::new()
        .cluster("service1", &[free_port(), free_port()])
        .cluster("service2", &[free_port()])
        .route(Route::prefix("/service/1", "service1").timeout("2s").retry(
            "5xx,connect-failure,reset",
            2,
            Some("0.5s"),
        ))
        .route(Route::prefix("/service/2", "service2"))
        .access_log("/dev/null")
        .render();
    let out = Ringway::validate(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "validate rejected a good config:\nstdout: {stdout}\nstderr: {stderr}\n{cfg}"
    );
    assert!(stdout.contains("configuration OK"), "stdout: {stdout}");
}

#[test]
fn validate_rejects_a_bad_config_naming_the_field() {
    let cfg = ConfigBuilder::single(&[free_port()])
        .render()
        .replace("lb_policy: ROUND_ROBIN", "lb_policy: NOT_A_POLICY");
    let out = Ringway::validate(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate accepted lb_policy NOT_A_POLICY; stderr: {stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("error: static_resources.clusters[0].lb_policy")),
        "no error line naming static_resources.clusters[0].lb_policy; stderr:\n{stderr}"
    );
}

#[test]
fn sigterm_drains_in_flight_request_then_exits_zero() {
    let u = TestUpstream::start();
    let mut rw = Ringway::start_with_args(
        &ConfigBuilder::single(&[u.port]).render(),
        &["--drain-time-s", "5"],
    );
    let port = rw.listen_port;
    let slow = std::thread::spawn(move || http_get(port, "/delay/1500"));
    // Wait until the slow request is at the upstream, then ask ringway to stop.
    assert!(
        wait_until(Duration::from_secs(5), || (u.requests() >= 1).then_some(())).is_some(),
        "the slow request never reached the upstream"
    );
    let t = Instant::now();
    rw.signal("TERM");
    // While draining, /ready says 503 so load balancers stop sending traffic.
    let ready = wait_until(Duration::from_millis(1000), || {
        match rw.try_admin_get("/ready") {
            Ok((503, _)) => Some(503),
            _ => None,
        }
    });
    assert_eq!(
        ready,
        Some(503),
        "/ready did not turn 503 within 1 s of SIGTERM"
    );
    let r = slow.join().unwrap();
    assert_eq!(
        r.status, 200,
        "the in-flight request did not complete during the drain: {r:?}"
    );
    let status = rw.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some(),
        "ringway still running {:?} after SIGTERM with --drain-time-s 5",
        t.elapsed()
    );
    assert_eq!(status.unwrap().code(), Some(0), "exit status after SIGTERM");
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "exit took {:?}, drain time is 5 s",
        t.elapsed()
    );
}

#[test]
fn sigterm_when_idle_exits_promptly() {
    let u = TestUpstream::start();
    let mut rw = Ringway::start_with_args(
        &ConfigBuilder::single(&[u.port]).render(),
        &["--drain-time-s", "30"],
    );
    assert_eq!(http_get(rw.listen_port, "/").status, 200);
    rw.signal("TERM");
    // Nothing is in flight, so the drain ends at once: well inside the 30 s drain time.
    let status = rw
        .wait_exit(Duration::from_secs(3))
        .expect("ringway idle but still running 3 s after SIGTERM (drain time 30 s)");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn quitquitquit_exits_zero() {
    let u = TestUpstream::start();
    let mut rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let (code, _) = rw.admin_post("/quitquitquit");
    assert_eq!(code, 200);
    let status = rw
        .wait_exit(Duration::from_secs(10))
        .expect("ringway did not exit after POST /quitquitquit");
    assert_eq!(status.code(), Some(0));
}
