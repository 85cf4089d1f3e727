//! gRPC through the proxy: a grpcio client, Ringway (h2c listener, HTTP/2 cluster), a grpcio
//! server (tests/py/grpc_server.py). Unary, server/client/bidi streaming and a non-OK status must
//! pass with messages, status, details and trailing metadata intact; Ringway's own errors for a
//! gRPC request must be gRPC-shaped local replies like Envoy's: HTTP 200, content-type
//! application/grpc, grpc-status from the HTTP code (404 -> 12 UNIMPLEMENTED, 503 and 504 -> 14
//! UNAVAILABLE) and grpc-message. The raw mode of grpc_client.py checks that shape on the wire,
//! because grpcio alone would map a plain HTTP 404/503/504 to the same codes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use serde_json::Value;
use support::py::{run, run_ok, PyRun};
use support::*;

fn grpc_config(server_port: u16, route_timeout: Option<&str>) -> ConfigBuilder {
    let mut r = Route::prefix("/test.Echo/", "grpc");
    if let Some(t) = route_timeout {
        r = r.timeout(t);
    }
    ConfigBuilder::new()
        .cluster("grpc", &[server_port])
        .h2_cluster("grpc")
        .route(r)
}

fn target(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn raw(port: u16, path: &str, payload: &str) -> PyRun {
    run_ok(
        "grpc_client.py",
        &[
            "raw",
            "--target",
            &target(port),
            "--path",
            path,
            "--payload",
            payload,
        ],
    )
}

/// Header or trailer `name` of a raw result: a trailers-only response carries the status and
/// trailing metadata in its one header block.
fn meta<'a>(r: &'a PyRun, name: &str) -> Option<&'a str> {
    r.get("trailers")
        .get(name)
        .or_else(|| r.get("headers").get(name))
        .and_then(Value::as_str)
}

/// `with_message`: Envoy sends `grpc-message` only when its reply has text (not for no route).
fn assert_grpc_local_reply(r: &PyRun, grpc_status: u64, with_message: bool) {
    assert_eq!(
        r.get("http_status"),
        &Value::from(200),
        "HTTP 200 for a gRPC local reply: {}",
        r.explain()
    );
    assert_eq!(
        r.get("grpc_status"),
        &Value::from(grpc_status),
        "{}",
        r.explain()
    );
    assert_eq!(
        r.get("headers").get("content-type").and_then(Value::as_str),
        Some("application/grpc"),
        "{}",
        r.explain()
    );
    let msg = r.get("grpc_message").as_str().unwrap_or("");
    assert_eq!(
        !msg.is_empty(),
        with_message,
        "grpc-message: {}",
        r.explain()
    );
}

#[test]
fn grpc_suite_direct_proves_the_harness() {
    let server = PyProcess::grpc_server();
    let r = run(
        "grpc_client.py",
        &["suite", "--target", &target(server.port)],
    );
    assert!(r.status.success(), "{}", r.explain());
    assert_eq!(r.get("ok"), &Value::Bool(true), "{}", r.explain());
}

#[test]
fn grpc_suite_through_ringway() {
    let server = PyProcess::grpc_server();
    let rw = Ringway::start(&grpc_config(server.port, None).render());
    let r = run(
        "grpc_client.py",
        &["suite", "--target", &target(rw.listen_port)],
    );
    assert!(r.status.success(), "{}", r.explain());
    assert_eq!(r.get("ok"), &Value::Bool(true), "{}", r.explain());
    assert!(rw.stat("cluster.grpc.upstream_cx_http2_total") >= 1);
    assert!(rw.stat("http.ingress_http.downstream_cx_http2_total") >= 1);
}

#[test]
fn grpc_status_and_trailers_pass_through_on_the_wire() {
    let server = PyProcess::grpc_server();
    let rw = Ringway::start(&grpc_config(server.port, None).render());
    let ok = raw(rw.listen_port, "/test.Echo/Unary", "abc");
    assert_eq!(ok.get("http_status"), &Value::from(200), "{}", ok.explain());
    assert_eq!(ok.get("messages"), &serde_json::json!(["abc"]));
    assert_eq!(ok.get("trailers_only"), &Value::Bool(false));
    assert_eq!(
        ok.get("trailers")
            .get("grpc-status")
            .and_then(Value::as_str),
        Some("0"),
        "{}",
        ok.explain()
    );
    assert_eq!(
        ok.get("trailers")
            .get("x-echo-trailer")
            .and_then(Value::as_str),
        Some("3")
    );
    assert_eq!(
        ok.get("headers")
            .get("x-echo-initial")
            .and_then(Value::as_str),
        Some("yes")
    );

    let fail = raw(rw.listen_port, "/test.Echo/Fail", "gizmo");
    assert_eq!(
        fail.get("http_status"),
        &Value::from(200),
        "{}",
        fail.explain()
    );
    assert_eq!(
        fail.get("grpc_status"),
        &Value::from(5),
        "NOT_FOUND: {}",
        fail.explain()
    );
    assert_eq!(
        fail.get("grpc_message"),
        &Value::from("no such thing: gizmo")
    );
    assert_eq!(
        meta(&fail, "x-fail-reason"),
        Some("deliberate"),
        "{}",
        fail.explain()
    );
}

#[test]
fn grpc_non_ok_status_via_grpcio() {
    let server = PyProcess::grpc_server();
    let rw = Ringway::start(&grpc_config(server.port, None).render());
    let r = run_ok(
        "grpc_client.py",
        &[
            "call",
            "--target",
            &target(rw.listen_port),
            "--method",
            "/test.Echo/Fail",
            "--payload",
            "w",
        ],
    );
    assert_eq!(r.get("code"), &Value::from("NOT_FOUND"), "{}", r.explain());
    assert_eq!(r.get("details"), &Value::from("no such thing: w"));
    assert_eq!(
        r.get("trailing_metadata").get("x-fail-reason"),
        Some(&Value::from("deliberate"))
    );
}

#[test]
fn grpc_no_route_is_unimplemented() {
    let server = PyProcess::grpc_server();
    let rw = Ringway::start(&grpc_config(server.port, None).render());
    let r = raw(rw.listen_port, "/other.Service/Method", "x");
    assert_grpc_local_reply(&r, 12, false);
    let c = run_ok(
        "grpc_client.py",
        &[
            "call",
            "--target",
            &target(rw.listen_port),
            "--method",
            "/other.Service/Method",
        ],
    );
    assert_eq!(
        c.get("code"),
        &Value::from("UNIMPLEMENTED"),
        "{}",
        c.explain()
    );
}

#[test]
fn grpc_unreachable_upstream_is_unavailable() {
    let closed = free_port(); // nothing listens here
    let rw = Ringway::start(&grpc_config(closed, None).render());
    let r = raw(rw.listen_port, "/test.Echo/Unary", "x");
    assert_grpc_local_reply(&r, 14, true);
    let c = run_ok(
        "grpc_client.py",
        &[
            "call",
            "--target",
            &target(rw.listen_port),
            "--method",
            "/test.Echo/Unary",
        ],
    );
    assert_eq!(
        c.get("code"),
        &Value::from("UNAVAILABLE"),
        "{}",
        c.explain()
    );
}

#[test]
fn grpc_upstream_timeout_is_unavailable() {
    let server = PyProcess::grpc_server();
    let rw = Ringway::start(&grpc_config(server.port, Some("0.5s")).render());
    let r = raw(rw.listen_port, "/test.Echo/Sleep", "3000");
    assert_grpc_local_reply(&r, 14, true);
    let msg = r.get("grpc_message").as_str().unwrap_or("");
    assert!(msg.contains("timeout"), "grpc-message: {msg}");
    rw.wait_stat("cluster.grpc.upstream_rq_timeout", 1);
    // A call that finishes in time still works on the same route.
    let ok = raw(rw.listen_port, "/test.Echo/Sleep", "10");
    assert_eq!(ok.get("grpc_status"), &Value::from(0), "{}", ok.explain());
}
