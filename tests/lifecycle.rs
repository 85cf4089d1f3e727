//! Process lifecycle: `--mode validate`, draining on SIGTERM (and HTTP/2's two-step GOAWAY), and
//! POST /quitquitquit.

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

/// Envoy's HTTP/2 drain: a shutdown notice (GOAWAY with the last stream id 2^31-1) when the
/// drain starts, `drain_timeout` of grace in which a stream that raced the notice is still
/// served, then the final GOAWAY naming the last stream processed; the stream in flight
/// through all of it completes.
#[test]
fn http2_drain_sends_a_notice_then_the_final_goaway_after_drain_timeout() {
    let u = TestUpstream::start();
    let cfg = ConfigBuilder::single(&[u.port]).hcm_extra("drain_timeout: 2s");
    let mut rw = Ringway::start_with_args(&cfg.render(), &["--drain-time-s", "10"]);
    let run = py::run_ok(
        "h2_drain.py",
        &[
            "--port",
            &rw.listen_port.to_string(),
            "--pid",
            &rw.pid().to_string(),
        ],
    );
    let goaways = run.get("goaways").as_array().cloned().unwrap_or_default();
    let last_id = |g: &serde_json::Value| g.get("last_stream_id").and_then(|v| v.as_u64());
    let at = |g: &serde_json::Value| g.get("at_s").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let (Some(first), Some(last)) = (goaways.first(), goaways.last()) else {
        panic!("no GOAWAY during the drain: {}", run.explain());
    };
    assert_eq!(last_id(first), Some((1 << 31) - 1), "{}", run.explain());
    assert_eq!(
        first.get("error").and_then(|v| v.as_str()),
        Some("NO_ERROR")
    );
    assert_eq!(
        last_id(last),
        Some(3),
        "the final GOAWAY: {}",
        run.explain()
    );
    let grace = at(last) - at(first);
    assert!(
        (1.5..4.0).contains(&grace),
        "final GOAWAY {grace:.2} s after the notice, drain_timeout is 2 s: {}",
        run.explain()
    );
    let status = run.get("status");
    assert_eq!(
        status.get("3").and_then(|v| v.as_u64()),
        Some(200),
        "the stream that raced the notice: {}",
        run.explain()
    );
    assert_eq!(
        status.get("1").and_then(|v| v.as_u64()),
        Some(200),
        "the stream in flight through the drain: {}",
        run.explain()
    );
    let exited = rw.wait_exit(Duration::from_secs(10));
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "exit after the drain"
    );
}

/// `POST /drain_listeners` drains as Envoy's does: the listener stops taking connections, a
/// keep-alive connection gets `Connection: close`, /ready says 503, and the process stays up
/// (admin answering) until it is asked to stop.
#[test]
fn drain_listeners_stops_accepting_but_keeps_the_process_up() {
    let u = TestUpstream::start();
    let mut rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut kept = RawConn::open(rw.listen_port);
    kept.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(kept.read_response().unwrap().status, 200);
    assert_eq!(rw.admin_post("/drain_listeners").0, 200);
    let refused = wait_until(Duration::from_secs(3), || {
        let closed = match RawConn::connect(rw.listen_port) {
            Err(_) => true,
            Ok(mut c) => {
                c.timeout = Duration::from_secs(2);
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err() || c.read_response().is_err()
            }
        };
        closed.then_some(())
    });
    assert!(
        refused.is_some(),
        "the listener still serves new connections"
    );
    // The connection that was open is told to close with its next answer.
    kept.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = kept.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(rw.admin_get("/ready").0, 503);
    assert!(
        rw.wait_exit(Duration::from_millis(500)).is_none(),
        "drain_listeners must not stop the process"
    );
    rw.signal("TERM");
    let status = rw.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}
