//! Unit tests for `parse.rs`: one table per policy rule, plus the shared malformed-request vectors
//! fed at every byte boundary.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::http1::body::ChunkedDecoder;
use crate::http1::vectors::MALFORMED_REQUESTS;
use crate::http1::HeaderLookup;

fn req(bytes: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_request(bytes, &mut Vec::new(), &Limits::default())
}

fn ok(bytes: &[u8]) -> RequestHead {
    match req(bytes) {
        Ok(Some(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn resp(bytes: &[u8], method: Method) -> Result<Option<ResponseHead>, ResponseError> {
    parse_response(bytes, &mut Vec::new(), method, &Limits::default())
}

fn resp_ok(bytes: &[u8], method: Method) -> ResponseHead {
    match resp(bytes, method) {
        Ok(Some(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Incomplete,
    Status(u16),
    Accepted,
}

/// What a connection would do with `bytes`: parse the head, then frame the body (chunked bodies
/// through the decoder one byte at a time).
fn pipeline(bytes: &[u8], limits: &Limits) -> Outcome {
    let mut headers = Vec::new();
    let head = match parse_request(bytes, &mut headers, limits) {
        Ok(None) => return Outcome::Incomplete,
        Err(e) => return Outcome::Status(e.status()),
        Ok(Some(h)) => h,
    };
    let body = &bytes[head.head_len..];
    match head.framing {
        BodyFraming::Chunked => {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            for i in 0..body.len() {
                if d.is_done() {
                    break;
                }
                if d.feed(&body[i..=i], &mut out, true).is_err() {
                    return Outcome::Status(400);
                }
            }
            if d.is_done() {
                Outcome::Accepted
            } else {
                Outcome::Incomplete
            }
        }
        BodyFraming::Length(n) if (body.len() as u64) < n => Outcome::Incomplete,
        _ => Outcome::Accepted,
    }
}

#[test]
fn malformed_vectors_at_every_byte_boundary() {
    assert!(MALFORMED_REQUESTS.len() >= 30);
    let limits = Limits::default();
    for &(name, bytes, status) in MALFORMED_REQUESTS {
        assert_eq!(pipeline(bytes, &limits), Outcome::Status(status), "{name}");
        // The large vectors are probed densely at both ends and sparsely in between, to keep the
        // quadratic re-parse affordable in debug builds.
        let probes: Vec<usize> = if bytes.len() <= 2048 {
            (0..bytes.len()).collect()
        } else {
            (0..bytes.len())
                .filter(|&i| {
                    i < 600 || i + 600 > bytes.len() || i % 211 == 0 || (8180..8200).contains(&i)
                })
                .collect()
        };
        for cut in probes {
            let got = pipeline(&bytes[..cut], &limits);
            assert!(
                got == Outcome::Incomplete || got == Outcome::Status(status),
                "{name}: prefix of {cut} bytes gave {got:?}, want incomplete or {status}"
            );
        }
    }
}

#[test]
fn vector_names_are_unique() {
    let mut names: Vec<&str> = MALFORMED_REQUESTS.iter().map(|v| v.0).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), MALFORMED_REQUESTS.len());
}

#[test]
fn simple_get_and_spans() {
    let buf =
        b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Pad:   v a l \t\r\nEmpty:\r\n\r\nBODY";
    let mut headers = vec![HeaderSpan::default(); 3];
    let h = parse_request(buf, &mut headers, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.method_span.get(buf), b"GET");
    assert_eq!(h.target.get(buf), b"/a?b=1");
    assert_eq!(h.version, Version::Http11);
    assert_eq!(&buf[h.head_len..], b"BODY");
    assert_eq!(h.framing, BodyFraming::None);
    assert!(h.keep_alive);
    assert_eq!(h.host.unwrap().get(buf), b"example.com");
    assert_eq!(headers.len(), 3, "the reused Vec is cleared first");
    assert_eq!(headers[1].name.get(buf), b"X-Pad");
    assert_eq!(headers[1].value.get(buf), b"v a l", "OWS trimmed");
    assert_eq!(headers[2].value.get(buf), b"");
    let view = h.view(buf, &headers, b"http");
    assert_eq!(view.get(":path"), Some(&b"/a?b=1"[..]));
    assert_eq!(view.get(":authority"), Some(&b"example.com"[..]));
    assert_eq!(view.get("x-pad"), Some(&b"v a l"[..]));
}

#[test]
fn incomplete_heads_ask_for_more() {
    let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for cut in 0..full.len() {
        assert_eq!(req(&full[..cut]), Ok(None), "cut {cut}");
    }
    assert!(req(full).unwrap().is_some());
}

#[test]
fn leading_empty_line_is_skipped() {
    let buf = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.method_span.get(buf), b"GET");
    assert_eq!(h.head_len, buf.len());
}

#[test]
fn methods() {
    let table: &[(&[u8], Method)] = &[
        (b"GET", Method::Get),
        (b"HEAD", Method::Head),
        (b"POST", Method::Post),
        (b"PUT", Method::Put),
        (b"DELETE", Method::Delete),
        (b"OPTIONS", Method::Options),
        (b"PATCH", Method::Patch),
        (b"TRACE", Method::Trace),
        (b"PURGE", Method::Other),
        (b"get", Method::Other),
    ];
    for (m, want) in table {
        let mut buf = m.to_vec();
        buf.extend_from_slice(b" / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(ok(&buf).method, *want);
    }
    assert_eq!(
        req(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"),
        Err(RequestError::BadRequest("CONNECT not supported"))
    );
}

#[test]
fn targets() {
    let h = ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.method, Method::Options);
    assert_eq!(
        req(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(RequestError::BadRequest("asterisk-form only with OPTIONS"))
    );

    let buf = b"GET HTTP://Example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    let h = ok(buf);
    assert_eq!(
        h.host.unwrap().get(buf),
        b"Example.com:8080",
        "absolute-form: the URI authority wins"
    );
    let parts = target_parts(buf, h.target);
    assert_eq!(parts.scheme.unwrap().get(buf), b"HTTP");
    assert_eq!(parts.path.get(buf), b"/p?q");
    let headers = Vec::new();
    assert_eq!(h.view(buf, &headers, b"http").path, b"/p?q");

    // Absolute-form without a path; HTTP/1.0 without Host uses the authority.
    let buf = b"GET https://a.example HTTP/1.0\r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.host.unwrap().get(buf), b"a.example");
    assert_eq!(h.view(buf, &headers, b"https").path, b"/");
    let buf = b"GET http://a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(target_parts(buf, ok(buf).target).path.get(buf), b"?x=1");

    let bad: &[&[u8]] = &[
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a b/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
        b"GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for b in bad {
        assert_eq!(
            req(b).map_err(|e| e.status()),
            Err(400),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn versions() {
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    for v in [
        "HTTP/2.0",
        "HTTP/0.9",
        "HTTP/1.2",
        "HTTP/1.10",
        "HTTP/1",
        "http/1.1",
        "HTTP/1.1 ",
    ] {
        let buf = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(req(buf.as_bytes()).map_err(|e| e.status()), Err(400), "{v}");
    }
}

#[test]
fn request_line_limit_applies_before_crlf() {
    let limits = Limits {
        max_request_line: 20,
        ..Limits::default()
    };
    let mut h = Vec::new();
    // Exactly 20 bytes of request line is fine.
    let line = b"GET /23456 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(line.iter().position(|&b| b == b'\r'), Some(19));
    assert!(parse_request(line, &mut h, &limits).unwrap().is_some());
    let line = b"GET /234567 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(parse_request(line, &mut h, &limits).unwrap().is_some());
    let line = b"GET /2345678 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        parse_request(line, &mut h, &limits),
        Err(RequestError::UriTooLong)
    );
    // Incomplete: no CRLF within the limit.
    assert_eq!(
        parse_request(b"GET /aaaaaaaaaaaaaaaaaaaaaaaaa", &mut h, &limits),
        Err(RequestError::UriTooLong)
    );
    assert_eq!(
        parse_request(b"GET /aaaaaaaaaaaaaaa", &mut h, &limits),
        Ok(None)
    );
    // Leading empty lines do not count against (or hide) the request line.
    assert_eq!(
        parse_request(b"\r\n\r\nGET /aaaaaaaaaaaaaaaaaaaaa", &mut h, &limits),
        Err(RequestError::UriTooLong)
    );
}

#[test]
fn head_size_and_field_count_limits() {
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 2,
        max_request_line: 8192,
    };
    let mut h = Vec::new();
    assert!(parse_request(
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n",
        &mut h,
        &limits
    )
    .unwrap()
    .is_some());
    assert_eq!(
        parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n",
            &mut h,
            &limits
        ),
        Err(RequestError::HeadersTooLarge)
    );
    assert_eq!(
        parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\nZ: 3\r\n",
            &mut h,
            &limits
        ),
        Err(RequestError::HeadersTooLarge)
    );
    let big = [b"GET / HTTP/1.1\r\nHost: a\r\nX: ".as_slice(), &[b'v'; 40]].concat();
    assert_eq!(
        parse_request(&big, &mut h, &limits),
        Err(RequestError::HeadersTooLarge)
    );
    assert_eq!(parse_request(&big[..60], &mut h, &limits), Ok(None));
    // A complete small head followed by a large body is fine.
    let mut with_body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n".to_vec();
    with_body.extend_from_slice(&[b'x'; 100]);
    let head = parse_request(&with_body, &mut h, &limits).unwrap().unwrap();
    assert_eq!(head.framing, BodyFraming::Length(100));
    // max_headers beyond the stack array is clamped.
    let limits = Limits {
        max_headers: 1000,
        ..Limits::default()
    };
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for _ in 0..HEADER_ARRAY {
        many.extend_from_slice(b"X: y\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_request(&many, &mut h, &limits),
        Err(RequestError::HeadersTooLarge)
    );
}

#[test]
fn line_endings_and_field_syntax() {
    let table: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF"),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "bare LF early"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bare CR"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "obs-fold",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n",
            "space before colon",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX\t: a\r\n\r\n",
            "tab before colon",
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "NUL"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", "SOH"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", "DEL"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", "empty name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", "no colon"),
    ];
    for (b, why) in table {
        assert_eq!(req(b).map_err(|e| e.status()), Err(400), "{why}");
    }
    // obs-text and HTAB inside values are allowed.
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tb\r\n\r\n";
    let mut h = Vec::new();
    parse_request(buf, &mut h, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h[1].value.get(buf), b"caf\xc3\xa9\tb");
}

#[test]
fn transfer_encoding_rules() {
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n");
    assert_eq!(h.framing, BodyFraming::Chunked);
    let table: &[(&str, u16)] = &[
        ("Transfer-Encoding: gzip\r\n", 501),
        ("Transfer-Encoding: identity\r\n", 501),
        ("Transfer-Encoding: xchunked\r\n", 501),
        ("Transfer-Encoding: gzip, chunked\r\n", 400),
        ("Transfer-Encoding: chunked, chunked\r\n", 400),
        ("Transfer-Encoding: chunked;x\r\n", 400),
        ("Transfer-Encoding: chunked , \r\n", 400),
        ("Transfer-Encoding:\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", 400),
        ("Content-Length: 0\r\nTransfer-Encoding: gzip\r\n", 400),
    ];
    for (fields, status) in table {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        assert_eq!(
            req(buf.as_bytes()).map_err(|e| e.status()),
            Err(*status),
            "{fields:?}"
        );
    }
    assert_eq!(
        req(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(RequestError::BadRequest("Transfer-Encoding on HTTP/1.0"))
    );
}

#[test]
fn content_length_rules() {
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n").framing,
        BodyFraming::Length(42)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n").framing,
        BodyFraming::Length(0)
    );
    for v in [
        "+5",
        "-5",
        "5 5",
        "0x10",
        "5,5",
        "5, 5",
        "",
        "18446744073709551616",
        "5;x",
    ] {
        let buf = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            req(buf.as_bytes()).map_err(|e| e.status()),
            Err(400),
            "{v:?}"
        );
    }
    assert_eq!(
        req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
        Err(RequestError::BadRequest("multiple Content-Length"))
    );
}

#[test]
fn host_rules() {
    assert_eq!(
        req(b"GET / HTTP/1.1\r\n\r\n"),
        Err(RequestError::BadRequest("missing Host"))
    );
    assert_eq!(
        ok(b"GET / HTTP/1.0\r\n\r\n").host,
        None,
        "HTTP/1.0 may omit Host"
    );
    assert_eq!(
        req(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        Err(RequestError::BadRequest("multiple Host"))
    );
    for v in [
        "a b", "a/b", "a@b", "a\\b", "a:65536", "a:", "[::1", "", "a,b:x",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(
            req(buf.as_bytes()).map_err(|e| e.status()),
            Err(400),
            "{v:?}"
        );
    }
    for v in ["a", "a.b:443", "[::1]:8080", "10.0.0.1"] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        let h = ok(buf.as_bytes());
        assert_eq!(h.host.unwrap().get(buf.as_bytes()), v.as_bytes());
    }
}

#[test]
fn connection_rules() {
    let table: &[(&str, &str, bool)] = &[
        ("HTTP/1.1", "", true),
        ("HTTP/1.1", "Connection: close\r\n", false),
        ("HTTP/1.1", "Connection: keep-alive, CLOSE\r\n", false),
        (
            "HTTP/1.1",
            "Connection: foo\r\nConnection: close\r\n",
            false,
        ),
        ("HTTP/1.0", "", false),
        ("HTTP/1.0", "Connection: Keep-Alive\r\n", true),
        ("HTTP/1.0", "Connection: keep-alive, close\r\n", false),
    ];
    for (v, fields, want) in table {
        let buf = format!("GET / {v}\r\nHost: a\r\n{fields}\r\n");
        assert_eq!(ok(buf.as_bytes()).keep_alive, *want, "{v} {fields:?}");
    }
    for v in [
        "content-length",
        "Transfer-Encoding",
        "close, host",
        "a b",
        "\"close\"",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {v}\r\n\r\n");
        assert_eq!(
            req(buf.as_bytes()).map_err(|e| e.status()),
            Err(400),
            "{v:?}"
        );
    }
}

#[test]
fn expect_and_upgrade() {
    assert!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(!ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n").expect_continue);
    assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);

    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(ok(buf).upgrade.unwrap().get(buf), b"websocket");
    assert_eq!(
        ok(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade,
        None
    );
    assert_eq!(
        ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade,
        None
    );
    assert_eq!(
        ok(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade,
        None
    );
}

#[test]
fn connection_nominates_tokens() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close , X-Foo\r\nconnection: Upgrade\r\nX-Bar: connection\r\n\r\n";
    let mut h = Vec::new();
    parse_request(buf, &mut h, &Limits::default())
        .unwrap()
        .unwrap();
    assert!(connection_nominates(buf, &h, b"x-foo"));
    assert!(connection_nominates(buf, &h, b"upgrade"));
    assert!(connection_nominates(buf, &h, b"CLOSE"));
    assert!(!connection_nominates(buf, &h, b"x-bar"));
    assert!(!connection_nominates(buf, &h, b"x"));
}

#[test]
fn response_framing() {
    use BodyFraming::*;
    let table: &[(&str, Method, BodyFraming, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::Get,
            Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
            Chunked,
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Method::Get, UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::Head,
            None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Head,
            None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            Method::Get,
            None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            Method::Get,
            None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
            None,
            true,
        ),
        ("HTTP/1.1 100 Continue\r\n\r\n", Method::Post, None, true),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            Method::Get,
            None,
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Method::Connect, None, true),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Method::Get,
            Length(0),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Method::Get,
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
            Method::Get,
            Length(1),
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
            Method::Get,
            UntilClose,
            false,
        ),
    ];
    for (text, method, framing, keep_alive) in table {
        let h = resp_ok(text.as_bytes(), *method);
        assert_eq!(h.framing, *framing, "{text:?}");
        assert_eq!(h.keep_alive, *keep_alive, "{text:?}");
        assert_eq!(h.head_len, text.len());
    }
}

#[test]
fn response_status_and_version() {
    let h = resp_ok(
        b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!((h.status, h.version), (404, Version::Http10));
    assert_eq!(
        resp_ok(b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n", Method::Get).status,
        599
    );
    for text in [
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1 600 x\r\n\r\n",
        "HTTP/1.1 20 x\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
    ] {
        assert!(
            matches!(
                resp(text.as_bytes(), Method::Get),
                Err(ResponseError::Malformed(_))
            ),
            "{text:?}"
        );
    }
}

#[test]
fn malformed_responses_at_every_byte_boundary() {
    let table: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 0\r\n\r\n",
    ];
    for bytes in table {
        let name = String::from_utf8_lossy(bytes);
        assert!(
            matches!(resp(bytes, Method::Get), Err(ResponseError::Malformed(_))),
            "{name:?}"
        );
        for cut in 0..bytes.len() {
            let got = resp(&bytes[..cut], Method::Get);
            assert!(
                matches!(got, Ok(None) | Err(ResponseError::Malformed(_))),
                "{name:?} cut {cut}: {got:?}"
            );
        }
    }
}

#[test]
fn response_limits() {
    let limits = Limits {
        max_head_bytes: 40,
        max_headers: 1,
        max_request_line: 8192,
    };
    let mut h = Vec::new();
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n",
        &mut h,
        Method::Get,
        &limits,
    );
    assert!(matches!(r, Err(ResponseError::TooLarge)));
    let big = [b"HTTP/1.1 200 OK\r\nA: ".as_slice(), &[b'x'; 40]].concat();
    assert!(matches!(
        parse_response(&big, &mut h, Method::Get, &limits),
        Err(ResponseError::TooLarge)
    ));
}

#[test]
fn keep_alive_timeout_param() {
    let table: &[(&str, Option<u32>)] = &[
        ("Keep-Alive: timeout=5, max=100\r\n", Some(5)),
        ("Keep-Alive: max=100, TIMEOUT = 30\r\n", Some(30)),
        ("Keep-Alive: timeout=99999999999\r\n", Some(u32::MAX)),
        ("Keep-Alive: timeout=x\r\n", None),
        ("Keep-Alive: timeout=\r\n", None),
        ("Keep-Alive: timeout=-1\r\n", None),
        ("", None),
    ];
    for (field, want) in table {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{field}\r\n");
        assert_eq!(
            resp_ok(text.as_bytes(), Method::Get).keep_alive_timeout,
            *want,
            "{field:?}"
        );
    }
}

#[test]
fn host_rules_do_not_apply_to_responses() {
    let text = b"HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(resp_ok(text, Method::Get).framing, BodyFraming::Length(0));
}
