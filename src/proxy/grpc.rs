//! gRPC-shaped local replies, shared by the HTTP/1.1 and HTTP/2 codecs.
//!
//! A gRPC client cannot read a `text/plain` 503: it needs HTTP 200 with `grpc-status` (and
//! `grpc-message`) to surface a proper error. Envoy therefore answers its own local replies
//! (no route, no healthy upstream, timeout, ...) to gRPC requests as a trailers-only response:
//! `:status 200`, `content-type: application/grpc`, `grpc-status` mapped from the HTTP status it
//! would have sent (`Grpc::Utility::httpToGrpcStatus`, which follows gRPC's
//! http-grpc-status-mapping), and the local reply's body text as a percent-encoded
//! `grpc-message`. This module holds only that mapping and the header values, no I/O, so both
//! codecs build the same reply.

/// gRPC status codes used by the mapping (gRPC's `status.proto` numbering).
pub mod code {
    pub const UNKNOWN: u32 = 2;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Whether a request is gRPC: its `content-type` starts with `application/grpc` (which also
/// covers `application/grpc+proto` and friends), as Envoy's `hasGrpcContentType` decides.
pub fn is_grpc_content_type(content_type: Option<&[u8]>) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    let Some(v) = content_type else { return false };
    if v.len() < PREFIX.len() || !v[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    // `application/grpc-web` is a different protocol; only the bare type, `+suffix` or
    // parameters count.
    matches!(v.get(PREFIX.len()), None | Some(b'+' | b';'))
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub fn http_to_grpc_status(http_status: u16) -> u32 {
    match http_status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// The headers of a gRPC-shaped local reply, besides `:status 200` (HTTP/2) or the `200` status
/// line (HTTP/1.1) and the codec's own framing: `content-type`, `grpc-status` and, when the
/// message is not empty, `grpc-message`. Appended to `out` as owned name/value pairs so either
/// codec can write them; names are lowercase.
pub fn local_reply_headers(
    http_status: u16,
    message: &[u8],
    out: &mut Vec<(&'static str, Vec<u8>)>,
) {
    out.push(("content-type", b"application/grpc".to_vec()));
    out.push((
        "grpc-status",
        http_to_grpc_status(http_status).to_string().into_bytes(),
    ));
    // As Envoy: no grpc-message when the reply has no text (no route).
    if !message.is_empty() {
        let mut m = Vec::with_capacity(message.len());
        percent_encode(message, &mut m);
        out.push(("grpc-message", m));
    }
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%` itself, become `%XX`.
pub fn percent_encode(msg: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in msg {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_http_to_grpc_mapping() {
        let cases = [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (408, 2),
            (413, 2),
        ];
        for (http, grpc) in cases {
            assert_eq!(http_to_grpc_status(http), grpc, "HTTP {http}");
        }
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc_content_type(Some(b"application/grpc")));
        assert!(is_grpc_content_type(Some(b"application/grpc+proto")));
        assert!(is_grpc_content_type(Some(b"Application/GRPC;charset=x")));
        assert!(!is_grpc_content_type(Some(b"application/grpc-web")));
        assert!(!is_grpc_content_type(Some(b"application/json")));
        assert!(!is_grpc_content_type(Some(b"application/grp")));
        assert!(!is_grpc_content_type(None));
    }

    #[test]
    fn reply_headers_and_message_encoding() {
        let mut h = Vec::new();
        local_reply_headers(503, b"no healthy upstream", &mut h);
        assert_eq!(
            h,
            [
                ("content-type", b"application/grpc".to_vec()),
                ("grpc-status", b"14".to_vec()),
                ("grpc-message", b"no healthy upstream".to_vec()),
            ]
        );
        h.clear();
        local_reply_headers(404, b"", &mut h);
        assert_eq!(h.len(), 2, "no grpc-message for an empty body, as Envoy");
        assert_eq!(h[1], ("grpc-status", b"12".to_vec()));
        let mut m = Vec::new();
        percent_encode("50% \u{e9}\n".as_bytes(), &mut m);
        assert_eq!(m, b"50%25 %C3%A9%0A");
    }
}
