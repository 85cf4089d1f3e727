//! gRPC-shaped local replies: how Envoy answers a gRPC client when the proxy itself replies.
//!
//! A gRPC client only understands `grpc-status`, so a bare HTTP 503 or 404 from the proxy
//! surfaces as an opaque transport error. Envoy instead answers HTTP 200 with the HTTP status
//! mapped to a gRPC code (its `Grpc::Utility::httpToGrpcStatus`) and the reply text in
//! `grpc-message`, as a trailers-only response. Ringway does the same.

/// The gRPC status code for a local reply with HTTP `status`, and the `grpc-message` value for
/// reply text `body` (percent-encoded as the gRPC wire format requires).
pub fn local_reply_status(status: u16, body: &[u8]) -> (u32, String) {
    let code = match status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    };
    let text: &[u8] = if body.is_empty() {
        crate::http1::encode::reason_phrase(status).as_bytes()
    } else {
        body
    };
    (code, percent_encode(text))
}

/// gRPC's `Percent-Encoded` grammar: printable ASCII except `%` passes, everything else is
/// `%XX`.
fn percent_encode(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_mapping() {
        assert_eq!(local_reply_status(404, b"").0, 12);
        assert_eq!(local_reply_status(503, b"no healthy upstream").0, 14);
        assert_eq!(local_reply_status(504, b"upstream request timeout").0, 14);
        assert_eq!(local_reply_status(429, b"").0, 14);
        assert_eq!(local_reply_status(403, b"").0, 7);
        assert_eq!(local_reply_status(401, b"").0, 16);
        assert_eq!(local_reply_status(400, b"").0, 13);
        assert_eq!(local_reply_status(500, b"").0, 2);
    }

    #[test]
    fn message_is_percent_encoded() {
        let (_, m) = local_reply_status(503, "50% down\n\u{e9}".as_bytes());
        assert_eq!(m, "50%25 down%0A%C3%A9");
        let (_, m) = local_reply_status(404, b"");
        assert_eq!(m, "Not Found");
    }
}
