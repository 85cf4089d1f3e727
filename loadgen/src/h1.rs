//! HTTP/1.1 client codec of the load generator: encode the one request a run repeats, and
//! frame responses (head with httparse, body by Content-Length or our own chunked decoder).
//!
//! Pure byte-in, state-out code with no sockets or clocks, so every framing case can be driven
//! byte by byte in tests. The request is encoded once per run and reused for every send; the
//! response framer only counts body bytes and never copies them, because a load generator must
//! not spend its CPU on bodies it throws away.

use std::fmt;

/// Largest response head we accept; a bigger head is a broken or hostile server.
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed on the stack per response.
const MAX_HEADERS: usize = 64;

/// Why a request could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    Method,
    Path,
    Header(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Method => write!(f, "method must be a non-empty token"),
            EncodeError::Path => write!(f, "path must not contain spaces or control bytes"),
            EncodeError::Header(h) => write!(f, "bad header {h:?}: expected 'name: value'"),
        }
    }
}

/// Encode the request once. `host` is the Host header value (authority as given in the URL);
/// a user-supplied `Host` or `Content-Length` header replaces ours.
pub fn encode_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(EncodeError::Method);
    }
    if path.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(EncodeError::Path);
    }
    let mut parsed: Vec<(&str, &str)> = Vec::with_capacity(headers.len());
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| EncodeError::Header(h.clone()))?;
        let (name, value) = (name.trim(), value.trim());
        let value_ok = value
            .bytes()
            .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if name.is_empty() || !name.bytes().all(is_token_byte) || !value_ok {
            return Err(EncodeError::Header(h.clone()));
        }
        parsed.push((name, value));
    }
    let has = |n: &str| parsed.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !has("host") {
        push_header(&mut out, "Host", host);
    }
    for (k, v) in &parsed {
        push_header(&mut out, k, v);
    }
    // Methods that usually carry a body get an explicit length even when it is empty, so
    // servers do not wait for one.
    let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") {
        push_header(&mut out, "Content-Length", &body.len().to_string());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A response that could not be framed; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// httparse rejected the head.
    Head,
    HeadTooLarge,
    BadContentLength,
    /// Both Content-Length and chunked, or an unknown transfer coding.
    BadFraming,
    BadChunk,
    /// The server closed before the response was complete.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ParseError::Head => "malformed response head",
            ParseError::HeadTooLarge => "response head too large",
            ParseError::BadContentLength => "bad Content-Length",
            ParseError::BadFraming => "ambiguous or unsupported body framing",
            ParseError::BadChunk => "malformed chunked body",
            ParseError::Truncated => "connection closed mid-response",
        };
        f.write_str(s)
    }
}

/// Result of feeding bytes: how many were consumed, and whether a response finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Everything useful was consumed; feed more bytes (the unconsumed rest must be kept and
    /// fed again with what arrives next, it is an incomplete head).
    NeedMore,
    /// A full response ended. `keep_alive` is false when the server asked to close or the body
    /// was delimited by the close itself.
    Done { status: u16, keep_alive: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Bytes of body left.
    Length(u64),
    Chunked(Chunk),
    /// No framing: the body ends when the server closes.
    UntilClose,
}

/// Chunked decoder states (RFC 9112 §7.1), strict about CRLF:
/// `Size -> (Ext) -> SizeLf -> Data -> DataCr -> DataLf -> Size ...`; a zero size leads to
/// `TrailerStart -> (Trailer -> TrailerLf) ... -> EndLf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits; `digits` counts them so an empty size is rejected.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to CR.
    Ext {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
}

/// Frames a stream of responses on one connection. Reset it with `expect(head_request)` before
/// each response so HEAD responses are known to carry no body.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    status: u16,
    keep_alive: bool,
    head_request: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser::new(false)
    }
}

impl ResponseParser {
    pub fn new(head_request: bool) -> ResponseParser {
        ResponseParser {
            state: State::Head,
            status: 0,
            keep_alive: true,
            head_request,
        }
    }

    /// Prepare for the next response on the same connection.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.status = 0;
        self.keep_alive = true;
    }

    /// Feed bytes. Returns how many were consumed and whether a response ended. Bytes after a
    /// finished response are not consumed.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), ParseError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Head => {
                    let Some((used, body)) = self.parse_head(&input[pos..])? else {
                        return Ok((pos, Step::NeedMore));
                    };
                    pos += used;
                    match body {
                        // 1xx interim response: the real one follows.
                        None => continue,
                        Some(Body::Length(0)) => return Ok((pos, self.done())),
                        Some(b) => self.state = State::Body(b),
                    }
                }
                State::Body(Body::UntilClose) => return Ok((input.len(), Step::NeedMore)),
                State::Body(Body::Length(left)) => {
                    let avail = (input.len() - pos) as u64;
                    if avail < left {
                        self.state = State::Body(Body::Length(left - avail));
                        return Ok((input.len(), Step::NeedMore));
                    }
                    pos += left as usize;
                    return Ok((pos, self.done()));
                }
                State::Body(Body::Chunked(c)) => {
                    let (used, next) = chunk_step(c, &input[pos..])?;
                    pos += used;
                    match next {
                        Some(c) => {
                            self.state = State::Body(Body::Chunked(c));
                            return Ok((pos, Step::NeedMore));
                        }
                        None => return Ok((pos, self.done())),
                    }
                }
            }
        }
    }

    /// The server closed the connection; a close-delimited body ends here, anything else
    /// in flight is truncated.
    pub fn on_eof(&mut self) -> Result<Step, ParseError> {
        match self.state {
            State::Body(Body::UntilClose) => {
                self.keep_alive = false;
                Ok(self.done())
            }
            _ => Err(ParseError::Truncated),
        }
    }

    fn done(&mut self) -> Step {
        let step = Step::Done {
            status: self.status,
            keep_alive: self.keep_alive,
        };
        self.reset();
        step
    }

    /// Parse one head. `Ok(None)`: incomplete. `Ok(Some((used, None)))`: an interim 1xx head.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<(usize, Option<Body>)>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let used = match resp.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if input.len() > MAX_HEAD {
                    return Err(ParseError::HeadTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
            Err(_) => return Err(ParseError::Head),
        };
        if used > MAX_HEAD {
            return Err(ParseError::HeadTooLarge);
        }
        let status = resp.code.ok_or(ParseError::Head)?;
        if (100..200).contains(&status) && status != 101 {
            return Ok(Some((used, None)));
        }
        let mut keep_alive = resp.version == Some(1);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_content_length(h.value)?;
                // Repeated identical values are tolerated (RFC 9110 §8.6); differing ones not.
                if length.is_some_and(|l| l != v) {
                    return Err(ParseError::BadContentLength);
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                if trim(last).eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    return Err(ParseError::BadFraming);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for tok in h.value.split(|&b| b == b',') {
                    let tok = trim(tok);
                    if tok.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        self.status = status;
        self.keep_alive = keep_alive;
        let no_body = self.head_request || status == 204 || status == 304;
        let body = if no_body {
            Body::Length(0)
        } else if chunked {
            if length.is_some() {
                return Err(ParseError::BadFraming);
            }
            Body::Chunked(Chunk::Size { size: 0, digits: 0 })
        } else if let Some(l) = length {
            Body::Length(l)
        } else {
            self.keep_alive = false;
            Body::UntilClose
        };
        Ok(Some((used, Some(body))))
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Strict decimal: httparse passes values like `0x10` or `+5` through untouched.
fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadContentLength);
    }
    Ok(v.iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

/// Advance the chunked decoder over `input`. Returns bytes used and the next state, or `None`
/// when the body (including trailers) is complete.
fn chunk_step(mut c: Chunk, input: &[u8]) -> Result<(usize, Option<Chunk>), ParseError> {
    let mut pos = 0;
    while pos < input.len() {
        let b = input[pos];
        c = match c {
            Chunk::Size { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    // 15 hex digits is already 1 EiB; more means garbage.
                    if digits >= 15 {
                        return Err(ParseError::BadChunk);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    Chunk::Size {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(ParseError::BadChunk),
                b'\r' => Chunk::SizeLf { size },
                b';' | b' ' | b'\t' => Chunk::Ext { size },
                _ => return Err(ParseError::BadChunk),
            },
            Chunk::Ext { size } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => return Err(ParseError::BadChunk),
                _ => Chunk::Ext { size },
            },
            Chunk::SizeLf { size } => match (b, size) {
                (b'\n', 0) => Chunk::TrailerStart,
                (b'\n', n) => Chunk::Data(n),
                _ => return Err(ParseError::BadChunk),
            },
            Chunk::Data(left) => {
                let avail = (input.len() - pos) as u64;
                if avail < left {
                    return Ok((input.len(), Some(Chunk::Data(left - avail))));
                }
                pos += left as usize;
                c = Chunk::DataCr;
                continue;
            }
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
            Chunk::DataCr | Chunk::DataLf => return Err(ParseError::BadChunk),
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::EndLf,
                b'\n' => return Err(ParseError::BadChunk),
                _ => Chunk::Trailer,
            },
            Chunk::Trailer => match b {
                b'\r' => Chunk::TrailerLf,
                b'\n' => return Err(ParseError::BadChunk),
                _ => Chunk::Trailer,
            },
            Chunk::TrailerLf if b == b'\n' => Chunk::TrailerStart,
            Chunk::EndLf if b == b'\n' => return Ok((pos + 1, None)),
            Chunk::TrailerLf | Chunk::EndLf => return Err(ParseError::BadChunk),
        };
        pos += 1;
    }
    Ok((pos, Some(c)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Drive the parser the way a connection does: append arriving bytes to a buffer, feed,
    /// drop what was consumed. Returns the finished responses.
    fn drive(chunks: &[&[u8]], eof: bool, head: bool) -> Result<Vec<(u16, bool)>, ParseError> {
        let mut p = ResponseParser::new(head);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            loop {
                let (used, step) = p.feed(&buf)?;
                buf.drain(..used);
                match step {
                    Step::Done { status, keep_alive } => out.push((status, keep_alive)),
                    Step::NeedMore => break,
                }
            }
        }
        if eof {
            if let Step::Done { status, keep_alive } = p.on_eof()? {
                out.push((status, keep_alive));
            }
        } else {
            assert!(
                p.state == State::Head && buf.is_empty(),
                "leftover bytes: {buf:?}"
            );
        }
        Ok(out)
    }

    /// Feed `msg` split at every byte position (two pieces) and byte by byte; all must agree.
    fn every_split(msg: &[u8], eof: bool) -> Result<Vec<(u16, bool)>, ParseError> {
        let whole = drive(&[msg], eof, false);
        for i in 0..=msg.len() {
            let (a, b) = msg.split_at(i);
            assert_eq!(drive(&[a, b], eof, false), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(drive(&bytes, eof, false), whole, "byte by byte");
        whole
    }

    const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    const CHUNKED: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";

    #[test]
    fn content_length_every_split() {
        assert_eq!(every_split(CL, false), Ok(vec![(200, true)]));
    }

    #[test]
    fn chunked_with_ext_and_trailer_every_split() {
        assert_eq!(every_split(CHUNKED, false), Ok(vec![(201, true)]));
    }

    #[test]
    fn pipelined_mix_every_split() {
        let mut msg = Vec::new();
        msg.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        msg.extend_from_slice(CL);
        msg.extend_from_slice(CHUNKED);
        msg.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        msg.extend_from_slice(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(
            every_split(&msg, false),
            Ok(vec![(200, true), (201, true), (204, true), (503, false)])
        );
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let msg = b"HTTP/1.1 200 OK\r\n\r\nbody until close";
        assert_eq!(every_split(msg, true), Ok(vec![(200, false)]));
    }

    #[test]
    fn http10_defaults_to_close() {
        let msg = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(every_split(msg, false), Ok(vec![(200, false)]));
        let msg = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(every_split(msg, false), Ok(vec![(200, true)]));
    }

    #[test]
    fn head_response_has_no_body() {
        let msg: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        assert_eq!(drive(&[msg], false, true), Ok(vec![(200, true)]));
    }

    #[test]
    fn truncated_body_is_an_error_at_eof() {
        assert_eq!(
            drive(&[&CL[..CL.len() - 1]], true, false),
            Err(ParseError::Truncated)
        );
        assert_eq!(
            drive(&[b"HTTP/1.1 2"], true, false),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                ParseError::BadFraming,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                ParseError::BadFraming,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
                ParseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
                ParseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx",
                ParseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy",
                ParseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
                ParseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
                ParseError::BadChunk,
            ),
            (b"HTTX/1.1 200 OK\r\n\r\n", ParseError::Head),
        ];
        for (msg, want) in cases {
            let got = drive(&[msg], false, false);
            assert_eq!(got, Err(*want), "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn huge_head_is_rejected() {
        let mut msg = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        msg.resize(MAX_HEAD + 10, b'a');
        assert_eq!(drive(&[&msg], false, false), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn encodes_request_with_host_and_length() {
        let r = encode_request("POST", "example:8080", "/x?y=1", &["A: b".into()], b"hi").unwrap();
        assert_eq!(
            r,
            b"POST /x?y=1 HTTP/1.1\r\nHost: example:8080\r\nA: b\r\nContent-Length: 2\r\n\r\nhi"
        );
        let r = encode_request("GET", "h", "/", &["host: other".into()], b"").unwrap();
        assert_eq!(r, b"GET / HTTP/1.1\r\nhost: other\r\n\r\n");
    }

    #[test]
    fn encode_rejects_injection() {
        assert_eq!(
            encode_request("G T", "h", "/", &[], b""),
            Err(EncodeError::Method)
        );
        assert_eq!(
            encode_request("GET", "h", "/a b", &[], b""),
            Err(EncodeError::Path)
        );
        let bad = vec!["X: a\r\nY: b".to_string()];
        assert!(encode_request("GET", "h", "/", &bad, b"").is_err());
        assert!(encode_request("GET", "h", "/", &["nocolon".into()], b"").is_err());
    }
}
