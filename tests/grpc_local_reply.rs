//! Ringway's own local replies to gRPC requests are gRPC-shaped, as Envoy's are: HTTP 200 with
//! `content-type: application/grpc`, `grpc-status` mapped from the HTTP status the reply would
//! have had (404 → 12 UNIMPLEMENTED, 503/504 → 14 UNAVAILABLE) and the reply text as
//! `grpc-message`. Driven with curl over HTTP/1.1; a non-gRPC request still gets the plain reply.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use support::*;

/// `curl -i` with a gRPC content-type; returns (status, lowercased head, body).
fn grpc_post(port: u16, path: &str, content_type: &str) -> (u16, String, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let ct = format!("content-type: {content_type}");
    let out = curl_ok(&[
        "-i",
        "-X",
        "POST",
        "-H",
        &ct,
        "--data-binary",
        "grpc-frame",
        &url,
    ]);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn local_replies_to_grpc_requests_are_grpc_shaped() {
    let slow = TestUpstream::start();
    let cfg = ConfigBuilder::new()
        .cluster("empty", &[])
        .cluster("slow", &[slow.port])
        .route(Route::prefix("/empty.Service/", "empty"))
        .route(Route::prefix("/delay/", "slow").timeout("0.2s"));
    let rw = Ringway::start(&cfg.render());

    // No route: Envoy's 404 becomes UNIMPLEMENTED.
    let (status, head, body) = grpc_post(rw.listen_port, "/nope.Service/Call", "application/grpc");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("content-type: application/grpc\r\n"),
        "{head}"
    );
    assert!(head.contains("grpc-status: 12\r\n"), "{head}");
    assert!(!head.contains("grpc-message"), "{head}");
    assert!(head.contains("content-length: 0"), "{head}");
    assert_eq!(body, "");

    // No healthy upstream: 503 → UNAVAILABLE, with the reply text as grpc-message.
    let (status, head, _) = grpc_post(
        rw.listen_port,
        "/empty.Service/Call",
        "application/grpc+proto",
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("grpc-status: 14\r\n"), "{head}");
    assert!(
        head.contains("grpc-message: no healthy upstream\r\n"),
        "{head}"
    );

    // Upstream timeout: 504 → UNAVAILABLE (Envoy's router passes no gRPC status of its own).
    let (status, head, _) = grpc_post(rw.listen_port, "/delay/3000", "application/grpc");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("grpc-status: 14\r\n"), "{head}");
    assert!(
        head.contains("grpc-message: upstream request timeout\r\n"),
        "{head}"
    );

    // Not gRPC (gRPC-Web is its own protocol): the plain local reply.
    let (status, head, body) = grpc_post(
        rw.listen_port,
        "/empty.Service/Call",
        "application/grpc-web",
    );
    assert_eq!(status, 503, "{head}");
    assert!(!head.contains("grpc-status"), "{head}");
    assert_eq!(body, "no healthy upstream");
}
