//! WebSocket through Ringway with real clients and origins: Python's `websockets` (an RFC 6455
//! implementation) on both ends, plus raw-byte requests for the cases a library would not send.
//! Covers upgrade_configs on the connection manager and on a route only, Envoy's 403 for an
//! upgrade that is not enabled, an upstream that answers an Upgrade with a plain 200 (no tunnel),
//! `Upgrade: h2c` being stripped, and the tunnel ending when either side closes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// The interpreter Debian's `python3-websockets` installs into: the system one, which a pyenv
/// or venv `python3` earlier on PATH would not see.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The Python echo origin (tests/py/ws_echo_server.py), killed on drop.
struct WsOrigin {
    child: Child,
    port: u16,
}

impl WsOrigin {
    fn start() -> WsOrigin {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_echo_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "ws_echo_server.py did not report its port (got {line:?}); is python3-websockets installed? (tests/run installs it)"
                )
            });
        WsOrigin { child, port }
    }
}

impl Drop for WsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/py/ws_client.py and returns its JSON report.
fn ws_client(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_client.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "ws_client.py printed no JSON ({e}): stdout {text:?} stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const HCM_UPGRADE: &str = "          upgrade_configs: [{upgrade_type: websocket}]\n";

/// `/ws` → the Python origin (cluster `ws`), everything else → a TestUpstream (`backend`).
fn config(origin: u16, backend: u16) -> ConfigBuilder {
    ConfigBuilder::new()
        .cluster("ws", &[origin])
        .cluster("backend", &[backend])
        .route(Route::prefix("/ws", "ws"))
        .route(Route::prefix("/", "backend"))
}

/// The config with websocket enabled on the connection manager (`hcm`) and/or on the `/ws`
/// route only (`route`).
fn render(cfg: &ConfigBuilder, hcm: bool, route: bool) -> String {
    let mut y = cfg.render();
    if hcm {
        y = y.replacen(
            "          use_remote_address: true\n",
            &format!("          use_remote_address: true\n{HCM_UPGRADE}"),
            1,
        );
    }
    if route {
        let ws_route = "                route:\n                  cluster: \"ws\"\n";
        assert!(y.contains(ws_route), "{y}");
        y = y.replacen(
            ws_route,
            &format!(
                "{ws_route}                  upgrade_configs: [{{upgrade_type: websocket}}]\n"
            ),
            1,
        );
    }
    y
}

fn echo_through(rw: &Ringway) {
    let url = format!("ws://127.0.0.1:{}/ws/echo", rw.listen_port);
    let r = ws_client(&[&url, "echo", "12"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["echoed"], 12, "{r}");
    // Both connections of the tunnel are gone once the client closed.
    rw.wait_stat("cluster.ws.upstream_cx_active", 0);
    rw.wait_stat("http.ingress_http.downstream_rq_active", 0);
    assert_eq!(rw.stat("cluster.ws.upstream_rq_101"), 1);
}

#[test]
fn websocket_echo_with_upgrade_enabled_on_the_connection_manager() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start();
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, true, false));
    echo_through(&rw);
}

#[test]
fn websocket_echo_with_upgrade_enabled_on_the_route_only() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start();
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, false, true));
    echo_through(&rw);
    // The route enables it for /ws only: elsewhere the connection manager's (empty) list rules.
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /other HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(backend.requests(), 0);
}

#[test]
fn upgrade_not_enabled_is_refused_with_403_and_close() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start();
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, false, false));
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /ws/echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "connection kept open after 403"
    );
    // The Python client sees the refusal as a failed handshake.
    let url = format!("ws://127.0.0.1:{}/ws/echo", rw.listen_port);
    let r = ws_client(&[&url, "echo", "1"]);
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("403"), "{r}");
    assert_eq!(rw.stat("cluster.ws.upstream_rq_total"), 0);
}

#[test]
fn upstream_200_to_an_upgrade_is_a_normal_response_and_no_tunnel() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start_with_id("plain");
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, true, false));
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /plain HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "plain\n"),
        "{r:?}"
    );
    assert_eq!(r.header("upgrade"), None, "{r:?}");
    // The upstream was asked for the upgrade (it is enabled) and declined it.
    let seen = backend.last_request().unwrap();
    assert_eq!(seen.header("upgrade"), Some("websocket"), "{seen:?}");
    // Still HTTP on the same client connection.
    c.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "plain\n"),
        "{r:?}"
    );
    assert_eq!(backend.requests(), 2);
}

#[test]
fn h2c_upgrade_is_stripped_never_relayed() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start_with_id("h1");
    // Even with every upgrade type the test can name enabled, h2c is not one Ringway relays.
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, true, false));
    let mut c = RawConn::open(rw.listen_port);
    c.send(b"GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "h1\n"), "{r:?}");
    let seen = backend.last_request().unwrap();
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(
            seen.header(gone),
            None,
            "{gone} reached the upstream: {seen:?}"
        );
    }
}

#[test]
fn server_close_ends_the_tunnel() {
    let origin = WsOrigin::start();
    let backend = TestUpstream::start();
    let cfg = config(origin.port, backend.port);
    let rw = Ringway::start(&render(&cfg, true, false));
    let url = format!("ws://127.0.0.1:{}/ws/close", rw.listen_port);
    let r = ws_client(&[&url, "server-close"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["close_code"], 1000, "{r}");
    rw.wait_stat("cluster.ws.upstream_cx_active", 0);
    rw.wait_stat("http.ingress_http.downstream_rq_active", 0);
}
