//! The admin listener's tiny blocking HTTP/1.1 server: one request per connection.
//!
//! The admin port serves operators and scrapers, a handful of requests a second, so it trades
//! throughput for simplicity: read a bounded head, an optional `Content-Length` body, answer with
//! `Content-Length` and `Connection: close`. The whole request must arrive before one deadline
//! ([`REQUEST_DEADLINE`], enforced by [`DeadlineReader`]): a per-read timeout alone let a client
//! that trickles a byte every few seconds hold its connection for ever. Writes have a timeout too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head accepted (Envoy's admin has the same order of limit).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted; admin bodies are small JSON documents.
pub const MAX_BODY: usize = 1024 * 1024;
/// Write timeout on an admin connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from accept to the last byte of the request, however the bytes trickle in. Ten seconds is
/// generous for a request of at most a few KiB from localhost and short enough that a stuck
/// client holds one of the few admin connection slots only briefly.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Reads from a TCP stream until `deadline`, then fails with `TimedOut`: every read waits at most
/// the time left, so the deadline holds for the whole request, not for each read.
pub struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        DeadlineReader { stream, deadline }
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "admin request deadline passed",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s: &TcpStream = self.stream;
        match s.read(buf) {
            // SO_RCVTIMEO expiring surfaces as EAGAIN: that is the deadline too.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "admin request deadline passed",
            )),
            r => r,
        }
    }
}

/// A parsed admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request target as sent (path and query), for the admin access log's `:path`.
    pub target: String,
    /// Header names lowercased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl crate::http1::HeaderLookup for Request {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => return Some(self.method.as_bytes()),
            ":path" => return Some(self.target.as_bytes()),
            ":scheme" => return Some(b"http"),
            ":authority" => return self.get("host"),
            _ => {}
        }
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn has_param(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
}

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub const TEXT: &str = "text/plain; charset=UTF-8";
pub const JSON: &str = "application/json";

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.into().into_bytes(),
        }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: JSON,
            body,
        }
    }
}

impl crate::http1::HeaderLookup for Response {
    fn get(&self, name: &str) -> Option<&[u8]> {
        (name == "content-type").then_some(self.content_type.as_bytes())
    }
}

/// Why a request could not be read; each maps to the answer (if any) the client gets.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or timed out before sending a full request: nothing to answer.
    Io(std::io::Error),
    Closed,
    /// Malformed request: 400.
    Bad(&'static str),
    /// Head or body over the limit: 431 / 413.
    TooLarge(u16),
}

/// Reads one request from `s`.
pub fn read_request(s: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find_head_end(&buf) {
            break pos;
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadError::TooLarge(431));
        }
        let n = s.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::TooLarge(431));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Bad("incomplete request head")),
        Err(_) => return Err(ReadError::Bad("malformed request head")),
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("/");
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Bad(
                "chunked request bodies are not supported here",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or(ReadError::Bad("bad content-length"))?;
            // RFC 9110 §8.6: repeated Content-Length fields must agree; which one framed the
            // body would otherwise be a guess (found by the admin_request fuzz target).
            if content_length.is_some_and(|earlier| earlier != value) {
                return Err(ReadError::Bad("conflicting content-length"));
            }
            content_length = Some(value);
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(ReadError::TooLarge(413));
    }
    let (path, query) = split_target(target);
    let target = target.to_owned();
    let headers = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let mut body = buf.split_off(head_end);
    while body.len() < content_length {
        let n = s.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(content_length);
    Ok(Request {
        method,
        path,
        query,
        body,
        target,
        headers,
    })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Splits `/stats?filter=a&usedonly` into the decoded path and query pairs.
pub fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), query)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `r` with `Content-Length` and `Connection: close`. `head_only` omits the body (HEAD).
pub fn write_response(s: &mut impl Write, r: &Response, head_only: bool) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(r.body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-cache, max-age=0\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    s.write_all(&out)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn conflicting_content_lengths_are_refused() {
        // Found by the admin_request fuzz target: the last of two differing values framed the
        // body. Repeated equal values are one length (RFC 9110 §8.6).
        let two =
            b"POST /x HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n0123456789A";
        assert!(matches!(
            read_request(&mut std::io::Cursor::new(&two[..])),
            Err(ReadError::Bad("conflicting content-length"))
        ));
        let same = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        let req = read_request(&mut std::io::Cursor::new(&same[..])).unwrap();
        assert_eq!(req.body, b"abc");
    }

    #[test]
    fn reads_head_query_and_body() {
        let raw = b"POST /logging?level=debug&x=a%20b+c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let r = read_request(&mut &raw[..]).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/logging");
        assert_eq!(r.param("level"), Some("debug"));
        assert_eq!(r.param("x"), Some("a b c"));
        assert!(!r.has_param("y"));
        assert_eq!(r.body, b"abc");
        use crate::http1::HeaderLookup;
        assert_eq!(r.get(":authority"), Some(&b"x"[..]));
        assert_eq!(r.get(":path"), Some(&b"/logging?level=debug&x=a%20b+c"[..]));
        assert_eq!(r.get("content-length"), Some(&b"3"[..]));
    }

    #[test]
    fn rejects_bad_and_oversized_requests() {
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..]),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\nHost"[..]),
            Err(ReadError::Closed)
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            read_request(&mut big.as_bytes()),
            Err(ReadError::TooLarge(431))
        ));
        let huge_body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            read_request(&mut huge_body.as_bytes()),
            Err(ReadError::TooLarge(413))
        ));
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(split_target("/x").0, "/x");
        assert_eq!(
            split_target("/s?usedonly&filter=").1,
            vec![("usedonly".into(), "".into()), ("filter".into(), "".into())]
        );
    }

    #[test]
    fn response_has_length_and_close() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(503, "DRAINING\n"), false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("content-length: 9\r\n"));
        assert!(s.contains("connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nDRAINING\n"));
    }
}
