//! STUB (replaced by the http1 work): signatures are the contract.

use super::{HeaderSpan, Span};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total head bytes (Envoy `max_request_headers_kb`, default 60 KiB) -> 431 beyond.
    pub max_head_bytes: usize,
    /// Header field count (default 100) -> 431 beyond.
    pub max_headers: usize,
    /// Request line (default 8 KiB) -> 414 beyond.
    pub max_request_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Responses only: the body runs until the upstream closes.
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: Span,
    pub target: Span,
    pub version: Version,
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
    pub framing: BodyFraming,
    /// The client wants the connection kept (version default and Connection header).
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The Host header value (validated).
    pub host: Option<Span>,
    /// The Upgrade header value, when Connection also names `upgrade`.
    pub upgrade: Option<Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 400 and close; the context says which rule.
    BadRequest(&'static str),
    /// 431: head larger than `max_head_bytes` or more than `max_headers` fields.
    HeadersTooLarge,
    /// 414: request line longer than `max_request_line`.
    UriTooLong,
    /// 501: a transfer coding other than `chunked`.
    NotImplemented(&'static str),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadersTooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::NotImplemented(_) => 501,
        }
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_request(
    _buf: &[u8],
    _headers: &mut Vec<HeaderSpan>,
    _limits: &Limits,
) -> Result<Option<RequestHead>, RequestError> {
    unimplemented!()
}

#[derive(Debug, Clone, Copy)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub head_len: usize,
    pub framing: BodyFraming,
    /// The upstream lets us reuse the connection after this response.
    pub keep_alive: bool,
    /// `Keep-Alive: timeout=N`, in seconds.
    pub keep_alive_timeout: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(&'static str),
    TooLarge,
}

/// Parses an upstream response head. `request_method` decides HEAD/CONNECT body rules.
pub fn parse_response(
    _buf: &[u8],
    _headers: &mut Vec<HeaderSpan>,
    _request_method: Method,
    _limits: &Limits,
) -> Result<Option<ResponseHead>, ResponseError> {
    unimplemented!()
}

/// True when a `Connection` header value among `headers` names `name` (case-insensitively).
pub fn connection_nominates(_buf: &[u8], _headers: &[HeaderSpan], _name: &[u8]) -> bool {
    unimplemented!()
}
