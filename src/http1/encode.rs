//! Serialisation of HTTP/1.1 heads and chunked framing into a caller-owned output buffer.
//!
//! Everything appends to a reused `Vec<u8>` and never allocates on its own (numbers are formatted
//! on the stack), so writing a response head costs only the copy into the outgoing buffer.

use super::parse::Version;

/// The RFC 9110 reason phrase for `status` (plus the registered extras in common use); "" when the
/// code is not registered, which is allowed (the reason phrase is optional).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// `HTTP/1.1 200 OK\r\n` (the space before the reason is kept when the reason is empty, as the
/// status-line grammar requires).
pub fn write_status_line(out: &mut Vec<u8>, version: Version, status: u16) {
    out.extend_from_slice(match version {
        Version::Http10 => b"HTTP/1.0 ",
        Version::Http11 => b"HTTP/1.1 ",
    });
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `name: value\r\n`
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decimal without allocating.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Lowercase hexadecimal without allocating (chunk sizes).
pub fn write_hex(out: &mut Vec<u8>, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The size line of a chunk of `len` bytes: `{hex}\r\n`.
pub fn write_chunk_size(out: &mut Vec<u8>, len: u64) {
    write_hex(out, len);
    out.extend_from_slice(b"\r\n");
}

/// One chunk: size line, data, CRLF (nothing for empty data).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        // An empty chunk would be the last-chunk and end the body early.
        return;
    }
    out.reserve(data.len() + 20);
    write_chunk_size(out, data.len() as u64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `0\r\n\r\n`
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the usual de-facto ones): never forwarded.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(503), "Service Unavailable");
        assert_eq!(reason_phrase(299), "");
        assert_eq!(reason_phrase(0), "");
    }

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        write_status_line(&mut out, Version::Http11, 200);
        write_status_line(&mut out, Version::Http10, 599);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nHTTP/1.0 599 \r\n");
    }

    #[test]
    fn headers_and_numbers() {
        let mut out = Vec::new();
        write_header(&mut out, b"content-length", b"5");
        assert_eq!(out, b"content-length: 5\r\n");
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            let mut out = Vec::new();
            write_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, &[b'x'; 26]);
        write_last_chunk(&mut out);
        let mut want = b"1a\r\n".to_vec();
        want.extend_from_slice(&[b'x'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn hop_by_hop() {
        for n in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "UPGRADE",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in [
            "content-length",
            "host",
            "proxy-authenticate",
            "trailers",
            "x-upgrade",
        ] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }
}
