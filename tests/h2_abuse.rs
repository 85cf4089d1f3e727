//! HTTP/2 abuse against Ringway's downstream h2 (tests/py/h2_abuse.py), one attack per test:
//! rapid reset, CONTINUATION flood, PING and SETTINGS floods, zero-window slow read, header-list
//! and HPACK bombs, and malformed requests (no :path, host differing from :authority, padded
//! header values). For each: the attacking connection is closed, sent GOAWAY or has its stream
//! refused; Ringway's RSS stays bounded; a malformed request never reaches the upstream; and a
//! second client on the same (only) worker keeps getting answers throughout
//! (tests/py/h2_liveness.py, zero failures).
//!
//! `scripts_against_nginx` runs the scripts against nginx `listen http2`, whose reactions are
//! known, to show the scripts detect what they claim to.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::py::{run, run_ok, vm_rss_kib, PyRun};
use support::*;

/// RSS growth allowed during one attack. The zero-window case would need ~400 MiB to buffer
/// what it asks for; the floods, unbounded, grow by tens of MiB in a few seconds.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;

struct Target {
    upstream: TestUpstream,
    rw: Ringway,
}

fn target() -> Target {
    let upstream = TestUpstream::start();
    // No route timeout: the zero-window test holds responses open on purpose, and on a slow
    // (debug, shared-core) build the 400 MiB drain can outlast Envoy's 15 s default.
    let config = ConfigBuilder::new()
        .cluster("backend", &[upstream.port])
        .route(Route::prefix("/", "backend").timeout("0s"))
        .render();
    let rw = Ringway::start_with_args(&config, &["--concurrency", "1"]);
    Target { upstream, rw }
}

/// Runs one attack with a liveness client alongside; checks liveness, that Ringway survived
/// and its RSS; returns the attack's result for mode-specific checks.
fn attack(t: &Target, mode: &str, extra: &[&str]) -> PyRun {
    let port = t.rw.listen_port.to_string();
    let pid = t.rw.pid().to_string();
    let live = PyProcess::background(
        "h2_liveness.py",
        &[
            "--port",
            &port,
            "--path",
            "/live",
            "--request-timeout",
            "10",
        ],
    );
    // The attack starts only once the other client has had an answer: some attacks are cut off
    // within milliseconds, sooner than a Python client starts.
    assert!(
        wait_until(Duration::from_secs(15), || live
            .stderr_text()
            .contains("first-ok")
            .then_some(()))
        .is_some(),
        "{mode}: the liveness client never got a first answer: {}",
        live.stderr_text()
    );
    let growth = MAX_RSS_GROWTH_KIB.to_string();
    let mut args = vec![
        mode,
        "--port",
        &port,
        "--pid",
        &pid,
        "--followup-path",
        "/followup",
        "--max-rss-growth-kib",
        &growth,
    ];
    args.extend_from_slice(extra);
    let r = run("h2_abuse.py", &args);
    let l = live.finish();
    assert!(
        r.status.success() && !r.json.is_null(),
        "{mode}: the attack did not run: {}",
        r.explain()
    );
    let settings = r.get("server_settings");
    assert!(
        settings.as_object().is_some_and(|m| !m.is_empty()),
        "{mode}: the server never sent its SETTINGS (not speaking HTTP/2), so nothing was tested: {}",
        r.explain()
    );
    assert!(
        l.status.success(),
        "{mode}: the other client on the same worker failed during the attack: {}\nattack: {}",
        l.explain(),
        r.explain()
    );
    assert_eq!(l.get("failures"), &Value::from(0), "{}", l.explain());
    assert!(
        l.get("successes").as_u64().unwrap_or(0) > 0,
        "{}",
        l.explain()
    );
    assert_eq!(
        r.get("pid_alive"),
        &Value::Bool(true),
        "ringway died: {}",
        r.explain()
    );
    let (code, _) = t.rw.admin_get("/ready");
    assert_eq!(code, 200);
    let g = r.get("rss_growth_kib").as_u64().unwrap_or(0);
    assert!(
        g <= MAX_RSS_GROWTH_KIB,
        "{mode}: ringway RSS grew by {g} KiB: {}",
        r.explain()
    );
    assert!(vm_rss_kib(t.rw.pid()).is_some());
    r
}

fn assert_defended(r: &PyRun) {
    assert_eq!(r.get("defended"), &Value::Bool(true), "{}", r.explain());
}

/// Ringway's own defence fired (its stat), not only the h2 crate's: the test fails with the
/// rule switched off.
fn assert_our_rule_fired(t: &Target, stats: &[&str], r: &PyRun) {
    let all = t.rw.stats();
    let fired: u64 = stats
        .iter()
        .map(|s| {
            all.get(&format!("http.ingress_http.{s}"))
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        fired >= 1,
        "none of Ringway's counters {stats:?} moved: its own defence did not fire\n{}",
        r.explain()
    );
}

const FLOOD_STATS: [&str; 3] = [
    "http2.outbound_control_flood",
    "http2.inbound_empty_frames_flood",
    "http2.inbound_continuation_frames_flood",
];

/// No request other than the liveness probe and follow-ups reached the upstream.
fn assert_only_benign_reached(t: &Target, r: &PyRun) {
    let bad: Vec<_> = t
        .upstream
        .log()
        .into_iter()
        .filter(|q| q.path != "/live" && q.path != "/followup")
        .map(|q| (q.path, q.headers))
        .collect();
    assert!(
        bad.is_empty(),
        "refused requests reached the upstream: {bad:?}\n{}",
        r.explain()
    );
}

#[test]
fn rapid_reset_is_stopped() {
    let t = target();
    let r = attack(
        &t,
        "rapid_reset",
        &["--streams", "5000", "--path", "/reset"],
    );
    assert!(
        !r.get("goaway").is_null() || r.get("closed") == &Value::Bool(true),
        "5000 open-then-reset streams and the connection lives on: {}",
        r.explain()
    );
    let reached = t
        .upstream
        .log()
        .iter()
        .filter(|q| q.path == "/reset")
        .count();
    assert!(reached < 5000, "every reset stream was still proxied");
    assert_our_rule_fired(&t, &["downstream_rq_too_many_premature_resets"], &r);
}

#[test]
fn continuation_flood_is_cut_off() {
    let t = target();
    let r = attack(&t, "continuation", &["--path", "/cont"]);
    assert_defended(&r);
    // FrameGuard's limit equals the one h2 derives from the 16 KiB header list size, and the
    // guard sees each frame first, so the rule that cuts this off is ours, and counted.
    assert_our_rule_fired(&t, &FLOOD_STATS, &r);
    let sent = r.get("continuation_bytes").as_u64().unwrap_or(0);
    assert!(
        sent < 64 << 20,
        "took the whole 64 MiB flood: {}",
        r.explain()
    );
    assert_only_benign_reached(&t, &r);
}

#[test]
fn empty_continuation_flood_is_cut_off() {
    let t = target();
    let r = attack(&t, "continuation", &["--empty", "--path", "/cont"]);
    assert_defended(&r);
    assert_our_rule_fired(&t, &FLOOD_STATS, &r);
    assert_only_benign_reached(&t, &r);
}

#[test]
fn ping_flood_is_bounded() {
    let t = target();
    let r = attack(&t, "ping_flood", &[]);
    assert_defended(&r);
    assert_our_rule_fired(&t, &["http2.outbound_control_flood"], &r);
}

#[test]
fn settings_flood_is_bounded() {
    let t = target();
    let r = attack(&t, "settings_flood", &[]);
    assert_defended(&r);
    assert_our_rule_fired(&t, &["http2.outbound_control_flood"], &r);
}

#[test]
fn zero_window_reader_is_not_buffered_unboundedly() {
    let t = target();
    let r = attack(
        &t,
        "zero_window",
        &["--streams", "20", "--path", "/bytes/4194304", "--hold", "3"],
    );
    assert_eq!(
        r.get("data_during_hold"),
        &Value::from(0),
        "DATA beyond a zero window: {}",
        r.explain()
    );
    let hold_growth = r
        .get("rss_hold")
        .get("rss_growth_kib")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    assert!(
        hold_growth <= MAX_RSS_GROWTH_KIB,
        "RSS grew {hold_growth} KiB while the client read nothing: {}",
        r.explain()
    );
    assert_eq!(
        r.get("drain_complete"),
        &Value::Bool(true),
        "once the window opened every response arrived whole: {}",
        r.explain()
    );
    assert_eq!(r.get("drain_bytes"), &Value::from(20u64 * 4194304));
}

#[test]
fn header_list_bomb_is_refused() {
    let t = target();
    let r = attack(&t, "header_bomb", &["--size", "262144", "--path", "/bomb"]);
    assert_defended(&r);
    assert_ne!(r.get("stream_status"), &Value::from(200));
    assert_only_benign_reached(&t, &r);
}

#[test]
fn hpack_bomb_is_refused() {
    let t = target();
    let r = attack(&t, "hpack_bomb", &["--path", "/hpack"]);
    assert_defended(&r);
    assert_only_benign_reached(&t, &r);
}

#[test]
fn request_without_path_is_refused() {
    let t = target();
    let r = attack(&t, "missing_path", &[]);
    assert_defended(&r);
    assert_only_benign_reached(&t, &r);
}

#[test]
fn host_differing_from_authority_is_refused() {
    let t = target();
    let r = attack(&t, "host_mismatch", &["--path", "/mismatch"]);
    assert_defended(&r);
    assert_only_benign_reached(&t, &r);
}

#[test]
fn padded_header_value_is_refused() {
    let t = target();
    let r = attack(&t, "header_ws", &["--path", "/padded"]);
    assert_defended(&r);
    assert_only_benign_reached(&t, &r);
}

/// nginx 1.22 `listen http2` as the reference: what it does for each attack is known (see the
/// notes in tests/py/README.md), so the scripts must report exactly that.
#[test]
fn scripts_against_nginx() {
    let n = NginxH2::start(4 * 1024 * 1024);
    let port = n.port.to_string();
    let pid = n.pid().to_string();
    let go = |mode: &str, extra: &[&str]| -> PyRun {
        let mut args = vec![mode, "--port", &port, "--pid", &pid];
        args.extend_from_slice(extra);
        run_ok("h2_abuse.py", &args)
    };
    let goaway = |r: &PyRun| {
        r.get("goaway")
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
    };

    let r = go("continuation", &[]);
    assert_eq!(
        goaway(&r).as_deref(),
        Some("ENHANCE_YOUR_CALM"),
        "{}",
        r.explain()
    );
    assert_defended(&r);
    let r = go("hpack_bomb", &[]);
    assert_eq!(
        goaway(&r).as_deref(),
        Some("ENHANCE_YOUR_CALM"),
        "{}",
        r.explain()
    );
    let r = go("header_bomb", &[]);
    assert_eq!(
        goaway(&r).as_deref(),
        Some("ENHANCE_YOUR_CALM"),
        "{}",
        r.explain()
    );
    for mode in ["missing_path", "host_mismatch"] {
        let r = go(mode, &[]);
        assert_eq!(
            r.get("stream_status"),
            &Value::from(400),
            "{mode}: {}",
            r.explain()
        );
        assert_eq!(
            r.get("followup_status"),
            &Value::from(200),
            "{mode}: {}",
            r.explain()
        );
    }
    // nginx accepts padded header values: the script must say "not defended", not guess.
    let r = go("header_ws", &[]);
    assert_eq!(r.get("stream_status"), &Value::from(200), "{}", r.explain());
    assert_eq!(r.get("defended"), &Value::Bool(false));
    let r = go("ping_flood", &[]);
    assert_defended(&r);
    let r = go(
        "zero_window",
        &["--path", "/big", "--streams", "4", "--hold", "1"],
    );
    assert_eq!(
        r.get("data_during_hold"),
        &Value::from(0),
        "{}",
        r.explain()
    );
    assert_eq!(
        r.get("drain_complete"),
        &Value::Bool(true),
        "{}",
        r.explain()
    );
    assert_eq!(r.get("drain_bytes"), &Value::from(4u64 * 4 * 1024 * 1024));
    assert_defended(&r);
}
