//! HTTP/1.1 clients of HTTP/2 clusters: the request translated into an HTTP/2 stream, the
//! response translated back.
//!
//! The request side builds the `http` request the stream forwarder (`stream_forward`) takes:
//! `Host` becomes `:authority`, connection-specific fields are dropped, and the body is decoded
//! from its HTTP/1.1 framing (the forwarder's retry rules then apply unchanged). Bodies past the
//! retry buffer stream from the client's connection as the upstream's window allows.
//!
//! The response side writes an HTTP/1.1 head: `content-length` when the upstream gave one,
//! chunked otherwise (close-delimited for HTTP/1.0 clients), and the upstream's trailers as
//! chunked trailer fields.

use std::rc::Rc;

use bytes::Bytes;
use h2::RecvStream;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response};

use crate::config::{ForwardAction, HttpConnectionManager, RetryPolicy, Route};
use crate::exchange::admission::ClusterRequest;
use crate::exchange::outcome::failure_reply;
use crate::exchange::request_log::RequestLog;
use crate::http1::body::ChunkedDecoder;
use crate::http1::encode::{write_chunk, write_header, write_last_chunk, write_status_line};
use crate::http1::parse::{Method, Version};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::h1_downstream::{local_reply, Downstream, Request};
use crate::proxy::h1_downstream::{BodyPlan, H1BodyRest, RestFraming};
use crate::proxy::h2_downstream::{is_grpc, ConnCtx, StreamHead};
use crate::proxy::headers::{write_framing_and_connection, DownstreamFraming, Mutations};
use crate::proxy::io::write_all;
use crate::proxy::stream_forward::{
    attempts, finish_response_headers, log_response_head, BodyRest, RequestBody, StreamRequest,
    Upstream,
};
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;

/// The HTTP/1.1 request as `http` parts (method, path, fields; `host` moves to `:authority`).
fn request_parts(c: &Downstream, req: &Request) -> Option<http::request::Parts> {
    let path = req.path.get(&c.head);
    let mut builder = http::Request::builder()
        .method(req.head.method_span.get(&c.head))
        .uri(path);
    if let Some(h) = builder.headers_mut() {
        for span in &c.headers {
            let name = span.name.get(&c.head);
            if name.eq_ignore_ascii_case(b"host") {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_bytes(span.value.get(&c.head)),
            ) {
                h.append(n, v);
            }
        }
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

/// Serves an HTTP/1.1 request from an HTTP/2 cluster. Admission is done and the body planned
/// by the caller (`forward.rs`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward<'w>(
    w: &'w Rc<Worker>,
    listener: usize,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
    route: &Route,
    action: &ForwardAction,
    retry: Option<&RetryPolicy>,
    mutations: &Mutations<'_>,
    log: &mut RequestLog<'_>,
    plan: BodyPlan,
    creq: &mut ClusterRequest<'w>,
) {
    let Some(parts) = request_parts(c, req) else {
        c.close = true;
        local_reply(
            c,
            req,
            log,
            400,
            b"request not representable in HTTP/2",
            hcm,
            true,
            &[],
        )
        .await;
        return;
    };
    let ctx = ConnCtx {
        listener,
        peer: c.peer,
        local: c.local,
        peer_ip: c.peer_ip.clone(),
        tls: c.stream.is_tls(),
    };
    let authority = req.authority.get(&c.head).to_vec();
    let path = req.path.get(&c.head).to_vec();
    let head = StreamHead {
        parts: &parts,
        authority: &authority,
        path: &path,
        scheme: if ctx.tls { b"https" } else { b"http" },
    };
    let sreq = StreamRequest {
        ctx: &ctx,
        hcm,
        head: &head,
        grpc: is_grpc(&parts.headers),
        route,
        action,
        retry,
        mutations,
    };

    // The planned body, decoded from its HTTP/1.1 framing.
    let mut decoded = Vec::new();
    let (chunks, len, rest_framing) = match plan {
        BodyPlan::Empty => (Vec::new(), 0, None),
        BodyPlan::BufferedLength(n) => {
            let n = (n as usize).min(c.rbuf.len());
            let data = Bytes::copy_from_slice(&c.rbuf[..n]);
            c.rbuf.drain(..n);
            (vec![data], n as u64, None)
        }
        BodyPlan::BufferedChunked | BodyPlan::StreamChunked(_) => {
            // `body` holds the prefix re-encoded as chunks; decode it back.
            let mut dec = ChunkedDecoder::new();
            let _ = dec.feed(&c.body, &mut decoded, false);
            c.body.clear();
            let rest = match plan {
                BodyPlan::StreamChunked(dec) => Some(RestFraming::Chunked(dec)),
                _ => None,
            };
            let len = decoded.len() as u64;
            (vec![Bytes::from(std::mem::take(&mut decoded))], len, rest)
        }
        BodyPlan::StreamLength(n) => (Vec::new(), 0, Some(RestFraming::Length(n))),
    };
    let chunks = chunks.into_iter().filter(|b| !b.is_empty()).collect();
    // The connection's progress: the body pump marks the request complete on it. (Idleness of
    // an HTTP/1.1 client is bounded by deadlines on its reads and writes instead.)
    let activity = Rc::clone(&c.progress);
    let outcome = {
        let mut body = RequestBody {
            chunks,
            len,
            rest: rest_framing.map(|framing| {
                BodyRest::H1(H1BodyRest {
                    c: &mut *c,
                    framing,
                })
            }),
            trailers: None,
        };
        let streamed = body.rest.is_some();
        let outcome = attempts(w, &sreq, &mut body, creq, log, &activity).await;
        (outcome, streamed && body.rest.is_some())
    };
    let (outcome, body_unread) = outcome;
    match outcome {
        Ok((
            Upstream::H2 {
                response, _slot, ..
            },
            sent_at,
            deadline,
        )) => {
            let service_time = sent_at.elapsed();
            log.upstream_service_time = Some(service_time);
            w.histograms.borrow_mut().record(
                HistogramId::UpstreamRqTime(action.cluster),
                service_time.as_micros() as u64,
            );
            relay_response(w, c, &sreq, req, response, deadline, log).await;
        }
        Ok((Upstream::H1 { .. }, _, _)) => {
            // `attempts` speaks HTTP/2 to an HTTP/2 cluster; an HTTP/1.1 answer cannot occur.
            local_reply(c, req, log, 502, b"upstream protocol error", hcm, true, &[]).await;
        }
        Err(e) => {
            let Some((status, flag, text)) = failure_reply(w, action.cluster, &e) else {
                c.close = true;
                log.flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                return;
            };
            log.flags.insert(flag);
            local_reply(c, req, log, status, text, hcm, body_unread, &[]).await;
        }
    }
}

/// Writes the HTTP/2 response to the HTTP/1.1 client.
async fn relay_response(
    w: &Rc<Worker>,
    c: &mut Downstream,
    sreq: &StreamRequest<'_>,
    req: &Request,
    response: Response<RecvStream>,
    deadline: Option<std::time::Instant>,
    log: &mut RequestLog<'_>,
) {
    let (mut parts, mut up) = response.into_parts();
    finish_response_headers(sreq, &mut parts.headers, log.upstream_service_time);
    let status = parts.status.as_u16();
    log.status = status;
    log_response_head(w, log, status, &parts.headers);
    let client_10 = req.head.version == Version::Http10;
    let is_head = req.head.method == Method::Head;
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let framing = if is_head || matches!(status, 204 | 304) {
        DownstreamFraming::None
    } else if let Some(n) = length {
        DownstreamFraming::Length(n)
    } else if client_10 {
        DownstreamFraming::UntilClose
    } else {
        DownstreamFraming::Chunked
    };
    if framing == DownstreamFraming::UntilClose || w.draining() {
        c.close = true;
    }
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    c.progress.start_response();
    write_status_line(&mut out, req.head.version, status);
    write_fields(&mut out, &parts.headers, true);
    write_framing_and_connection(
        &mut out,
        framing,
        if is_head { length } else { None },
        c.close,
        client_10 && !c.close,
    );
    let chunked = framing == DownstreamFraming::Chunked;
    let relay = async {
        let mut ok = true;
        if framing != DownstreamFraming::None {
            loop {
                match up.data().await {
                    Some(Ok(data)) => {
                        let n = data.len();
                        if chunked {
                            write_chunk(&mut out, &data);
                        } else {
                            out.extend_from_slice(&data);
                        }
                        log.bytes_sent += n as u64;
                        let len = out.len();
                        let (res, o) = write_all(&mut c.stream, out, len).await;
                        c.progress.stamp();
                        out = o;
                        out.clear();
                        if res.is_err() {
                            return (false, out);
                        }
                        let _ = up.flow_control().release_capacity(n);
                    }
                    Some(Err(_)) => {
                        log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
                        return (false, out);
                    }
                    None => break,
                }
            }
            let trailers: Option<HeaderMap> = up.trailers().await.ok().flatten();
            if chunked {
                match trailers {
                    Some(t) => {
                        out.extend_from_slice(b"0\r\n");
                        write_fields(&mut out, &t, false);
                        out.extend_from_slice(b"\r\n");
                    }
                    None => write_last_chunk(&mut out),
                }
            }
        }
        if !out.is_empty() {
            let len = out.len();
            let (res, o) = write_all(&mut c.stream, out, len).await;
            c.progress.stamp();
            out = o;
            ok = res.is_ok();
        }
        (ok, out)
    };
    let (ok, out) = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            match monoio::time::timeout(left, relay).await {
                Ok(r) => r,
                Err(_) => {
                    log.flags.insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                    (false, Vec::new())
                }
            }
        }
        None => relay.await,
    };
    c.out = out;
    c.out.clear();
    if !ok || framing == DownstreamFraming::UntilClose {
        c.close = true;
    }
}

/// Writes HTTP/1.1 field lines; `skip_framing` leaves out the ones the framing writer owns.
fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap, skip_framing: bool) {
    for (name, value) in headers {
        let n = name.as_str();
        if skip_framing && matches!(n, "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        write_header(out, n.as_bytes(), value.as_bytes());
    }
}
