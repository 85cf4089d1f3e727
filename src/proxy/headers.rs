//! Re-serialising heads in both directions, with Envoy's header handling.
//!
//! Nothing is copied through verbatim: every forwarded head is written anew from parsed spans, so
//! framing and hop-by-hop headers are always ours. Upstream requests get `x-forwarded-for`,
//! `x-forwarded-proto`, `x-request-id` and the configured additions and removals; downstream
//! responses get `server`, `x-envoy-upstream-service-time` and theirs.

use crate::config::{AppendAction, HeaderMutations, HeaderValueOption};
use crate::http1::encode::{is_hop_by_hop, write_header, write_status_line, write_u64};
use crate::http1::parse::{connection_nominates, Version};
use crate::http1::HeaderSpan;

/// The mutation lists that apply to one request, most specific first (route, virtual host,
/// route configuration), as Envoy evaluates them.
pub struct Mutations<'a> {
    pub levels: [Option<&'a HeaderMutations>; 3],
}

impl<'a> Mutations<'a> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a HeaderMutations> + '_ {
        self.levels.iter().flatten().copied()
    }

    /// Every level's `response_headers_to_add`, as name/value pairs for a local reply.
    pub(crate) fn response_additions(&self) -> Vec<(&'a [u8], &'a [u8])> {
        self.iter()
            .flat_map(|m| m.response_add.iter())
            .map(|h| (h.name.as_bytes(), h.value.as_bytes()))
            .collect()
    }

    pub(crate) fn removes_request(&self, name: &[u8]) -> bool {
        self.iter().any(|m| {
            m.request_remove
                .iter()
                .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
                || overwrites(&m.request_add, name)
        })
    }

    pub(crate) fn removes_response(&self, name: &[u8]) -> bool {
        self.iter().any(|m| {
            m.response_remove
                .iter()
                .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
                || overwrites(&m.response_add, name)
        })
    }
}

fn overwrites(adds: &[HeaderValueOption], name: &[u8]) -> bool {
    adds.iter().any(|h| {
        h.action == AppendAction::OverwriteIfExistsOrAdd
            && h.name.as_bytes().eq_ignore_ascii_case(name)
    })
}

/// Appends configured additions. `present(name)` says whether the outgoing head already has it
/// (for ADD_IF_ABSENT).
fn write_additions(out: &mut Vec<u8>, adds: &[HeaderValueOption], present: &dyn Fn(&[u8]) -> bool) {
    for h in adds {
        if h.action == AppendAction::AddIfAbsent && present(h.name.as_bytes()) {
            continue;
        }
        write_header(out, h.name.as_bytes(), h.value.as_bytes());
    }
}

/// Headers the proxy always writes itself, whatever the client sent.
fn reserved_request_header(name: &[u8]) -> bool {
    const RESERVED: [&[u8]; 6] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-proto",
        b"x-forwarded-for",
        b"x-envoy-original-path",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Most messages have no `Connection` header; only then is the per-header nomination check needed.
fn has_connection_header(buf: &[u8], headers: &[HeaderSpan]) -> bool {
    headers
        .iter()
        .any(|h| h.name.get(buf).eq_ignore_ascii_case(b"connection"))
}

/// What the upstream request head needs beyond the parsed client head.
pub struct UpstreamRequest<'a> {
    pub method: &'a [u8],
    /// The path to send (after prefix_rewrite).
    pub path: &'a [u8],
    pub host: &'a [u8],
    pub peer_ip: &'a [u8],
    /// Generated when the client sent none (empty: keep the client's or send none).
    pub request_id: &'a [u8],
    /// Framing of the body we send: `None` for no body, `Some(None)` chunked, `Some(Some(n))` length.
    pub body: Option<Option<u64>>,
    pub use_remote_address: bool,
    /// An enabled upgrade (`websocket`): sent as `upgrade: <value>` with `connection: upgrade`.
    /// `None` drops the client's Upgrade like any other hop-by-hop header.
    pub upgrade: Option<&'a [u8]>,
}

/// Writes the upstream request head into `out`.
pub fn write_upstream_request(
    out: &mut Vec<u8>,
    req: &UpstreamRequest<'_>,
    buf: &[u8],
    headers: &[HeaderSpan],
    mutations: &Mutations<'_>,
) {
    out.extend_from_slice(req.method);
    out.push(b' ');
    out.extend_from_slice(req.path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(out, b"host", req.host);

    let mut xff: Option<&[u8]> = None;
    let nominations = has_connection_header(buf, headers);
    for h in headers {
        let name = h.name.get(buf);
        let value = h.value.get(buf);
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff = Some(value);
            continue;
        }
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"http2-settings")
            || reserved_request_header(name)
            || (nominations && connection_nominates(buf, headers, name))
            || mutations.removes_request(name)
        {
            continue;
        }
        write_header(out, name, value);
    }
    // x-forwarded-for: append the peer at the edge (use_remote_address), else pass through.
    match (xff, req.use_remote_address) {
        (Some(prev), true) => {
            out.extend_from_slice(b"x-forwarded-for: ");
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
            out.extend_from_slice(req.peer_ip);
            out.extend_from_slice(b"\r\n");
        }
        (None, true) => write_header(out, b"x-forwarded-for", req.peer_ip),
        (Some(prev), false) => write_header(out, b"x-forwarded-for", prev),
        (None, false) => {}
    }
    write_header(out, b"x-forwarded-proto", b"http");
    if !req.request_id.is_empty() {
        write_header(out, b"x-request-id", req.request_id);
    }
    let present = |name: &[u8]| {
        headers
            .iter()
            .any(|h| h.name.get(buf).eq_ignore_ascii_case(name))
    };
    for m in mutations.iter() {
        write_additions(out, &m.request_add, &present);
    }
    match req.body {
        Some(Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            write_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Some(None) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => {}
    }
    if let Some(u) = req.upgrade {
        write_header(out, b"connection", b"upgrade");
        write_header(out, b"upgrade", u);
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamFraming {
    /// No body (HEAD, 204, 304, 1xx).
    None,
    /// `content-length: n`, body relayed as is.
    Length(u64),
    /// `transfer-encoding: chunked` (re-encoded by us).
    Chunked,
    /// HTTP/1.0 client without length: body until we close.
    UntilClose,
}

pub struct DownstreamResponse<'a> {
    pub version: Version,
    pub status: u16,
    pub framing: DownstreamFraming,
    /// For HEAD: the upstream's content-length, passed through without a body.
    pub head_content_length: Option<u64>,
    pub server_name: &'a [u8],
    pub upstream_service_time_ms: Option<u64>,
    pub close: bool,
    /// HTTP/1.0 client that asked for keep-alive and keeps it.
    pub keep_alive_10: bool,
    /// A `101 Switching Protocols` being relayed: the upstream's Upgrade value, written back with
    /// `connection: upgrade` in place of framing (the bytes after this head are the tunnel's).
    pub upgrade: Option<&'a [u8]>,
}

/// Writes the response head for the client from the upstream's parsed head.
pub fn write_downstream_response(
    out: &mut Vec<u8>,
    resp: &DownstreamResponse<'_>,
    buf: &[u8],
    headers: &[HeaderSpan],
    mutations: &Mutations<'_>,
) {
    write_status_line(out, resp.version, resp.status);
    let mut has_server = false;
    let nominations = has_connection_header(buf, headers);
    for h in headers {
        let name = h.name.get(buf);
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"x-envoy-upstream-service-time")
            || (nominations && connection_nominates(buf, headers, name))
            || mutations.removes_response(name)
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"server") {
            has_server = true;
        }
        write_header(out, name, h.value.get(buf));
    }
    if !has_server {
        write_header(out, b"server", resp.server_name);
    }
    if let Some(ms) = resp.upstream_service_time_ms {
        out.extend_from_slice(b"x-envoy-upstream-service-time: ");
        write_u64(out, ms);
        out.extend_from_slice(b"\r\n");
    }
    let present = |name: &[u8]| {
        headers
            .iter()
            .any(|h| h.name.get(buf).eq_ignore_ascii_case(name))
    };
    for m in mutations.iter() {
        write_additions(out, &m.response_add, &present);
    }
    if let Some(u) = resp.upgrade {
        write_header(out, b"connection", b"upgrade");
        write_header(out, b"upgrade", u);
        out.extend_from_slice(b"\r\n");
        return;
    }
    write_framing_and_connection(
        out,
        resp.framing,
        resp.head_content_length,
        resp.close,
        resp.keep_alive_10,
    );
}

/// Framing headers, `connection`, and the blank line that ends a head.
pub fn write_framing_and_connection(
    out: &mut Vec<u8>,
    framing: DownstreamFraming,
    head_content_length: Option<u64>,
    close: bool,
    keep_alive_10: bool,
) {
    match framing {
        DownstreamFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            write_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        DownstreamFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        DownstreamFraming::None => {
            if let Some(n) = head_content_length {
                out.extend_from_slice(b"content-length: ");
                write_u64(out, n);
                out.extend_from_slice(b"\r\n");
            }
        }
        DownstreamFraming::UntilClose => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http1::parse::{parse_request, parse_response, Limits, Method};

    fn mutations_with(
        request_add: Vec<HeaderValueOption>,
        request_remove: Vec<String>,
    ) -> HeaderMutations {
        HeaderMutations {
            request_add,
            request_remove,
            ..HeaderMutations::default()
        }
    }

    fn upstream_head(raw: &[u8], m: &HeaderMutations, use_remote_address: bool) -> String {
        let mut spans = Vec::new();
        let head = parse_request(raw, &mut spans, &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let req = UpstreamRequest {
            method: head.method_span.get(raw),
            path: b"/rewritten",
            host: b"example.test",
            peer_ip: b"10.1.2.3",
            request_id: b"",
            body: Some(Some(5)),
            use_remote_address,
            upgrade: None,
        };
        let muts = Mutations {
            levels: [Some(m), None, None],
        };
        write_upstream_request(&mut out, &req, raw, &spans, &muts);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn upgrade_is_sent_only_when_enabled_and_h2c_settings_never() {
        let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket\r\n\
HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nSec-WebSocket-Key: k\r\n\r\n";
        let mut spans = Vec::new();
        parse_request(raw, &mut spans, &Limits::default())
            .unwrap()
            .unwrap();
        let none = HeaderMutations::default();
        let muts = Mutations {
            levels: [Some(&none), None, None],
        };
        let mut req = UpstreamRequest {
            method: b"GET",
            path: b"/ws",
            host: b"a",
            peer_ip: b"10.1.2.3",
            request_id: b"",
            body: None,
            use_remote_address: false,
            upgrade: None,
        };
        let mut out = Vec::new();
        write_upstream_request(&mut out, &req, raw, &spans, &muts);
        let plain = String::from_utf8(out).unwrap().to_ascii_lowercase();
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(!plain.contains(gone), "{gone} leaked: {plain}");
        }
        assert!(plain.contains("sec-websocket-key: k\r\n"), "{plain}");
        req.upgrade = Some(b"websocket");
        let mut out = Vec::new();
        write_upstream_request(&mut out, &req, raw, &spans, &muts);
        let up = String::from_utf8(out).unwrap();
        assert!(
            up.ends_with("connection: upgrade\r\nupgrade: websocket\r\n\r\n"),
            "{up}"
        );
        assert!(!up.to_ascii_lowercase().contains("http2-settings"), "{up}");
    }

    #[test]
    fn upstream_head_is_rewritten_not_copied() {
        let raw = b"POST /x HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\n\
Keep-Alive: timeout=5\r\nTE: trailers\r\nContent-Length: 5\r\nX-Forwarded-For: 192.0.2.1\r\nX-Keep: yes\r\n\r\n";
        let head = upstream_head(raw, &HeaderMutations::default(), true);
        assert!(
            head.starts_with("POST /rewritten HTTP/1.1\r\nhost: example.test\r\n"),
            "{head}"
        );
        for gone in ["onnection", "x-secret", "X-Secret", "Keep-Alive", "TE:"] {
            assert!(!head.contains(gone), "{gone} leaked: {head}");
        }
        assert!(head.contains("X-Keep: yes\r\n"));
        assert!(
            head.contains("x-forwarded-for: 192.0.2.1, 10.1.2.3\r\n"),
            "{head}"
        );
        assert!(head.contains("x-forwarded-proto: http\r\n"));
        assert_eq!(head.matches("content-length").count(), 1);
        assert!(head.ends_with("content-length: 5\r\n\r\n"));
    }

    #[test]
    fn forwarded_for_is_passed_through_without_use_remote_address() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n";
        let head = upstream_head(raw, &HeaderMutations::default(), false);
        assert!(head.contains("x-forwarded-for: 192.0.2.1\r\n"), "{head}");
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(!upstream_head(raw, &HeaderMutations::default(), false).contains("x-forwarded-for"));
    }

    #[test]
    fn request_mutations_follow_append_actions() {
        let raw =
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Over: old\r\nX-Absent: kept\r\nX-Drop: 1\r\n\r\n";
        let add = |name: &str, value: &str, action| HeaderValueOption {
            name: name.into(),
            value: value.into(),
            action,
        };
        let m = mutations_with(
            vec![
                add("x-over", "new", AppendAction::OverwriteIfExistsOrAdd),
                add("x-absent", "ignored", AppendAction::AddIfAbsent),
                add("x-added", "1", AppendAction::AppendIfExistsOrAdd),
            ],
            vec!["x-drop".into()],
        );
        let head = upstream_head(raw, &m, true);
        assert!(!head.contains("old"), "{head}");
        assert!(head.contains("x-over: new\r\n"));
        assert!(head.contains("X-Absent: kept\r\n"));
        assert!(!head.contains("ignored"));
        assert!(head.contains("x-added: 1\r\n"));
        assert!(!head.contains("X-Drop"));
    }

    #[test]
    fn downstream_head_reframes_and_marks_server() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nX-App: a\r\n\r\n";
        let mut spans = Vec::new();
        let head = parse_response(raw, &mut spans, Method::Get, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 200);
        let mut out = Vec::new();
        let resp = DownstreamResponse {
            version: Version::Http11,
            status: 200,
            framing: DownstreamFraming::Chunked,
            head_content_length: None,
            server_name: b"ringway",
            upstream_service_time_ms: Some(7),
            close: false,
            keep_alive_10: false,
            upgrade: None,
        };
        let m = HeaderMutations::default();
        let muts = Mutations {
            levels: [Some(&m), None, None],
        };
        write_downstream_response(&mut out, &resp, raw, &spans, &muts);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(!text.contains("X-Hop"));
        assert!(!text.contains("Connection"));
        assert!(text.contains("X-App: a\r\n"));
        assert!(text.contains("server: ringway\r\n"));
        assert!(text.contains("x-envoy-upstream-service-time: 7\r\n"));
        assert!(
            text.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{text}"
        );
    }
}
