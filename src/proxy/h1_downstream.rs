//! The downstream side of an HTTP/1.1 exchange: the client's connection with its buffers, the
//! parsed request, local replies, and the unread rest of a request body.
//!
//! Shared by the connection loop (`http1_conn.rs`) and the forwarders that serve an HTTP/1.1
//! client (`forward.rs` to HTTP/1.1 upstreams, `h1_to_h2.rs` to HTTP/2 ones), which is why it
//! is none of them: each imports this, and none imports another for these types.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::SendStream;

use crate::config::HttpConnectionManager;
use crate::exchange::request_log::RequestLog;
use crate::exchange::retry::AttemptError;
use crate::exchange::watchdog::Activity;
use crate::http1::body::ChunkedDecoder;
use crate::http1::encode::{write_header, write_status_line};
use crate::http1::parse::{Method, RequestHead, Version};
use crate::http1::{HeadView, HeaderSpan, Span};
use crate::http2::send::send_all;
use crate::proxy::flags::ResponseFlags;
use crate::proxy::grpc;
use crate::proxy::headers::{write_framing_and_connection, DownstreamFraming};
use crate::proxy::io::{read_append_until, write_all_until};
use crate::transport::Transport;
/// The read buffer an idle connection keeps: enough for a typical request head, small enough
/// that ten thousand idle connections cost little.
pub const IDLE_READ_BYTES: usize = 2048;

/// The downstream connection and its reusable buffers.
pub struct Downstream {
    pub stream: Transport,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Unconsumed bytes from the client, starting at index 0.
    pub rbuf: Vec<u8>,
    /// The current request's head, moved out of `rbuf` so the body can stream behind it.
    pub head: Vec<u8>,
    pub headers: Vec<HeaderSpan>,
    /// Outgoing bytes to the client.
    pub out: Vec<u8>,
    /// Peer IP as text, written once per connection.
    pub peer_ip: Vec<u8>,
    /// Set when the connection must close after the current response.
    pub close: bool,
    /// The client may still be sending (a body we did not read, a request we refused): close
    /// with a lingering read so it receives our answer instead of a reset.
    pub linger: bool,
    /// Bytes read from the upstream for the current exchange.
    pub ubuf: Vec<u8>,
    pub uheaders: Vec<HeaderSpan>,
    /// Request body kept for retries (re-encoded when chunked).
    pub body: Vec<u8>,
    /// Small scratch space (rewritten path, request id).
    pub scratch: Vec<u8>,
    /// How long a body read or a response write may stall when no watchdog watches the
    /// exchange (zero while one does: a forwarded request's idleness is its watchdog's, fed by
    /// `progress` stamps).
    pub stream_idle_timeout: Duration,
    /// The current exchange's progress (bytes moved, request complete, response started), read
    /// by its watchdog for the stream limits; reset for each request.
    pub progress: Rc<Activity>,
}

/// The parsed request, with the request-line parts the rest of the path needs.
pub struct Request {
    pub head: RequestHead,
    pub authority: Span,
    pub path: Span,
}

impl Request {
    pub fn view<'a>(&self, head: &'a [u8], headers: &'a [HeaderSpan]) -> HeadView<'a> {
        HeadView {
            buf: head,
            headers,
            method: self.head.method_span.get(head),
            path: self.path.get(head),
            authority: Some(self.authority.get(head)).filter(|a| !a.is_empty()),
            scheme: b"http",
        }
    }
}

/// Serialises a local reply (Envoy's: text/plain body, `server` header).
#[allow(clippy::too_many_arguments)]
pub fn write_local_reply(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    body: &[u8],
    server_name: &[u8],
    close: bool,
    keep_alive_10: bool,
    extra: &[(&[u8], &[u8])],
) {
    write_status_line(out, version, status);
    if !body.is_empty() {
        write_header(out, b"content-type", b"text/plain");
    }
    write_header(out, b"server", server_name);
    for (k, v) in extra {
        write_header(out, k, v);
    }
    write_framing_and_connection(
        out,
        DownstreamFraming::Length(body.len() as u64),
        None,
        close,
        keep_alive_10,
    );
    out.extend_from_slice(body);
}

/// Sends a locally generated response. When the request has a body we have not read, the
/// connection closes afterwards so that body is never taken for the next request. A gRPC
/// request (content-type `application/grpc...`) gets Envoy's gRPC-shaped reply instead: 200,
/// `grpc-status` mapped from `status`, `body` as `grpc-message` (see `proxy::grpc`).
#[allow(clippy::too_many_arguments)]
pub async fn local_reply(
    c: &mut Downstream,
    req: &Request,
    log: &mut RequestLog<'_>,
    status: u16,
    body: &[u8],
    hcm: &HttpConnectionManager,
    body_unread: bool,
    extra: &[(&[u8], &[u8])],
) {
    if body_unread {
        c.close = true;
        c.linger = true;
    }
    c.progress.start_response();
    let is_head = req.head.method == Method::Head;
    let keep_alive_10 = req.head.version == Version::Http10 && !c.close;
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    let content_type = c
        .headers
        .iter()
        .find(|h| h.name.get(&c.head).eq_ignore_ascii_case(b"content-type"))
        .map(|h| h.value.get(&c.head));
    let (status, body) = if grpc::is_grpc_content_type(content_type) {
        // Envoy's gRPC local reply: 200, trailers-only, the body text as grpc-message.
        let mut grpc_headers = Vec::with_capacity(3);
        grpc::local_reply_headers(status, body, &mut grpc_headers);
        let mut all: Vec<(&[u8], &[u8])> = grpc_headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        all.extend_from_slice(extra);
        write_status_line(&mut out, req.head.version, 200);
        write_header(&mut out, b"server", hcm.server_name.as_bytes());
        for (k, v) in &all {
            write_header(&mut out, k, v);
        }
        write_framing_and_connection(
            &mut out,
            DownstreamFraming::Length(0),
            None,
            c.close,
            keep_alive_10,
        );
        (200, &b""[..])
    } else {
        write_local_reply(
            &mut out,
            req.head.version,
            status,
            body,
            hcm.server_name.as_bytes(),
            c.close,
            keep_alive_10,
            extra,
        );
        (status, body)
    };
    if is_head {
        out.truncate(out.len() - body.len());
    }
    let until = body_deadline(c);
    let (res, out) = write_all_until(&mut c.stream, out, until).await;
    c.out = out;
    if res.is_err() {
        c.close = true;
        log.flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
    }
    log.status = status;
    if !is_head {
        log.bytes_sent += body.len() as u64;
    }
}

/// How the request body travels.
pub(crate) enum BodyPlan {
    /// No body.
    Empty,
    /// Whole body in memory: `Length` bodies at the front of `rbuf`, chunked ones re-encoded in
    /// `body`. Replayable.
    BufferedLength(u64),
    BufferedChunked,
    /// Streams from the client while sending; not replayable after the first body byte.
    StreamLength(u64),
    /// The decoded-and-re-encoded prefix is in `body`; the decoder carries on from there.
    StreamChunked(ChunkedDecoder),
}

impl BodyPlan {
    pub(crate) fn buffered(&self) -> bool {
        matches!(
            self,
            BodyPlan::Empty | BodyPlan::BufferedLength(_) | BodyPlan::BufferedChunked
        )
    }
}

/// When a body read must have made progress: the connection manager's `stream_idle_timeout`.
pub(crate) fn body_deadline(c: &Downstream) -> Option<Instant> {
    (!c.stream_idle_timeout.is_zero()).then(|| Instant::now() + c.stream_idle_timeout)
}

/// The unread rest of an HTTP/1.1 request body, read from the client as it is forwarded.
pub struct H1BodyRest<'a> {
    pub(crate) c: &'a mut Downstream,
    pub(crate) framing: RestFraming,
}

pub(crate) enum RestFraming {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl H1BodyRest<'_> {
    /// Forwards the rest of the body onto `up` and ends the stream.
    pub(crate) async fn pump(
        &mut self,
        up: &mut SendStream<Bytes>,
        chunk: usize,
        activity: &Activity,
    ) -> Result<(), AttemptError> {
        let reset = |_| AttemptError::Reset {
            before_response: false,
        };
        let mut decoded = Vec::new();
        loop {
            let done = match &mut self.framing {
                RestFraming::Length(remaining) => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.c.rbuf.len());
                    if take > 0 {
                        let data = Bytes::copy_from_slice(&self.c.rbuf[..take]);
                        self.c.rbuf.drain(..take);
                        *remaining -= take as u64;
                        send_all(up, data, *remaining == 0, activity)
                            .await
                            .map_err(reset)?;
                        if *remaining == 0 {
                            return Ok(());
                        }
                    }
                    *remaining == 0
                }
                RestFraming::Chunked(dec) => {
                    decoded.clear();
                    let Ok(consumed) = dec.feed(&self.c.rbuf, &mut decoded, false) else {
                        self.c.close = true;
                        return Err(AttemptError::BadBody);
                    };
                    self.c.rbuf.drain(..consumed);
                    let done = dec.is_done();
                    if !decoded.is_empty() || done {
                        send_all(up, Bytes::copy_from_slice(&decoded), done, activity)
                            .await
                            .map_err(reset)?;
                    }
                    if done {
                        return Ok(());
                    }
                    false
                }
            };
            if done {
                up.send_data(Bytes::new(), true)
                    .map_err(|_| AttemptError::Reset {
                        before_response: false,
                    })?;
                return Ok(());
            }
            let buf = std::mem::take(&mut self.c.rbuf);
            let until = body_deadline(self.c);
            let (res, buf) = read_append_until(&mut self.c.stream, buf, chunk, until).await;
            self.c.progress.stamp();
            self.c.rbuf = buf;
            res.map_err(|_| AttemptError::Downstream)?;
        }
    }
}
