//! Forwarding one HTTP/1.1 client's request to its cluster: body plan, admission, attempts,
//! relay.
//!
//! The phases, in order (Pingora's shape, Envoy's semantics); the codec-neutral rules of each
//! live in `crate::exchange`:
//! 1. request body plan: bodies up to the retry buffer are read first so the request can be
//!    replayed; larger ones stream and can only be retried before their first byte is sent;
//! 2. admission (`exchange::admission`): the cluster's circuit breakers (this worker's share) and
//!    a non-empty member set. It comes after a buffered body is complete, so a client trickling
//!    a small upload holds no upstream slot while it trickles;
//! 3. attempt: load-balance an endpoint, take a pooled connection or connect within the
//!    attempt's deadline (`exchange::endpoint`), write the head (and buffered body), read the
//!    response head within the per-try and route deadlines. An upstream that answers while the
//!    body is still streaming (a 413 before reading it) is heard: sending stops and its answer
//!    is relayed, as nginx does;
//! 4. retry decision: the attempt loop is `exchange::attempts::run`, shared with the HTTP/2
//!    forwarder; this file gives it one try (connection, head, body, response head);
//! 5. relay: the response head is rewritten and the body streamed back in bounded chunks, each
//!    write to the client bounded by `stream_idle_timeout`; the upstream connection returns to
//!    the pool only if the exchange ended cleanly.
//!
//! Everything the request holds (its admission, retries, the connection and its endpoint
//! `rq_active`) is a guard, so returning early or being dropped releases it.

use std::rc::Rc;
use std::time::Instant;

use crate::config::{ForwardAction, HttpConnectionManager, RetryPolicy, Route};
use crate::exchange::admission::admit;
use crate::exchange::attempts::{fail_on, Answered, Try};
use crate::exchange::endpoint::{obtain_connection, release_upstream};
use crate::exchange::outcome::failure_reply;
use crate::exchange::request_log::RequestLog;
use crate::exchange::retry::AttemptError;
use crate::http1::body::ChunkedDecoder;
use crate::http1::encode::{write_chunk, write_last_chunk};
use crate::http1::parse::{parse_response, BodyFraming, Limits, Method, ResponseHead, Version};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::h1_downstream::{body_deadline, local_reply, BodyPlan, Downstream, Request};
use crate::proxy::headers::{
    write_downstream_response, write_upstream_request, DownstreamFraming, DownstreamResponse,
    Mutations, UpstreamRequest,
};
use crate::proxy::io::{read_append_until, write_all_until, write_prefix_until, IoFail};
use crate::proxy::tunnel::Upgraded;
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::{ClusterStat, EndpointStat};
use crate::upstream::membership::Endpoint;
use crate::upstream::pool::UpstreamConn;

/// A response head the upstream sent, and whether it came before the request body was all
/// sent (an early answer: the upstream connection is spent and the client's body unread).
struct Answer {
    head: ResponseHead,
    early: bool,
}

/// An HTTP/1.1 upstream connection that answered, as the attempt loop sees it.
struct Answered1 {
    conn: UpstreamConn,
    answer: Answer,
}

impl Answered for Answered1 {
    fn status(&self) -> u16 {
        self.answer.head.status
    }

    fn endpoint(&self) -> &Endpoint {
        &self.conn.endpoint
    }

    fn abandon(self, w: &Worker) {
        w.pool
            .borrow_mut()
            .discard(self.conn, ClusterStat::UpstreamCxDestroyLocal);
    }
}

/// Serves `req` by forwarding it to `action.cluster`. Writes the response (or a local reply)
/// to the client and fills in `log`.
#[allow(clippy::too_many_arguments)]
pub async fn forward<'w>(
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
    upgrade: Option<&[u8]>,
) -> Option<Upgraded<'w>> {
    let cluster_id = action.cluster;
    log.cluster = Some(cluster_id);
    let shared = &w.shared;
    let Some(cluster) = shared.config.clusters.get(cluster_id) else {
        local_reply(c, req, log, 503, b"no cluster", hcm, true, &[]).await;
        return None;
    };
    let cs = shared.stats.clusters.get(cluster_id)?;
    let has_body = matches!(req.head.framing, BodyFraming::Chunked)
        || matches!(req.head.framing, BodyFraming::Length(n) if n > 0);

    // 1. body plan (100-continue first: the client waits for it before sending the body)
    if req.head.expect_continue && has_body {
        let mut out = std::mem::take(&mut c.out);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let until = body_deadline(c);
        let (res, out) = write_all_until(&mut c.stream, out, until).await;
        c.progress.stamp();
        c.out = out;
        if res.is_err() {
            c.close = true;
            log.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            return None;
        }
    }
    let mut plan = match plan_body(w, c, req, log).await {
        Ok(p) => p,
        Err(status) => {
            c.close = true;
            if status != 0 {
                local_reply(c, req, log, status, b"", hcm, true, &[]).await;
            } else {
                log.flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            }
            return None;
        }
    };

    // 2. admission, once a buffered body is complete
    let unread = !plan.buffered();
    if !unread {
        c.progress.complete_request();
    }
    let mut creq = match admit(w, cluster_id, retry) {
        Ok(r) => r,
        Err((status, flag, text)) => {
            log.flags.insert(flag);
            local_reply(c, req, log, status, text, hcm, unread, &[]).await;
            return None;
        }
    };

    if let crate::config::UpstreamProtocol::Http2(_) = cluster.protocol {
        if upgrade.is_some() {
            // WebSocket over HTTP/2 needs extended CONNECT (RFC 8441) upstream; refuse clearly.
            local_reply(
                c,
                req,
                log,
                501,
                b"upgrade to an HTTP/2 cluster is not supported",
                hcm,
                true,
                &[],
            )
            .await;
            return None;
        }
        // Boxed: this path's state (HTTP/2 request and response types) is large and rare, and
        // inline it would be part of every idle HTTP/1.1 connection's task.
        Box::pin(crate::proxy::h1_to_h2::forward(
            w, listener, c, hcm, req, route, action, retry, mutations, log, plan, &mut creq,
        ))
        .await;
        return None;
    }

    // The path and request id are the same for every attempt.
    c.scratch.clear();
    let path = req.path.get(&c.head);
    if !crate::proxy::router::apply_prefix_rewrite(route, path, &mut c.scratch) {
        c.scratch.extend_from_slice(path);
    }
    let path_len = c.scratch.len();
    let has_request_id = c
        .headers
        .iter()
        .any(|h| h.name.get(&c.head).eq_ignore_ascii_case(b"x-request-id"));
    if hcm.generate_request_id && !has_request_id {
        w.rng.borrow_mut().write_uuid_v4(&mut c.scratch);
        log.generated_request_id.clear();
        log.generated_request_id
            .extend_from_slice(&c.scratch[path_len..]);
    }

    // 3-4. attempts
    let deadline = action.timeout.map(|t| log.start + t);
    let policy = retry;
    let host_rewrite = action.host_rewrite_literal.as_deref().map(str::as_bytes);
    let mut sent_body_bytes = false;
    let outcome = crate::exchange::attempts::run(
        w,
        cluster_id,
        policy,
        &mut creq,
        deadline,
        async |t: Try<'_>| {
            let obtained = obtain_connection(
                w,
                cluster_id,
                cluster.connect_timeout,
                t.deadline,
                t.fresh_to,
                t.tried,
            )
            .await;
            let result = match obtained {
                Ok(mut conn) => {
                    log.upstream_host = Some(conn.endpoint.addr);
                    cs.inc(w.index, ClusterStat::UpstreamRqTotal);
                    conn.endpoint.stats.inc(w.index, EndpointStat::RqTotal);
                    conn.start_request();
                    let result = attempt(
                        w,
                        c,
                        hcm,
                        req,
                        &mut conn,
                        &mut plan,
                        path_len,
                        host_rewrite,
                        t.deadline,
                        &mut sent_body_bytes,
                        mutations,
                        upgrade,
                    )
                    .await;
                    match result {
                        Ok(answer) => Ok(Answered1 { conn, answer }),
                        Err(e) => Err(fail_on(w, conn, e)),
                    }
                }
                Err(e) => Err((e, None)),
            };
            (result, !sent_body_bytes || plan.buffered())
        },
    )
    .await
    .map(|a| (a.leg.conn, a.leg.answer, a.sent_at));

    match outcome {
        Ok((conn, answer, sent_at)) => {
            let service_time = sent_at.elapsed();
            log.upstream_service_time = Some(service_time);
            w.histograms.borrow_mut().record(
                HistogramId::UpstreamRqTime(cluster_id),
                service_time.as_micros() as u64,
            );
            if answer.head.status == 101 {
                // Only reachable for an enabled upgrade: the tunnel takes over both connections
                // and the request stays admitted until it ends.
                return switch_protocols(w, c, hcm, req, conn, answer.head, mutations, log)
                    .await
                    .map(|conn| Upgraded {
                        conn,
                        request: creq,
                    });
            }
            if answer.early {
                // The client's body was not all read: its connection cannot carry another
                // request (and lingers so the answer arrives), and the upstream connection is
                // mid-request.
                c.close = true;
                c.linger = true;
            }
            relay_response(w, c, hcm, req, conn, answer, deadline, mutations, log).await;
        }
        Err(e) => {
            if matches!(e, AttemptError::BadBody) {
                if let Some(hs) = w.stats().http.get(listener) {
                    hs.inc(w.index, crate::stats::HttpStat::DownstreamCxProtocolError);
                }
            }
            let Some((status, flag, body)) = failure_reply(w, cluster_id, &e) else {
                c.close = true;
                log.flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                return None;
            };
            log.flags.insert(flag);
            if policy.is_some_and(|p| p.num_retries > 0) && creq.retries.left == 0 {
                log.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            // A streamed body that was not fully read leaves the connection unusable.
            let unread = matches!(plan, BodyPlan::StreamLength(_) | BodyPlan::StreamChunked(_));
            local_reply(c, req, log, status, body, hcm, unread, &[]).await;
        }
    }
    drop(creq);
    None
}

/// Decides how the body travels and, for small bodies, reads all of it now.
/// `Err(status)`: answer `status` (0 = the client went away) and close.
async fn plan_body(
    w: &Rc<Worker>,
    c: &mut Downstream,
    req: &Request,
    log: &mut RequestLog<'_>,
) -> Result<BodyPlan, u16> {
    let limit = w.shared.tuning.retry_buffer_bytes;
    match req.head.framing {
        BodyFraming::None | BodyFraming::UntilClose => Ok(BodyPlan::Empty),
        BodyFraming::Length(0) => Ok(BodyPlan::BufferedLength(0)),
        BodyFraming::Length(n) if n as usize <= limit => {
            while (c.rbuf.len() as u64) < n {
                let want = (n as usize - c.rbuf.len()).max(1);
                let buf = std::mem::take(&mut c.rbuf);
                let until = body_deadline(c);
                let (res, buf) = read_append_until(&mut c.stream, buf, want, until).await;
                c.progress.stamp();
                c.rbuf = buf;
                if res.is_err() {
                    return Err(0);
                }
            }
            log.bytes_received = n;
            Ok(BodyPlan::BufferedLength(n))
        }
        BodyFraming::Length(n) => Ok(BodyPlan::StreamLength(n)),
        BodyFraming::Chunked => {
            // Small chunked bodies are read (and validated) whole before the upstream sees
            // anything, so a malformed one never reaches it and the request stays replayable.
            // Past the retry buffer the body streams, carrying the decoder on.
            c.body.clear();
            let mut dec = ChunkedDecoder::new();
            loop {
                let consumed = dec.feed(&c.rbuf, &mut c.body, true).map_err(|_| 400u16)?;
                c.rbuf.drain(..consumed);
                if dec.is_done() {
                    log.bytes_received = c.body.len() as u64;
                    return Ok(BodyPlan::BufferedChunked);
                }
                if c.body.len() >= limit {
                    return Ok(BodyPlan::StreamChunked(dec));
                }
                let buf = std::mem::take(&mut c.rbuf);
                let until = body_deadline(c);
                let chunk = w.shared.tuning.body_chunk_bytes;
                let (res, buf) = read_append_until(&mut c.stream, buf, chunk, until).await;
                c.progress.stamp();
                c.rbuf = buf;
                if res.is_err() {
                    return Err(0);
                }
            }
        }
    }
}

/// One try: send the request on `conn`, read the response head.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    w: &Rc<Worker>,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
    conn: &mut UpstreamConn,
    plan: &mut BodyPlan,
    path_len: usize,
    host_rewrite: Option<&[u8]>,
    deadline: Option<Instant>,
    sent_body_bytes: &mut bool,
    mutations: &Mutations<'_>,
    upgrade: Option<&[u8]>,
) -> Result<Answer, AttemptError> {
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    let authority = req.authority.get(&c.head);
    let (path, request_id) = c.scratch.split_at(path_len.min(c.scratch.len()));
    let framing = match plan {
        BodyPlan::Empty => None,
        BodyPlan::BufferedLength(n) | BodyPlan::StreamLength(n) => Some(Some(*n)),
        BodyPlan::BufferedChunked | BodyPlan::StreamChunked(_) => Some(None),
    };
    let upstream_req = UpstreamRequest {
        method: req.head.method_span.get(&c.head),
        path,
        host: host_rewrite.unwrap_or(authority),
        peer_ip: &c.peer_ip,
        request_id,
        body: framing,
        use_remote_address: hcm.use_remote_address,
        upgrade,
    };
    write_upstream_request(&mut out, &upstream_req, &c.head, &c.headers, mutations);
    // Buffered bodies go in the same write as the head.
    match plan {
        BodyPlan::BufferedLength(n) => {
            out.extend_from_slice(&c.rbuf[..(*n as usize).min(c.rbuf.len())])
        }
        BodyPlan::BufferedChunked | BodyPlan::StreamChunked(_) => out.extend_from_slice(&c.body),
        _ => {}
    }
    if matches!(plan, BodyPlan::StreamChunked(_)) && !c.body.is_empty() {
        *sent_body_bytes = true;
    }
    let tx = out.len() as u64;
    let (res, out) = write_all_until(&mut conn.stream, out, deadline).await;
    c.progress.stamp();
    c.out = out;
    match res {
        Ok(()) => {}
        Err(IoFail::TimedOut) => return Err(AttemptError::Timeout),
        // The upstream may have answered and closed before reading what we sent.
        Err(_) => return early_answer(w, c, req, conn, deadline, true).await,
    }
    if let Some(cs) = w.stats().clusters.get(conn.cluster) {
        cs.add(w.index, ClusterStat::UpstreamCxTxBytesTotal, tx);
    }
    // Streamed bodies follow. An upstream may answer while they stream (an echo, or a 413
    // for a body it will not take); only when it stops taking the body is that answer read
    // early, so full-duplex upstreams keep working.
    let streamed = match plan {
        BodyPlan::StreamLength(n) => stream_length_body(w, c, conn, *n, sent_body_bytes).await,
        BodyPlan::StreamChunked(dec) => stream_chunked_body(w, c, conn, dec, sent_body_bytes).await,
        _ => Ok(()),
    };
    match streamed {
        Ok(()) => {}
        Err(AttemptError::Reset { .. }) => {
            return early_answer(w, c, req, conn, deadline, false).await
        }
        Err(e) => return Err(e),
    }
    let head = read_response_head(w, c, req, conn, deadline, upgrade.is_some()).await?;
    Ok(Answer { head, early: false })
}

/// The upstream stopped taking the request (a write failed): its answer, if it sent one before
/// closing, is relayed; otherwise the attempt was reset.
async fn early_answer(
    w: &Rc<Worker>,
    c: &mut Downstream,
    req: &Request,
    conn: &mut UpstreamConn,
    deadline: Option<Instant>,
    before_body: bool,
) -> Result<Answer, AttemptError> {
    let reset = AttemptError::Reset {
        before_response: true,
    };
    match read_response_head(w, c, req, conn, deadline, false).await {
        Ok(head) => {
            if let Some(cs) = w.stats().clusters.get(conn.cluster) {
                cs.inc(w.index, ClusterStat::UpstreamRqTxReset);
            }
            // A head-only request that failed to write had nothing more to send: not early.
            let early = !before_body || !matches!(req.head.framing, BodyFraming::None);
            Ok(Answer { head, early })
        }
        Err(AttemptError::Timeout) => Err(AttemptError::Timeout),
        Err(AttemptError::Protocol) => Err(AttemptError::Protocol),
        Err(_) => Err(reset),
    }
}

async fn stream_length_body(
    w: &Rc<Worker>,
    c: &mut Downstream,
    conn: &mut UpstreamConn,
    n: u64,
    sent: &mut bool,
) -> Result<(), AttemptError> {
    let chunk = w.shared.tuning.body_chunk_bytes;
    let mut remaining = n;
    loop {
        let take = (remaining as usize).min(c.rbuf.len());
        if take > 0 {
            *sent = true;
            let buf = std::mem::take(&mut c.rbuf);
            let until = body_deadline(c);
            let (res, mut buf) = write_prefix_until(&mut conn.stream, buf, take, until).await;
            c.progress.stamp();
            buf.drain(..take.min(buf.len()));
            c.rbuf = buf;
            res.map_err(|_| AttemptError::Reset {
                before_response: false,
            })?;
            remaining -= take as u64;
        }
        if remaining == 0 {
            c.progress.complete_request();
            return Ok(());
        }
        let buf = std::mem::take(&mut c.rbuf);
        let want = (remaining as usize).min(chunk);
        let until = body_deadline(c);
        let (res, buf) = read_append_until(&mut c.stream, buf, want, until).await;
        c.progress.stamp();
        c.rbuf = buf;
        res.map_err(|_| AttemptError::Downstream)?;
    }
}

async fn stream_chunked_body(
    w: &Rc<Worker>,
    c: &mut Downstream,
    conn: &mut UpstreamConn,
    dec: &mut ChunkedDecoder,
    sent: &mut bool,
) -> Result<(), AttemptError> {
    let chunk = w.shared.tuning.body_chunk_bytes;
    let mut out = std::mem::take(&mut c.body);
    let result = loop {
        if dec.is_done() {
            c.progress.complete_request();
            break Ok(());
        }
        let buf = std::mem::take(&mut c.rbuf);
        let until = body_deadline(c);
        let (res, buf) = read_append_until(&mut c.stream, buf, chunk, until).await;
        c.progress.stamp();
        c.rbuf = buf;
        if res.is_err() {
            break Err(AttemptError::Downstream);
        }
        out.clear();
        let Ok(consumed) = dec.feed(&c.rbuf, &mut out, true) else {
            c.close = true;
            break Err(AttemptError::BadBody);
        };
        c.rbuf.drain(..consumed);
        if !out.is_empty() {
            *sent = true;
            let until = body_deadline(c);
            let (res, o) = write_all_until(&mut conn.stream, out, until).await;
            c.progress.stamp();
            out = o;
            if res.is_err() {
                break Err(AttemptError::Reset {
                    before_response: false,
                });
            }
        }
    };
    out.clear();
    c.body = out;
    result
}

async fn read_response_head(
    w: &Rc<Worker>,
    c: &mut Downstream,
    req: &Request,
    conn: &mut UpstreamConn,
    deadline: Option<Instant>,
    upgrading: bool,
) -> Result<ResponseHead, AttemptError> {
    let limits = Limits {
        max_head_bytes: 60 * 1024,
        max_headers: 100,
        max_request_line: 8 * 1024,
    };
    c.ubuf.clear();
    loop {
        let mut headers = std::mem::take(&mut c.uheaders);
        let parsed = parse_response(&c.ubuf, &mut headers, req.head.method, &limits);
        c.uheaders = headers;
        match parsed {
            Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                // Interim responses (100 Continue and friends) are ours to absorb: we already
                // answered the client's Expect ourselves.
                c.ubuf.drain(..head.head_len.min(c.ubuf.len()));
                continue;
            }
            // 101 answers only an upgrade we asked for; unsolicited, it is a protocol error.
            Ok(Some(head)) if head.status == 101 && upgrading => return Ok(head),
            Ok(Some(head)) if head.status == 101 => return Err(AttemptError::Protocol),
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(_) => return Err(AttemptError::Protocol),
        }
        let buf = std::mem::take(&mut c.ubuf);
        let (res, buf) = read_append_until(
            &mut conn.stream,
            buf,
            w.shared.tuning.read_buffer_bytes,
            deadline,
        )
        .await;
        c.progress.stamp();
        c.ubuf = buf;
        match res {
            Ok(n) => {
                if let Some(cs) = w.stats().clusters.get(conn.cluster) {
                    cs.add(w.index, ClusterStat::UpstreamCxRxBytesTotal, n as u64);
                }
            }
            Err(IoFail::TimedOut) => return Err(AttemptError::Timeout),
            Err(_) => {
                return Err(AttemptError::Reset {
                    before_response: c.ubuf.is_empty(),
                })
            }
        }
    }
}

/// Writes the response head and streams the body to the client; pools `conn` when clean.
#[allow(clippy::too_many_arguments)]
async fn relay_response(
    w: &Rc<Worker>,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
    mut conn: UpstreamConn,
    answer: Answer,
    deadline: Option<Instant>,
    mutations: &Mutations<'_>,
    log: &mut RequestLog<'_>,
) {
    let Answer { head, early } = answer;
    let client_10 = req.head.version == Version::Http10;
    let is_head = req.head.method == Method::Head;
    let body_framing = if is_head || matches!(head.status, 204 | 304) || head.status < 200 {
        BodyFraming::None
    } else {
        head.framing
    };
    let downstream = match body_framing {
        BodyFraming::None => DownstreamFraming::None,
        BodyFraming::Length(n) => DownstreamFraming::Length(n),
        BodyFraming::Chunked | BodyFraming::UntilClose if !client_10 => DownstreamFraming::Chunked,
        BodyFraming::Chunked | BodyFraming::UntilClose => DownstreamFraming::UntilClose,
    };
    if downstream == DownstreamFraming::UntilClose || w.draining() {
        c.close = true;
    }
    let head_content_length = if is_head {
        content_length(&c.ubuf, &c.uheaders)
    } else {
        None
    };
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    let service_ms = log.upstream_service_time.map(|d| d.as_millis() as u64);
    write_downstream_response(
        &mut out,
        &DownstreamResponse {
            version: req.head.version,
            status: head.status,
            framing: downstream,
            head_content_length,
            server_name: hcm.server_name.as_bytes(),
            upstream_service_time_ms: service_ms,
            close: c.close,
            keep_alive_10: client_10 && !c.close,
            upgrade: None,
        },
        &c.ubuf,
        &c.uheaders,
        mutations,
    );
    log.status = head.status;
    if !w.shared.access_logs.iter().all(|l| l.is_empty()) {
        // Keep the response head for %RESP(X)%: re-parse spans into the log's own copy.
        log.response_head.clear();
        log.response_head
            .extend_from_slice(&c.ubuf[..head.head_len.min(c.ubuf.len())]);
        log.response_headers.clear();
        log.response_headers.extend_from_slice(&c.uheaders);
    }
    c.ubuf.drain(..head.head_len.min(c.ubuf.len()));

    c.progress.start_response();
    let end = relay_body(w, c, &mut conn, body_framing, downstream, out, deadline).await;
    conn.finish_request();
    log.bytes_sent = end.sent;
    if !end.client_ok {
        c.close = true;
        if !end.upstream_clean {
            log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
        }
    }
    if !end.upstream_clean || early {
        // A close-delimited response (complete, but the connection is spent), a broken one, or
        // an early answer to a request whose body was never all sent.
        w.pool
            .borrow_mut()
            .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
        return;
    }
    release_upstream(w, conn, &head, c.ubuf.is_empty());
}

/// Relays the upstream's `101 Switching Protocols` head to the client. Returns the upstream
/// connection for the tunnel, or `None` when the client is already gone (the upstream
/// connection is then discarded: it has switched protocols and can never serve HTTP again).
#[allow(clippy::too_many_arguments)]
async fn switch_protocols(
    w: &Rc<Worker>,
    c: &mut Downstream,
    hcm: &HttpConnectionManager,
    req: &Request,
    conn: UpstreamConn,
    head: ResponseHead,
    mutations: &Mutations<'_>,
    log: &mut RequestLog<'_>,
) -> Option<UpstreamConn> {
    // The upstream's Upgrade value names the protocol it switched to; the request's is the
    // fallback for a terse upstream.
    let upgrade_value = match c
        .uheaders
        .iter()
        .find(|h| h.name.get(&c.ubuf).eq_ignore_ascii_case(b"upgrade"))
    {
        Some(h) => h.value.get(&c.ubuf).to_vec(),
        None => req
            .head
            .upgrade
            .map_or_else(Vec::new, |s| s.get(&c.head).to_vec()),
    };
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    let service_ms = log.upstream_service_time.map(|d| d.as_millis() as u64);
    write_downstream_response(
        &mut out,
        &DownstreamResponse {
            version: req.head.version,
            status: 101,
            framing: DownstreamFraming::None,
            head_content_length: None,
            server_name: hcm.server_name.as_bytes(),
            upstream_service_time_ms: service_ms,
            close: false,
            keep_alive_10: false,
            upgrade: Some(&upgrade_value),
        },
        &c.ubuf,
        &c.uheaders,
        mutations,
    );
    log.status = 101;
    c.ubuf.drain(..head.head_len.min(c.ubuf.len()));
    // After the 101 the client connection belongs to the tunnel; it never carries HTTP again.
    c.close = true;
    c.progress.start_response();
    let until = body_deadline(c);
    let (res, out) = write_all_until(&mut c.stream, out, until).await;
    c.progress.stamp();
    c.out = out;
    if res.is_err() {
        log.flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        w.pool
            .borrow_mut()
            .discard(conn, ClusterStat::UpstreamCxDestroyLocal);
        return None;
    }
    Some(conn)
}

/// How relaying a response body ended.
struct RelayEnd {
    /// The client got the whole response and the connection to it may continue.
    client_ok: bool,
    /// The upstream connection ended at a message boundary and may be pooled.
    upstream_clean: bool,
    /// Body bytes written to the client (after re-framing).
    sent: u64,
}

/// Streams the response body, `out` already holding the response head.
async fn relay_body(
    w: &Rc<Worker>,
    c: &mut Downstream,
    conn: &mut UpstreamConn,
    framing: BodyFraming,
    downstream: DownstreamFraming,
    mut out: Vec<u8>,
    deadline: Option<Instant>,
) -> RelayEnd {
    let chunk = w.shared.tuning.body_chunk_bytes;
    let mut end = RelayEnd {
        client_ok: true,
        upstream_clean: false,
        sent: 0,
    };
    let mut dec = ChunkedDecoder::new();
    let mut remaining = match framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    let mut head_len = out.len();
    loop {
        // Move what the upstream sent into `out`, framed for the client.
        let finished = match framing {
            BodyFraming::None => true,
            BodyFraming::Length(_) => {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(c.ubuf.len());
                out.extend_from_slice(&c.ubuf[..take]);
                c.ubuf.drain(..take);
                remaining -= take as u64;
                remaining == 0
            }
            BodyFraming::Chunked => {
                let reencode = downstream == DownstreamFraming::Chunked;
                match dec.feed(&c.ubuf, &mut out, reencode) {
                    Ok(n) => {
                        c.ubuf.drain(..n);
                        dec.is_done()
                    }
                    Err(_) => {
                        // Bad framing from the upstream: the client gets what was valid, then
                        // a closed connection (its response is incomplete).
                        end.client_ok = false;
                        c.close = true;
                        c.out = out;
                        return end;
                    }
                }
            }
            BodyFraming::UntilClose => {
                if !c.ubuf.is_empty() {
                    if downstream == DownstreamFraming::Chunked {
                        write_chunk(&mut out, &c.ubuf);
                    } else {
                        out.extend_from_slice(&c.ubuf);
                    }
                    c.ubuf.clear();
                }
                false
            }
        };
        end.sent += (out.len() - head_len) as u64;
        head_len = 0;
        if !out.is_empty() {
            let ok;
            (ok, out) = flush_keep(c, out).await;
            if !ok {
                end.client_ok = false;
                c.out = out;
                return end;
            }
        }
        if finished {
            end.upstream_clean = true;
            c.out = out;
            return end;
        }
        let buf = std::mem::take(&mut c.ubuf);
        let idle = body_deadline(c);
        let until = match (deadline, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (res, buf) = read_append_until(&mut conn.stream, buf, chunk, until).await;
        c.progress.stamp();
        c.ubuf = buf;
        match res {
            Ok(n) => {
                if let Some(cs) = w.stats().clusters.get(conn.cluster) {
                    cs.add(w.index, ClusterStat::UpstreamCxRxBytesTotal, n as u64);
                }
            }
            Err(IoFail::Eof) if framing == BodyFraming::UntilClose => {
                // Close-delimited body complete; the upstream connection is finished.
                if downstream == DownstreamFraming::Chunked {
                    write_last_chunk(&mut out);
                    let (ok, o) = flush_keep(c, out).await;
                    out = o;
                    end.client_ok = ok;
                }
                c.out = out;
                return end;
            }
            Err(_) => {
                end.client_ok = false;
                c.close = true;
                c.out = out;
                return end;
            }
        }
    }
}

/// Writes `out` to the client within `stream_idle_timeout` (a client that stops reading does not
/// hold its request and upstream connection past it).
async fn flush_keep(c: &mut Downstream, out: Vec<u8>) -> (bool, Vec<u8>) {
    let until = body_deadline(c);
    let (res, mut out) = write_all_until(&mut c.stream, out, until).await;
    c.progress.stamp();
    out.clear();
    if res.is_err() {
        c.close = true;
    }
    (res.is_ok(), out)
}

fn content_length(buf: &[u8], headers: &[crate::http1::HeaderSpan]) -> Option<u64> {
    let h = headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"content-length"))?;
    std::str::from_utf8(h.value.get(buf)).ok()?.parse().ok()
}
