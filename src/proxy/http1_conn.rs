//! One downstream HTTP/1.1 connection, from the first byte to close.
//!
//! The loop is: read a complete head (bounded by the header limits and the headers timeout),
//! parse it strictly, route it, then either answer locally or hand it to `forward`. Requests are
//! served strictly one after another, which is what makes pipelining safe: bytes of the next
//! request simply wait in the read buffer until this one's response is written. Any local reply
//! sent while the request body is still unread closes the connection, so an unread body can
//! never be parsed as the next request (the `Expect: 100-continue` and early-error cases).
//!
//! Buffers belong to the work, not the connection: an idle keep-alive connection holds a small
//! read buffer ([`IDLE_READ_BYTES`]), its last request head and its header spans. The large
//! buffers (outgoing bytes, the upstream's response, a read buffer grown for a body) are lent by
//! the worker's [`BufPool`] when a request arrives and given back when the connection goes
//! idle, so memory follows requests in flight rather than connections open.
//!
//! [`BufPool`]: crate::bufpool::BufPool

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::transport::Transport;

use crate::config::{ForwardAction, HttpConnectionManager, RouteAction};
use crate::exchange::active::ActiveRequest;
use crate::exchange::request_log::{log_request, LoggedConnection, RequestLog};
use crate::exchange::watchdog::{stream_watchdog, Activity, Expiry, StreamLimits};
use crate::http1::parse::{parse_request, BodyFraming, Limits, RequestHead, Version};
use crate::http1::{HeaderSpan, Span};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::h1_downstream::{
    body_deadline, local_reply, write_local_reply, Downstream, Request, IDLE_READ_BYTES,
};
use crate::proxy::headers::Mutations;
use crate::proxy::io::{read_append_until, write_all_until, IoFail};
use crate::proxy::tunnel::Upgraded;
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::HttpStat;

/// Serves one accepted connection until it closes.
pub async fn serve(
    w: &Rc<Worker>,
    listener: usize,
    stream: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    initial: Vec<u8>,
) {
    let mut c = Downstream {
        stream,
        peer,
        local,
        rbuf: initial,
        head: Vec::new(),
        headers: Vec::with_capacity(16),
        out: Vec::new(),
        peer_ip: peer.ip().to_string().into_bytes(),
        close: false,
        linger: false,
        ubuf: Vec::new(),
        uheaders: Vec::new(),
        body: Vec::new(),
        scratch: Vec::new(),
        stream_idle_timeout: Duration::ZERO,
        progress: Rc::new(Activity::default()),
    };
    let cfg = &w.shared.config;
    let Some(listener_cfg) = cfg.listeners.get(listener) else {
        return;
    };
    let hcm = &listener_cfg.hcm;
    c.stream_idle_timeout = hcm.stream_idle_timeout;
    let limits = Limits {
        max_head_bytes: hcm.max_request_headers_kb as usize * 1024,
        max_headers: hcm.max_headers_count as usize,
        max_request_line: 8 * 1024,
    };
    let mut first = true;
    while !c.close {
        if w.draining() && c.rbuf.is_empty() {
            break;
        }
        let req = match read_request(w, listener, &mut c, hcm, &limits, first).await {
            Some(r) => r,
            None => break,
        };
        first = false;
        c.lend_buffers(w);
        let active = ActiveRequest::start(w, listener);
        let upgraded = handle_request(w, listener, &mut c, hcm, &req).await;
        c.return_buffers(w);
        if let Some((up, mut log, limits)) = upgraded {
            // The upstream switched protocols: this connection is a tunnel from now on and
            // ends with it, so the stream is moved out of `c` for good.
            let Downstream {
                stream,
                rbuf,
                ubuf,
                head,
                headers,
                peer,
                local,
                progress,
                ..
            } = c;
            // The tunnel keeps the route's idle timeout; its whole life is the stream's
            // (Envoy applies max_stream_duration to upgraded streams too).
            let life = StreamLimits {
                max_duration: limits.max_duration,
                ..StreamLimits::default()
            };
            let start = log.start;
            let expired = {
                let tunnel = Box::pin(super::tunnel::run(
                    w,
                    listener,
                    stream,
                    rbuf,
                    up,
                    ubuf,
                    limits.idle,
                    &mut log,
                ));
                let watchdog = stream_watchdog(&progress, start, life);
                monoio::select! {
                    _ = tunnel => None,
                    expiry = watchdog => Some(expiry),
                }
            };
            if let Some(expiry) = expired {
                expiry.record(w, listener, &mut log, &progress);
            }
            let parts = ConnParts {
                head: &head,
                headers: &headers,
                peer,
                local,
            };
            log.phases_from(progress.phases());
            finish_request(w, listener, &parts, &req, &log);
            drop(active);
            return;
        }
        drop(active);
    }
    if c.linger {
        linger_close(&mut c).await;
    }
}

/// nginx's `lingering_timeout` and `lingering_time`: how long a closing connection keeps
/// reading (and discarding) what the client still sends, per silence and in all.
const LINGER_QUIET: Duration = Duration::from_secs(5);
const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// Closes after an answer the client may not have finished sending for (an error reply to an
/// oversized or malformed request, an upstream's early answer): our side stops sending, and
/// what the client still sends is read and discarded until it stops, so the close is not a
/// reset that would destroy the answer in the client's receive buffer.
async fn linger_close(c: &mut Downstream) {
    use monoio::io::AsyncWriteRent;
    if c.stream.shutdown().await.is_err() {
        return;
    }
    let end = Instant::now() + LINGER_TOTAL;
    let mut buf = std::mem::take(&mut c.rbuf);
    loop {
        buf.clear();
        let until = (Instant::now() + LINGER_QUIET).min(end);
        let (res, b) = read_append_until(&mut c.stream, buf, 16 * 1024, Some(until)).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}

/// What the access log needs of the connection (borrowed apart from `Downstream` so a tunnel
/// can own the stream while the request is logged).
struct ConnParts<'a> {
    head: &'a [u8],
    headers: &'a [HeaderSpan],
    peer: SocketAddr,
    local: SocketAddr,
}

/// Reads and parses the next request head. `None`: the connection is done (closed, timed out,
/// or answered with an error).
async fn read_request(
    w: &Rc<Worker>,
    listener: usize,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    limits: &Limits,
    first: bool,
) -> Option<Request> {
    // The first request's head is due request_headers_timeout after the connection began, so a
    // connection that never sends a byte is closed then; later ones are timed from their first
    // byte, the keep-alive wait before it being idle_timeout's.
    let headers_timeout =
        (!hcm.request_headers_timeout.is_zero()).then_some(hcm.request_headers_timeout);
    let mut deadline: Option<Instant> = if first {
        headers_timeout.map(|t| Instant::now() + t)
    } else {
        None
    };
    loop {
        let mut headers = std::mem::take(&mut c.headers);
        let parsed = parse_request(&c.rbuf, &mut headers, limits);
        c.headers = headers;
        match parsed {
            Ok(Some(head)) => {
                c.head.clear();
                c.head
                    .extend_from_slice(c.rbuf.get(..head.head_len).unwrap_or(&[]));
                c.rbuf.drain(..head.head_len.min(c.rbuf.len()));
                let Some(mut req) = split_target(head, &c.head) else {
                    c.close = true;
                    return None;
                };
                if req.head.version == Version::Http10 && req.authority.is_empty() {
                    // Envoy: an HTTP/1.0 request without a host is refused with 426 unless
                    // `accept_http_10`, which routes it by `default_host_for_http_10`.
                    match (&hcm.default_host_for_http_10, hcm.accept_http_10) {
                        (Some(host), true) => {
                            // The host goes after the head in the same buffer, so the request
                            // keeps pointing into one place.
                            let start = c.head.len() as u32;
                            c.head.extend_from_slice(host.as_bytes());
                            req.authority = Span {
                                start,
                                end: c.head.len() as u32,
                            };
                        }
                        (None, true) => {}
                        (_, false) => {
                            if let Some(hs) = w.stats().http.get(listener) {
                                hs.codes.inc(w.index, 426);
                            }
                            send_error_and_close(c, 426, b"", hcm).await;
                            return None;
                        }
                    }
                }
                return Some(req);
            }
            Ok(None) => {}
            Err(e) => {
                let stats = w.stats();
                if let Some(hs) = stats.http.get(listener) {
                    hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
                    hs.codes.inc(w.index, e.status());
                }
                let body: &[u8] = match e {
                    crate::http1::parse::RequestError::BadRequest(why) => why.as_bytes(),
                    crate::http1::parse::RequestError::NotImplemented(why) => why.as_bytes(),
                    _ => b"",
                };
                send_error_and_close(c, e.status(), body, hcm).await;
                return None;
            }
        }
        // Need more bytes. An idle connection waits up to the idle timeout; once a request has
        // begun, the whole head must arrive within request_headers_timeout.
        let now = Instant::now();
        let wait_until = if c.rbuf.is_empty() && deadline.is_none() {
            (!hcm.idle_timeout.is_zero()).then(|| now + hcm.idle_timeout)
        } else {
            if deadline.is_none() {
                deadline = headers_timeout.map(|t| now + t);
            }
            deadline
        };
        let buf = std::mem::take(&mut c.rbuf);
        // Read into the space there is (an idle connection's small buffer); grow only when a
        // head does not fit.
        let room = (buf.capacity() - buf.len()).max(IDLE_READ_BYTES / 2);
        let (res, buf) = read_append_until(&mut c.stream, buf, room, wait_until).await;
        c.rbuf = buf;
        match res {
            Ok(n) => {
                if deadline.is_none() {
                    deadline = headers_timeout.map(|t| Instant::now() + t);
                }
                if let Some(hs) = w.stats().http.get(listener) {
                    hs.add(w.index, HttpStat::DownstreamCxRxBytesTotal, n as u64);
                }
            }
            Err(IoFail::TimedOut) => {
                if !c.rbuf.is_empty() || deadline.is_some_and(|d| d <= Instant::now()) {
                    if let Some(hs) = w.stats().http.get(listener) {
                        hs.inc(w.index, HttpStat::DownstreamRqHeaderTimeout);
                    }
                    send_error_and_close(c, 408, b"", hcm).await;
                }
                return None;
            }
            Err(_) => {
                if let Some(hs) = w.stats().http.get(listener) {
                    hs.inc(w.index, HttpStat::DownstreamCxDestroyRemote);
                }
                return None;
            }
        }
    }
}

/// Splits the request target into authority and path (origin-form, absolute-form or `*`).
fn split_target(head: RequestHead, buf: &[u8]) -> Option<Request> {
    let t = head.target;
    let target = t.get(buf);
    let host = head.host.unwrap_or_default();
    if target.first() == Some(&b'/') || target == b"*" {
        return Some(Request {
            head,
            authority: host,
            path: t,
        });
    }
    // absolute-form: scheme "://" authority [path]
    let sep = target.windows(3).position(|w| w == b"://")?;
    let auth_start = sep + 3;
    let rest = &target[auth_start..];
    let auth_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = Span {
        start: t.start + auth_start as u32,
        end: t.start + (auth_start + auth_len) as u32,
    };
    let path = Span {
        start: authority.end,
        end: t.end,
    };
    Some(Request {
        head,
        authority,
        path,
    })
}

/// Writes a local reply and marks the connection for close.
async fn send_error_and_close(
    c: &mut Downstream,
    status: u16,
    body: &[u8],
    hcm: &HttpConnectionManager,
) {
    c.close = true;
    c.linger = true;
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    write_local_reply(
        &mut out,
        Version::Http11,
        status,
        body,
        hcm.server_name.as_bytes(),
        true,
        false,
        &[],
    );
    let until = body_deadline(c);
    let (_, out) = write_all_until(&mut c.stream, out, until).await;
    c.out = out;
}

/// Routes and serves one parsed request, then logs it. `Some`: the upstream accepted an
/// upgrade; the caller runs the tunnel under the route's limits and then finishes (logs) the
/// request.
async fn handle_request<'w>(
    w: &'w Rc<Worker>,
    listener: usize,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
) -> Option<(Upgraded<'w>, RequestLog<'w>, StreamLimits)> {
    let stats = &w.shared.stats;
    let hs = stats.http.get(listener);
    if let Some(hs) = hs {
        hs.inc(w.index, HttpStat::DownstreamRqTotal);
        hs.inc(w.index, HttpStat::DownstreamRqHttp1Total);
    }
    w.membership.borrow_mut().refresh();

    let mut log = RequestLog::start_now();
    let keep_alive = req.head.keep_alive && !w.draining();
    if !keep_alive {
        c.close = true;
    }

    let shared = &w.shared;
    let router = &shared.routers[listener];
    let matched = {
        let view = req.view(&c.head, &c.headers);
        router.route(req.authority.get(&c.head), req.path.get(&c.head), &view)
    };
    let has_body = matches!(req.head.framing, BodyFraming::Chunked)
        || matches!(req.head.framing, BodyFraming::Length(n) if n > 0);
    match matched {
        None => {
            if let Some(hs) = hs {
                hs.inc(w.index, HttpStat::NoRoute);
            }
            log.flags.insert(ResponseFlags::NO_ROUTE_FOUND);
            local_reply(c, req, &mut log, 404, b"", hcm, has_body, &[]).await;
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
                    local_reply(c, req, &mut log, d.status, body, hcm, has_body, &adds).await;
                }
                RouteAction::Forward(action) => {
                    let retry = action
                        .retry_policy
                        .as_ref()
                        .or(m.vhost.retry_policy.as_ref());
                    let upgrade = match upgrade_decision(c, req, hcm, action) {
                        Ok(u) => u,
                        Err(()) => {
                            // Envoy: an upgrade the route does not allow is refused with 403,
                            // and the connection closes (its payload may be no HTTP at all).
                            local_reply(c, req, &mut log, 403, b"", hcm, true, &[]).await;
                            log.phases_from(c.progress.phases());
                            finish_request(w, listener, &c.parts(), req, &log);
                            return None;
                        }
                    };
                    // The route's stream limits, all enforced by one watchdog over the
                    // exchange's progress stamps (no deadline per read or write for idleness).
                    let limits = StreamLimits::of(hcm, Some(action));
                    c.stream_idle_timeout = Duration::ZERO;
                    c.progress.reset();
                    let progress = Rc::clone(&c.progress);
                    let start = log.start;
                    let outcome = {
                        // Boxed, once per forwarded request: inline, the forwarder's state
                        // (about 4 KiB) would be part of every connection's task for its whole
                        // life, idle keep-alive ones included; boxed, an idle connection's task
                        // is the read it waits in. One allocation per request from the worker's
                        // own heap is the price of idle connections costing a third as much.
                        let forwarding = Box::pin(super::forward::forward(
                            w,
                            listener,
                            c,
                            hcm,
                            req,
                            m.route,
                            action,
                            retry,
                            &mutations,
                            &mut log,
                            upgrade.as_deref(),
                        ));
                        let watchdog = stream_watchdog(&progress, start, limits);
                        monoio::select! {
                            upgraded = forwarding => Ok(upgraded),
                            expiry = watchdog => Err(expiry),
                        }
                    };
                    c.stream_idle_timeout = hcm.stream_idle_timeout;
                    match outcome {
                        Ok(Some(up)) => return Some((up, log, limits)),
                        Ok(None) => {}
                        Err(expiry) => {
                            answer_expiry(w, listener, c, hcm, req, &mut log, expiry).await;
                        }
                    }
                }
            }
        }
    }

    log.phases_from(c.progress.phases());

    finish_request(w, listener, &c.parts(), req, &log);
    None
}

/// Ends a request a stream limit cut short (the forwarder was dropped wherever it was, which
/// released everything it held). Envoy's answer when no response has started; otherwise the
/// connection just closes, since a partial response cannot be finished. Either way the
/// connection closes: what the client was still sending is unread.
async fn answer_expiry(
    w: &Rc<Worker>,
    listener: usize,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
    log: &mut RequestLog<'_>,
    expiry: Expiry,
) {
    let reply = expiry.record(w, listener, log, &c.progress);
    c.close = true;
    if c.progress.response_started() {
        return;
    }
    let unread = !c.progress.request_complete();
    local_reply(c, req, log, reply.status, reply.body, hcm, unread, &[]).await;
}

/// Which upgrade to ask the upstream for. `Ok(None)`: not an upgrade request, or `h2c`, which
/// Envoy's HTTP/1.1 codec strips (the request goes on as plain HTTP/1.1 without Upgrade,
/// Connection and HTTP2-Settings). `Err`: an upgrade neither the route nor the connection
/// manager enables. Route `upgrade_configs` override the connection manager's, type by type.
fn upgrade_decision(
    c: &Downstream,
    req: &Request,
    hcm: &HttpConnectionManager,
    action: &ForwardAction,
) -> Result<Option<Vec<u8>>, ()> {
    let Some(span) = req.head.upgrade else {
        return Ok(None);
    };
    let value = span.get(&c.head);
    if value.eq_ignore_ascii_case(b"h2c") {
        return Ok(None);
    }
    let enabled = match action
        .upgrade_overrides
        .iter()
        .find(|(t, _)| t.as_bytes().eq_ignore_ascii_case(value))
    {
        Some((_, on)) => *on,
        None => hcm
            .upgrade_types
            .iter()
            .any(|t| t.as_bytes().eq_ignore_ascii_case(value)),
    };
    if enabled {
        Ok(Some(value.to_vec()))
    } else {
        Err(())
    }
}

impl Downstream {
    /// Takes the large buffers a request needs from the worker's pool.
    fn lend_buffers(&mut self, w: &Worker) {
        let mut bufs = w.bufs.borrow_mut();
        if self.out.capacity() == 0 {
            self.out = bufs.take();
        }
        if self.ubuf.capacity() == 0 {
            self.ubuf = bufs.take();
        }
    }

    /// Gives the large buffers back once the request is done. The read buffer keeps any
    /// pipelined bytes; an empty one that grew (for a body) is swapped for a small one.
    fn return_buffers(&mut self, w: &Worker) {
        let mut bufs = w.bufs.borrow_mut();
        bufs.give(std::mem::take(&mut self.out));
        bufs.give(std::mem::take(&mut self.ubuf));
        if self.body.capacity() > 0 {
            bufs.give(std::mem::take(&mut self.body));
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_READ_BYTES {
            bufs.give(std::mem::replace(
                &mut self.rbuf,
                Vec::with_capacity(IDLE_READ_BYTES),
            ));
        }
    }

    fn parts(&self) -> ConnParts<'_> {
        ConnParts {
            head: &self.head,
            headers: &self.headers,
            peer: self.peer,
            local: self.local,
        }
    }
}

/// Stats and access log for a finished request.
fn finish_request(
    w: &Rc<Worker>,
    listener: usize,
    c: &ConnParts<'_>,
    req: &Request,
    log: &RequestLog<'_>,
) {
    let hs = w.shared.stats.http.get(listener);
    let elapsed = log.start.elapsed();
    if let Some(hs) = hs {
        if log.status != 0 {
            hs.codes.inc(w.index, log.status);
        }
        hs.add(w.index, HttpStat::DownstreamCxTxBytesTotal, log.bytes_sent);
    }
    w.histograms.borrow_mut().record(
        HistogramId::DownstreamRqTime(listener),
        elapsed.as_micros() as u64,
    );
    write_access_log(w, listener, c, req, log, elapsed);
}

fn write_access_log(
    w: &Rc<Worker>,
    listener: usize,
    c: &ConnParts<'_>,
    req: &Request,
    log: &RequestLog<'_>,
    elapsed: Duration,
) {
    let head_view = req.view(c.head, c.headers);
    let protocol = match req.head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    let conn = LoggedConnection {
        listener,
        protocol,
        peer: c.peer,
        local: c.local,
    };
    log_request(w, &conn, &head_view, log, elapsed);
}
