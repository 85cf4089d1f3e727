//! One request on a downstream HTTP/2 stream, from the stream's arrival to its access-log line:
//! the checks RFC 9113 §8.3 requires and `h2` lets through, routing, a local answer or the
//! stream forwarder, then stats and the log.
//!
//! A request without `:path`, with `host` disagreeing with `:authority`, or with field values
//! that have leading or trailing whitespace is malformed, and the stream is reset with
//! `PROTOCOL_ERROR`. This is the handler `proxy::connection` gives the codec driver
//! (`http2::server::serve`); the HTTP/1.1 counterpart is `http1_conn.rs`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::request::Parts;
use http::Request;

use crate::config::RouteAction;
use crate::exchange::active::ActiveRequest;
use crate::exchange::request_log::{log_request, LoggedConnection, RequestLog};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::h2_downstream::{is_grpc, local_reply, ConnCtx, StreamHead};
use crate::proxy::headers::Mutations;
use crate::proxy::stream_forward::{forward, StreamRequest};
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::HttpStat;

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
pub async fn serve_stream(
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
    let _active = ActiveRequest::start(w, listener);
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
    let mut log = RequestLog::start_now();
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
                    let req = StreamRequest {
                        ctx,
                        hcm,
                        head: &head,
                        grpc,
                        route: m.route,
                        action,
                        retry,
                        mutations: &mutations,
                    };
                    forward(w, &req, body, &mut respond, &mut log).await;
                }
            }
        }
    }

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
    write_access_log(w, ctx, &head, &log, elapsed);
}

fn write_access_log(
    w: &Rc<Worker>,
    ctx: &ConnCtx,
    head: &StreamHead<'_>,
    log: &RequestLog<'_>,
    elapsed: Duration,
) {
    let conn = LoggedConnection {
        listener: ctx.listener,
        protocol: "HTTP/2",
        peer: ctx.peer,
        local: ctx.local,
    };
    log_request(w, &conn, head, log, elapsed);
}
