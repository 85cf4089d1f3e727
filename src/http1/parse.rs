//! Request and response heads: tokenised by `httparse` in place (headers on the stack, spans into
//! the caller's buffer), then checked against the policy of an internet-facing edge. Where two
//! implementations could disagree on message boundaries (request smuggling, response splitting) we
//! refuse instead of guessing:
//!
//! - Line endings are CRLF only: a bare LF anywhere in a head is 400 (httparse tolerates it).
//!   Obsolete line folding and whitespace before the colon are 400 (httparse refuses both).
//! - Field values may not contain NUL, CR, LF or any other control byte except HTAB; OWS is trimmed.
//! - Request line: token method, origin-form, absolute-form (`http`/`https`, no userinfo; its
//!   authority must equal Host when both are present), or `*` with OPTIONS only. CONNECT is 400
//!   (not supported). Versions other than HTTP/1.0 and HTTP/1.1 are 400. Targets must be ASCII
//!   without `#`. A request line over `max_request_line` is 414 even before its CRLF arrives.
//! - `Transfer-Encoding`: exactly `chunked` (any case) is accepted; a single other well-formed
//!   coding (`gzip`, `xchunked`) is 501; lists, parameters and empty values are 400; so are two TE
//!   lines, TE together with Content-Length, and TE on HTTP/1.0.
//! - `Content-Length`: `1*DIGIT` fitting u64; two CL lines (even equal) or a list are 400.
//! - `Host`: required on HTTP/1.1, at most one, RFC 3986 host with an optional port <= 65535; an
//!   empty Host is refused.
//! - `Connection` naming `content-length`, `transfer-encoding` or `host` is 400 (a hop that honours
//!   it would strip the framing); elements must be tokens.
//! - `Expect: 100-continue` on HTTP/1.1 sets `expect_continue`; other expectations are ignored
//!   (RFC 9110 lets a server do so) rather than answered 417.
//! - More than `max_headers` fields or a head over `max_head_bytes` (complete or not) is 431.
//!
//! Responses follow the same line and field rules and frame per RFC 9112 §6.3; anything ambiguous
//! there is `Malformed` and the upstream connection is not reused.

use super::fields::{self, TransferCoding};
use super::{HeadView, HeaderSpan, Span};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Size of the stack array handed to httparse. `max_headers` above this is clamped to it: a head
/// with more fields than this is always 431.
const HEADER_ARRAY: usize = 128;

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
///
/// `headers` is cleared and filled with one span per field line (reused across requests).
pub fn parse_request(
    buf: &[u8],
    headers: &mut Vec<HeaderSpan>,
    limits: &Limits,
) -> Result<Option<RequestHead>, RequestError> {
    use RequestError::BadRequest;
    headers.clear();
    // Only the first `max_head_bytes` can belong to an acceptable head: parsing no further bounds
    // the work httparse repeats on every read of a slow client.
    let cap = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(cap)];
    if request_line_too_long(window, limits.max_request_line) {
        return Err(RequestError::UriTooLong);
    }
    let mut array = [httparse::EMPTY_HEADER; HEADER_ARRAY];
    let slots = limits.max_headers.saturating_add(1).min(HEADER_ARRAY);
    let mut req = httparse::Request::new(&mut array[..slots]);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // A bare LF cannot be repaired by later bytes: refuse it now.
            if has_bare_lf(window) {
                return Err(BadRequest("bare LF in head"));
            }
            return if buf.len() > cap {
                Err(RequestError::HeadersTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadersTooLarge),
        Err(e) => return Err(BadRequest(httparse_context(e))),
    };
    if has_bare_lf(&window[..head_len]) {
        return Err(BadRequest("bare LF in head"));
    }
    if req.headers.len() > limits.max_headers {
        return Err(RequestError::HeadersTooLarge);
    }
    let (Some(method_str), Some(target_str), Some(minor)) = (req.method, req.path, req.version)
    else {
        return Err(BadRequest("incomplete request line"));
    };
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let method = method_from(method_str.as_bytes());
    if method == Method::Connect {
        return Err(BadRequest("CONNECT not supported"));
    }
    let method_span = span_in(buf, method_str.as_bytes(), 0).ok_or(BadRequest("method offset"))?;
    let target = span_in(buf, target_str.as_bytes(), 0).ok_or(BadRequest("target offset"))?;
    let target_bytes = target_str.as_bytes();
    if target_bytes
        .iter()
        .any(|&b| b == b'#' || !b.is_ascii_graphic())
    {
        return Err(BadRequest("invalid byte in request target"));
    }
    let uri_authority = match target_bytes {
        b"*" if method == Method::Options => None,
        b"*" => return Err(BadRequest("asterisk-form only with OPTIONS")),
        [b'/', ..] => None,
        _ => {
            let parts = target_parts(buf, target);
            match parts.authority {
                Some(a) if parts.scheme.is_some() && fields::is_valid_host(a.get(buf)) => Some(a),
                _ => return Err(BadRequest("invalid request target")),
            }
        }
    };

    let f = scan_fields(buf, req.headers, headers, true).map_err(|e| match e {
        FieldError::Bad(why) => BadRequest(why),
    })?;
    if f.te.is_some() && f.content_length.is_some() {
        return Err(BadRequest("Transfer-Encoding with Content-Length"));
    }
    if f.te.is_some() && version == Version::Http10 {
        return Err(BadRequest("Transfer-Encoding on HTTP/1.0"));
    }
    if f.te == Some(TransferCoding::Unknown) {
        return Err(RequestError::NotImplemented(
            "transfer coding other than chunked",
        ));
    }
    if version == Version::Http11 && f.host.is_none() {
        return Err(BadRequest("missing Host"));
    }
    let host = match (uri_authority, f.host) {
        (Some(a), Some(h)) if !a.get(buf).eq_ignore_ascii_case(h.get(buf)) => {
            return Err(BadRequest("Host differs from target authority"));
        }
        (Some(a), _) => Some(a),
        (None, h) => h,
    };
    let framing = match (f.te, f.content_length) {
        (Some(_), _) => BodyFraming::Chunked,
        (None, Some(n)) => BodyFraming::Length(n),
        (None, None) => BodyFraming::None,
    };
    let keep_alive = !f.conn_close && (version == Version::Http11 || f.conn_keep_alive);
    Ok(Some(RequestHead {
        method,
        method_span,
        target,
        version,
        head_len,
        framing,
        keep_alive,
        // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
        expect_continue: f.expect_continue && version == Version::Http11,
        host,
        // RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.
        upgrade: if f.conn_upgrade && version == Version::Http11 {
            f.upgrade
        } else {
            None
        },
    }))
}

impl RequestHead {
    /// A `HeaderLookup` view for the router and access log. Absolute-form targets are split so
    /// `:path` is the origin-form path (`/` when the target has none).
    pub fn view<'a>(
        &self,
        buf: &'a [u8],
        headers: &'a [HeaderSpan],
        scheme: &'a [u8],
    ) -> HeadView<'a> {
        let parts = target_parts(buf, self.target);
        let path = parts.path.get(buf);
        HeadView {
            buf,
            headers,
            method: self.method_span.get(buf),
            path: if path.is_empty() { b"/" } else { path },
            authority: self.host.map(|h| h.get(buf)),
            scheme,
        }
    }
}

/// A request target split into its parts (spans into the same buffer as the target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetParts {
    /// `http` or `https` for absolute-form.
    pub scheme: Option<Span>,
    /// The authority of an absolute-form target (may be invalid: `parse_request` validates it).
    pub authority: Option<Span>,
    /// Path and query; empty for an absolute-form target without a path (`http://a`).
    pub path: Span,
}

/// Splits `target` (as found in `buf`) into scheme, authority and path. Origin-form and `*` are
/// all path; absolute-form yields all three; anything else has no scheme.
pub fn target_parts(buf: &[u8], target: Span) -> TargetParts {
    let t = target.get(buf);
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        4
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        5
    } else {
        return TargetParts {
            scheme: None,
            authority: None,
            path: target,
        };
    };
    let auth_start = scheme_len + 3;
    let auth_len = t[auth_start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(t.len() - auth_start);
    let at = |off: usize| target.start + off as u32;
    TargetParts {
        scheme: Some(Span {
            start: target.start,
            end: at(scheme_len),
        }),
        authority: Some(Span {
            start: at(auth_start),
            end: at(auth_start + auth_len),
        }),
        path: Span {
            start: at(auth_start + auth_len),
            end: target.end,
        },
    }
}

/// True when the request line (after the empty lines RFC 9112 §2.2 lets us skip) is already known
/// to exceed `max` bytes, complete or not.
fn request_line_too_long(window: &[u8], max: usize) -> bool {
    let mut rest = window;
    while let [b'\r', b'\n', tail @ ..] = rest {
        rest = tail;
    }
    // The line is acceptable when its LF sits at index <= max + 1 (max bytes, CR, LF).
    let probe = &rest[..rest.len().min(max.saturating_add(2))];
    match probe.iter().position(|&b| b == b'\n') {
        Some(lf) => lf > max.saturating_add(1),
        None => probe.len() > max.saturating_add(1),
    }
}

/// Every LF in a head must follow a CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

fn httparse_context(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn method_from(m: &[u8]) -> Method {
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is some other method.
    match m {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" => Method::Post,
        b"PUT" => Method::Put,
        b"DELETE" => Method::Delete,
        b"OPTIONS" => Method::Options,
        b"PATCH" => Method::Patch,
        b"TRACE" => Method::Trace,
        b"CONNECT" => Method::Connect,
        _ => Method::Other,
    }
}

/// The span of `part` inside `buf`, computed from the slice addresses httparse hands back.
/// `empty_at` places an empty slice (which may not point into `buf`) at a known offset.
fn span_in(buf: &[u8], part: &[u8], empty_at: u32) -> Option<Span> {
    if part.is_empty() {
        return Some(Span {
            start: empty_at,
            end: empty_at,
        });
    }
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > buf.len() {
        return None;
    }
    Some(Span {
        start: u32::try_from(start).ok()?,
        end: u32::try_from(end).ok()?,
    })
}

enum FieldError {
    Bad(&'static str),
}

/// What the field lines said about framing and connection management.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    te: Option<TransferCoding>,
    host: Option<Span>,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade: Option<Span>,
    expect_continue: bool,
    keep_alive_timeout: Option<u32>,
}

/// Converts httparse's fields into spans (pushed into `out`) and applies the per-field rules
/// shared by requests and responses. `request` enables the Host rules (a Host field in a response
/// means nothing to us and is forwarded untouched).
fn scan_fields(
    buf: &[u8],
    raw: &[httparse::Header<'_>],
    out: &mut Vec<HeaderSpan>,
    request: bool,
) -> Result<Fields, FieldError> {
    use FieldError::Bad;
    let mut f = Fields::default();
    for h in raw {
        let name = span_in(buf, h.name.as_bytes(), 0).ok_or(Bad("header offset"))?;
        if !h.value.iter().all(|&b| fields::is_field_value_byte(b)) {
            return Err(Bad("control byte in header value"));
        }
        let value_bytes = fields::trim_ows(h.value);
        let value = span_in(buf, value_bytes, name.end).ok_or(Bad("header offset"))?;
        out.push(HeaderSpan { name, value });
        let n = h.name.as_bytes();
        if n.eq_ignore_ascii_case(b"content-length") {
            if f.content_length.is_some() {
                return Err(Bad("multiple Content-Length"));
            }
            f.content_length = Some(
                fields::parse_content_length(value_bytes).ok_or(Bad("invalid Content-Length"))?,
            );
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            if f.te.is_some() {
                return Err(Bad("multiple Transfer-Encoding"));
            }
            match fields::classify_transfer_encoding(value_bytes) {
                TransferCoding::Malformed => return Err(Bad("malformed Transfer-Encoding")),
                coding => f.te = Some(coding),
            }
        } else if request && n.eq_ignore_ascii_case(b"host") {
            if f.host.is_some() {
                return Err(Bad("multiple Host"));
            }
            if !fields::is_valid_host(value_bytes) {
                return Err(Bad("invalid Host"));
            }
            f.host = Some(value);
        } else if n.eq_ignore_ascii_case(b"connection") {
            for token in fields::list_elements(value_bytes) {
                if !fields::is_token(token) {
                    return Err(Bad("invalid Connection"));
                }
                if token.eq_ignore_ascii_case(b"close") {
                    f.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.conn_keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.conn_upgrade = true;
                } else if token.eq_ignore_ascii_case(b"content-length")
                    || token.eq_ignore_ascii_case(b"transfer-encoding")
                    || token.eq_ignore_ascii_case(b"host")
                {
                    return Err(Bad("Connection nominates a framing header"));
                }
            }
        } else if n.eq_ignore_ascii_case(b"upgrade") {
            f.upgrade = f.upgrade.or(Some(value));
        } else if n.eq_ignore_ascii_case(b"expect") {
            f.expect_continue |= value_bytes.eq_ignore_ascii_case(b"100-continue");
        } else if n.eq_ignore_ascii_case(b"keep-alive") {
            f.keep_alive_timeout = f.keep_alive_timeout.or(keep_alive_timeout(value_bytes));
        }
    }
    Ok(f)
}

/// `timeout=N` from a `Keep-Alive` value (`timeout=5, max=100`); N is digits, saturated to u32.
fn keep_alive_timeout(value: &[u8]) -> Option<u32> {
    fields::list_elements(value).find_map(|param| {
        let eq = param.iter().position(|&b| b == b'=')?;
        let (name, n) = (
            fields::trim_ows(&param[..eq]),
            fields::trim_ows(&param[eq + 1..]),
        );
        if !name.eq_ignore_ascii_case(b"timeout")
            || n.is_empty()
            || n.len() > 20
            || !n.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let secs = fields::parse_content_length(n).unwrap_or(u64::MAX);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    buf: &[u8],
    headers: &mut Vec<HeaderSpan>,
    request_method: Method,
    limits: &Limits,
) -> Result<Option<ResponseHead>, ResponseError> {
    use ResponseError::Malformed;
    headers.clear();
    let cap = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(cap)];
    let mut array = [httparse::EMPTY_HEADER; HEADER_ARRAY];
    let slots = limits.max_headers.saturating_add(1).min(HEADER_ARRAY);
    let mut resp = httparse::Response::new(&mut array[..slots]);
    let head_len = match resp.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if has_bare_lf(window) {
                return Err(Malformed("bare LF in head"));
            }
            return if buf.len() > cap {
                Err(ResponseError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(e) => return Err(Malformed(httparse_context(e))),
    };
    if has_bare_lf(&window[..head_len]) {
        return Err(Malformed("bare LF in head"));
    }
    if resp.headers.len() > limits.max_headers {
        return Err(ResponseError::TooLarge);
    }
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(Malformed("incomplete status line"));
    };
    if !(100..=599).contains(&status) {
        return Err(Malformed("status out of range"));
    }
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let f = scan_fields(buf, resp.headers, headers, false).map_err(|e| match e {
        FieldError::Bad(why) => Malformed(why),
    })?;
    let informational_or_204 = status < 200 || status == 204;
    if f.te.is_some() && informational_or_204 {
        return Err(Malformed("Transfer-Encoding on 1xx/204"));
    }
    if f.te.is_some() && f.content_length.is_some() {
        return Err(Malformed("Transfer-Encoding with Content-Length"));
    }
    if f.te.is_some() && version == Version::Http10 {
        return Err(Malformed("Transfer-Encoding on HTTP/1.0"));
    }
    if f.te == Some(TransferCoding::Unknown) {
        return Err(Malformed("transfer coding other than chunked"));
    }
    // RFC 9112 §6.3 items 1 and 2: these responses end with their head whatever they say.
    let no_body = request_method == Method::Head
        || informational_or_204
        || status == 304
        || (request_method == Method::Connect && (200..300).contains(&status));
    let framing = if no_body {
        BodyFraming::None
    } else if f.te.is_some() {
        BodyFraming::Chunked
    } else if let Some(n) = f.content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::UntilClose
    };
    let keep_alive = !f.conn_close
        && (version == Version::Http11 || f.conn_keep_alive)
        && framing != BodyFraming::UntilClose;
    Ok(Some(ResponseHead {
        status,
        version,
        head_len,
        framing,
        keep_alive,
        keep_alive_timeout: f.keep_alive_timeout,
    }))
}

/// True when a `Connection` header value among `headers` names `name` (case-insensitively).
pub fn connection_nominates(buf: &[u8], headers: &[HeaderSpan], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(b"connection"))
        .any(|h| fields::list_elements(h.value.get(buf)).any(|t| t.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
