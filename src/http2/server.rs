//! Downstream HTTP/2 connections: the `h2` server, its edge limits, and one task per stream.
//!
//! The connection task owns the `h2` state machine and does nothing but accept streams, so the
//! codec is always being driven while stream tasks (spawned on the same worker) proxy their
//! requests. It also watches for the things `h2` does not handle: the [`FrameGuard`] tripping on
//! a flood (GOAWAY `ENHANCE_YOUR_CALM`, then close), the worker draining (graceful GOAWAY), and
//! the connection idling past `idle_timeout` with no open stream.
//!
//! Each stream task checks what RFC 9113 §8.3 requires and `h2` lets through (a request without
//! `:path`, `host` disagreeing with `:authority`, field values with leading or trailing
//! whitespace): such a request is malformed, and the stream is reset with `PROTOCOL_ERROR`.
//!
//! [`FrameGuard`]: super::guard::FrameGuard

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};

use super::io::{AbuseFlag, H2Io};
use super::{MAX_HEADER_LIST_SIZE, MAX_SEND_BUFFER};
use crate::config::{HttpConnectionManager, RouteAction};
use crate::http1::HeaderLookup;
use crate::proxy::flags::ResponseFlags;
use crate::proxy::headers::Mutations;
use crate::proxy::http1_conn::RequestLog;
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::HttpStat;
use crate::transport::Transport;

/// What every stream of one connection shares.
pub struct ConnCtx {
    pub listener: usize,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub peer_ip: Vec<u8>,
    pub tls: bool,
}

enum Event {
    Stream(Box<(Request<RecvStream>, SendResponse<Bytes>)>),
    Abuse(super::guard::Abuse),
    Failed(h2::Error),
    Closed,
    Tick,
}

/// h2's limit on streams reset while still waiting to be accepted; above FrameGuard's 500.
const H2_PENDING_ACCEPT_RESETS: usize = 1000;

/// How often the connection loop looks at drain state and idleness.
const TICK: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection until it closes.
pub async fn serve(
    w: &Rc<Worker>,
    listener: usize,
    stream: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    initial: Vec<u8>,
) {
    let Some(hcm) = w.shared.config.listeners.get(listener).map(|l| &l.hcm) else {
        return;
    };
    let hs = w.stats().http.get(listener);
    let ctx = Rc::new(ConnCtx {
        listener,
        peer,
        local,
        peer_ip: peer.ip().to_string().into_bytes(),
        tls: stream.is_tls(),
    });
    let flag: AbuseFlag = Rc::new(Cell::new(None));
    let io = H2Io::server(stream, initial, flag.clone());
    let rx = io.rx_counter();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(hcm.http2.max_concurrent_streams)
        .initial_window_size(hcm.http2.initial_stream_window_size)
        .initial_connection_window_size(hcm.http2.initial_connection_window_size)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // Rapid Reset is ours to stop (FrameGuard's premature-reset rule, with its stat): h2's
        // own pending-accept limit is set above the point where ours trips, so the defence
        // that fires is the one we count and test.
        .max_pending_accept_reset_streams(H2_PENDING_ACCEPT_RESETS);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(hcm.request_headers_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        _ => {
            if let Some(hs) = hs {
                hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
            }
            return;
        }
    };
    let open_streams = Rc::new(Cell::new(0usize));
    let mut idle_since = Some(Instant::now());
    let mut shutting_down = false;
    let mut tick = Box::pin(monoio::time::sleep(TICK));
    loop {
        let event = poll_fn(|cx| {
            if let Some(abuse) = flag.get() {
                return Poll::Ready(Event::Abuse(abuse));
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok(pair))) => return Poll::Ready(Event::Stream(Box::new(pair))),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Failed(e)),
                Poll::Ready(None) => return Poll::Ready(Event::Closed),
                Poll::Pending => {}
            }
            match tick.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Event::Tick),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Stream(pair) => {
                let (req, respond) = *pair;
                idle_since = None;
                open_streams.set(open_streams.get() + 1);
                let (w, ctx, open) = (w.clone(), ctx.clone(), open_streams.clone());
                monoio::spawn(async move {
                    handle_stream(&w, &ctx, req, respond).await;
                    open.set(open.get().saturating_sub(1));
                });
            }
            Event::Abuse(abuse) => {
                warn!(
                    "worker {}: closing HTTP/2 connection from {peer}: {}",
                    w.index,
                    abuse.as_str()
                );
                if let Some(hs) = hs {
                    hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
                    hs.inc(w.index, abuse.stat());
                }
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                let flush = poll_fn(|cx| conn.poll_closed(cx));
                let _ = monoio::time::timeout(Duration::from_secs(1), flush).await;
                break;
            }
            Event::Failed(e) => {
                if e.is_go_away() || e.reason().is_some_and(|r| r != Reason::NO_ERROR) {
                    if let Some(hs) = hs {
                        hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
                    }
                }
                break;
            }
            Event::Closed => break,
            Event::Tick => {
                tick = Box::pin(monoio::time::sleep(TICK));
                let now = Instant::now();
                if open_streams.get() == 0 {
                    let since = *idle_since.get_or_insert(now);
                    let idle = hcm.idle_timeout;
                    if !idle.is_zero() && now.duration_since(since) >= idle && !shutting_down {
                        conn.graceful_shutdown();
                        shutting_down = true;
                    }
                } else {
                    idle_since = None;
                }
                if w.draining() && !shutting_down {
                    if let Some(hs) = hs {
                        hs.inc(w.index, HttpStat::DownstreamCxDrainClose);
                    }
                    conn.graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    }
    if let Some(hs) = hs {
        hs.add(w.index, HttpStat::DownstreamCxRxBytesTotal, rx.get());
    }
}

/// The request's pseudo-headers and headers as the router and access log read them.
pub struct StreamHead<'a> {
    pub parts: &'a Parts,
    pub authority: &'a [u8],
    pub path: &'a [u8],
    pub scheme: &'a [u8],
}

impl HeaderLookup for StreamHead<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => Some(self.parts.method.as_str().as_bytes()),
            ":path" => Some(self.path),
            ":authority" | "host" => Some(self.authority),
            ":scheme" => Some(self.scheme),
            _ => self.parts.headers.get(name).map(|v| v.as_bytes()),
        }
    }
}

/// Why a request is malformed in ways `h2` does not check (RFC 9113 §8.3, §8.2.1).
fn malformed(parts: &Parts) -> Option<&'static str> {
    if parts.method == http::Method::CONNECT {
        return Some("CONNECT is not supported");
    }
    match parts.uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => {}
        _ => return Some("missing :path"),
    }
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let host = parts.headers.get(http::header::HOST).map(|h| h.as_bytes());
    match (authority, host) {
        (None, None) => return Some("missing :authority and host"),
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            return Some("host disagrees with :authority")
        }
        _ => {}
    }
    for value in parts.headers.values() {
        let v = value.as_bytes();
        let ws = |b: &u8| *b == b' ' || *b == b'\t';
        if v.first().is_some_and(ws) || v.last().is_some_and(ws) {
            return Some("field value with leading or trailing whitespace");
        }
    }
    None
}

/// Serves one stream: validate, route, answer locally or forward, then stats and access log.
async fn handle_stream(
    w: &Rc<Worker>,
    ctx: &ConnCtx,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let listener = ctx.listener;
    let Some(hcm) = w.shared.config.listeners.get(listener).map(|l| &l.hcm) else {
        return;
    };
    let hs = w.stats().http.get(listener);
    if let Some(hs) = hs {
        hs.inc(w.index, HttpStat::DownstreamRqTotal);
        hs.inc(w.index, HttpStat::DownstreamRqHttp2Total);
    }
    let (parts, body) = req.into_parts();
    if let Some(why) = malformed(&parts) {
        debug!("worker {}: malformed HTTP/2 request: {why}", w.index);
        if let Some(hs) = hs {
            hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
            hs.codes.inc(w.index, 400);
        }
        respond.send_reset(Reason::PROTOCOL_ERROR);
        return;
    }
    if let Some(hs) = hs {
        hs.inc(w.index, HttpStat::DownstreamRqActive);
    }
    w.in_flight.set(w.in_flight.get() + 1);
    w.membership.borrow_mut().refresh();

    let authority: &[u8] = match parts.uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => parts
            .headers
            .get(http::header::HOST)
            .map_or(&[][..], |h| h.as_bytes()),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(&b"/"[..], |p| p.as_str().as_bytes());
    let scheme: &[u8] = if ctx.tls { b"https" } else { b"http" };
    let head = StreamHead {
        parts: &parts,
        authority,
        path,
        scheme,
    };
    let grpc = is_grpc(&parts.headers);
    let mut log = RequestLog {
        start: Instant::now(),
        start_time: SystemTime::now(),
        status: 0,
        flags: ResponseFlags::default(),
        bytes_received: 0,
        bytes_sent: 0,
        upstream_host: None,
        cluster: None,
        upstream_service_time: None,
        route_name: "",
        response_head: Vec::new(),
        response_headers: Vec::new(),
        generated_request_id: Vec::new(),
    };
    let router = &w.shared.routers[listener];
    match router.route(authority, path, &head) {
        None => {
            if let Some(hs) = hs {
                hs.inc(w.index, HttpStat::NoRoute);
            }
            log.flags.insert(ResponseFlags::NO_ROUTE_FOUND);
            local_reply(&mut respond, hcm, grpc, 404, b"", &[], &mut log);
        }
        Some(m) => {
            log.route_name = &m.route.name;
            let mutations = Mutations {
                levels: [
                    Some(&m.route.headers),
                    Some(&m.vhost.headers),
                    Some(&router.config.headers),
                ],
            };
            match &m.route.action {
                RouteAction::Direct(d) => {
                    if let Some(hs) = hs {
                        hs.inc(w.index, HttpStat::RqDirectResponse);
                    }
                    let body = d.body.as_deref().unwrap_or("").as_bytes();
                    let adds = mutations.response_additions();
                    local_reply(&mut respond, hcm, grpc, d.status, body, &adds, &mut log);
                }
                RouteAction::Forward(action) => {
                    let retry = action
                        .retry_policy
                        .as_ref()
                        .or(m.vhost.retry_policy.as_ref());
                    let req = crate::proxy::stream_forward::StreamRequest {
                        ctx,
                        hcm,
                        head: &head,
                        grpc,
                        route: m.route,
                        action,
                        retry,
                        mutations: &mutations,
                    };
                    crate::proxy::stream_forward::forward(w, &req, body, &mut respond, &mut log)
                        .await;
                }
            }
        }
    }

    let elapsed = log.start.elapsed();
    if let Some(hs) = hs {
        hs.dec(w.index, HttpStat::DownstreamRqActive);
        if log.status != 0 {
            hs.codes.inc(w.index, log.status);
        }
        hs.add(w.index, HttpStat::DownstreamCxTxBytesTotal, log.bytes_sent);
    }
    w.histograms.borrow_mut().record(
        HistogramId::DownstreamRqTime(listener),
        elapsed.as_micros() as u64,
    );
    write_access_log(w, ctx, &head, &log, elapsed);
    w.in_flight.set(w.in_flight.get().saturating_sub(1));
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    crate::proxy::grpc::is_grpc_content_type(content_type)
}

/// Answers the stream locally. gRPC requests get Envoy's gRPC-shaped reply: HTTP 200 carrying
/// the mapped `grpc-status` and the reply text as `grpc-message` (trailers-only).
pub fn local_reply(
    respond: &mut SendResponse<Bytes>,
    hcm: &HttpConnectionManager,
    grpc: bool,
    status: u16,
    body: &[u8],
    extra: &[(&[u8], &[u8])],
    log: &mut RequestLog<'_>,
) {
    let mut builder = Response::builder();
    let code = if grpc {
        let mut fields = Vec::with_capacity(3);
        crate::proxy::grpc::local_reply_headers(status, body, &mut fields);
        for (name, value) in fields {
            builder = builder.header(name, value);
        }
        200
    } else {
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "text/plain");
        }
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
        status
    };
    builder = builder
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY))
        .header(http::header::SERVER, hcm.server_name.as_str());
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let Ok(resp) = builder.body(()) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    log.status = code;
    let end = grpc || body.is_empty();
    match respond.send_response(resp, end) {
        Ok(mut send) if !end => {
            // Local bodies are small; h2 buffers them within the stream's send buffer.
            if send.send_data(Bytes::copy_from_slice(body), true).is_ok() {
                log.bytes_sent += body.len() as u64;
            }
        }
        Ok(_) => {}
        Err(_) => log
            .flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION),
    }
}

fn write_access_log(
    w: &Rc<Worker>,
    ctx: &ConnCtx,
    head: &StreamHead<'_>,
    log: &RequestLog<'_>,
    elapsed: Duration,
) {
    let conn = crate::proxy::http1_conn::LoggedConnection {
        listener: ctx.listener,
        protocol: "HTTP/2",
        peer: ctx.peer,
        local: ctx.local,
    };
    crate::proxy::http1_conn::log_request(w, &conn, head, log, elapsed);
}
