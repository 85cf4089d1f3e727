//! Forwarding a request that arrived on an HTTP/2 stream, to an HTTP/1.1 or HTTP/2 upstream.
//!
//! The phases are the HTTP/1.1 path's (`forward.rs`): admission against the circuit breakers,
//! a body plan (bodies up to the retry buffer are read first so the request can be replayed;
//! longer ones stream and are not retried), attempts with Envoy's retry rules and back-off, and
//! the relay. What differs is the shape of the messages: requests and responses are `http`
//! types, bodies are `h2` streams with flow control, and the HTTP/1.1 upstream case translates
//! (`:authority` to `host`, connection-specific headers dropped, chunked framing when the length
//! is unknown).
//!
//! Flow control is what keeps memory bounded: data is taken from one side only when the other
//! side has window for it (`reserve_capacity`/`poll_capacity`), and the receiving side's window
//! is released only after the bytes were handed on, so a slow reader slows the writer instead of
//! growing a buffer.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};

use crate::config::{
    AppendAction, ClusterId, ForwardAction, HttpConnectionManager, RetryPolicy, Route,
    UpstreamProtocol,
};
use crate::exchange::admission::{admit, ClusterRequest};
use crate::exchange::attempts::{fail_on, Answered, Try, TryFailure};
use crate::exchange::endpoint::{
    obtain_connection, obtain_stream_slot, pick_endpoint, release_upstream,
};
use crate::exchange::outcome::failure_reply;
use crate::exchange::request_log::RequestLog;
use crate::exchange::retry::AttemptError;
use crate::exchange::watchdog::{stream_watchdog, Activity, StreamLimits};
use crate::http1::body::ChunkedDecoder;
use crate::http1::encode::{is_hop_by_hop, write_chunk_size, write_header};
use crate::http1::parse::{parse_response, BodyFraming, Limits, Method, ResponseHead};
use crate::http1::HeaderSpan;
use crate::http2::client::StreamSlot;
use crate::http2::send::send_all;
use crate::proxy::flags::ResponseFlags;
use crate::proxy::h1_downstream::H1BodyRest;
use crate::proxy::h2_downstream::{local_reply, ConnCtx, StreamHead};
use crate::proxy::headers::Mutations;
use crate::proxy::io::{read_append_until, write_all_until, IoFail};
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::{ClusterStat, EndpointStat};
use crate::upstream::membership::Endpoint;
use crate::upstream::pool::UpstreamConn;

/// The routed request and what the route says to do with it.
pub struct StreamRequest<'a> {
    pub ctx: &'a ConnCtx,
    pub hcm: &'a HttpConnectionManager,
    pub head: &'a StreamHead<'a>,
    pub grpc: bool,
    pub route: &'a Route,
    pub action: &'a ForwardAction,
    pub retry: Option<&'a RetryPolicy>,
    pub mutations: &'a Mutations<'a>,
}

/// The request body as planned: the buffered prefix (all of it when `rest` is `None`), the
/// stream it continues on, and trailers once known.
pub(crate) struct RequestBody<'a> {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) len: u64,
    pub(crate) rest: Option<BodyRest<'a>>,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Where the rest of a body too long to buffer comes from.
pub(crate) enum BodyRest<'a> {
    /// The client's HTTP/2 stream.
    H2(RecvStream),
    /// An HTTP/1.1 client's connection (see `h1_to_h2`).
    H1(H1BodyRest<'a>),
}

impl RequestBody<'_> {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.rest.is_none() && self.trailers.is_none()
    }
}

/// What a successful attempt hands to the relay.
pub(crate) enum Upstream {
    H2 {
        response: Response<RecvStream>,
        endpoint: Arc<Endpoint>,
        _slot: StreamSlot,
    },
    H1 {
        conn: UpstreamConn,
        head: ResponseHead,
        buf: Vec<u8>,
        headers: Vec<HeaderSpan>,
    },
}

impl Upstream {
    fn status(&self) -> u16 {
        match self {
            Upstream::H2 { response, .. } => response.status().as_u16(),
            Upstream::H1 { head, .. } => head.status,
        }
    }
}

/// Serves `req` from its cluster and answers on `respond`, under the stream's limits
/// (`exchange::watchdog`): a stream on which nothing moves for the idle timeout (a body that
/// stalls, a client that grants no window, an upstream that goes quiet), whose request is not
/// in by `request_timeout`, or that outlives `max_stream_duration` gets Envoy's 408 or 504 when
/// no response has started, or a reset, and gives back everything it held.
pub async fn forward(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    log: &mut RequestLog<'_>,
) {
    let activity = Rc::new(Activity::default());
    let limits = StreamLimits::of(req.hcm, Some(req.action));
    let start = log.start;
    let expired = {
        let work = serve(w, req, body, respond, log, &activity);
        let watchdog = stream_watchdog(&activity, start, limits);
        monoio::select! {
            _ = work => None,
            expiry = watchdog => Some(expiry),
        }
    };
    log.phases_from(activity.phases());
    let Some(expiry) = expired else {
        return;
    };
    let reply = expiry.record(w, req.ctx.listener, log, &activity);
    if activity.response_started() {
        respond.send_reset(Reason::CANCEL);
    } else {
        local_reply(
            respond,
            req.hcm,
            req.grpc,
            reply.status,
            reply.body,
            &[],
            log,
        );
    }
}

async fn serve(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    log: &mut RequestLog<'_>,
    activity: &Rc<Activity>,
) {
    let cluster_id = req.action.cluster;
    log.cluster = Some(cluster_id);

    // 1. body plan, abandoned as soon as the client resets the stream. Admission comes after,
    // so a client trickling a small body holds no upstream slot while it trickles.
    let planned = {
        let plan = plan_body(body, w.shared.tuning.retry_buffer_bytes, activity);
        let reset = poll_fn(|cx| respond.poll_reset(cx));
        monoio::select! {
            planned = plan => Some(planned),
            _ = reset => None,
        }
    };
    let mut body = match planned {
        Some(Ok(body)) => body,
        Some(Err(_)) | None => {
            log.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            respond.send_reset(Reason::CANCEL);
            return;
        }
    };
    log.bytes_received = body.len;
    if body.rest.is_none() {
        activity.complete_request();
    }

    // 2. admission
    let mut creq = match admit(w, cluster_id, req.retry) {
        Ok(r) => r,
        Err((status, flag, text)) => {
            log.flags.insert(flag);
            local_reply(respond, req.hcm, req.grpc, status, text, &[], log);
            return;
        }
    };

    // 3-4. attempts, abandoned (and everything they hold released) if the client resets.
    let outcome = {
        let attempts = attempts(w, req, &mut body, &mut creq, log, activity);
        let reset = poll_fn(|cx| respond.poll_reset(cx));
        monoio::select! {
            outcome = attempts => Some(outcome),
            _ = reset => None,
        }
    };
    let Some(outcome) = outcome else {
        log.flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        return;
    };
    match outcome {
        Ok((upstream, sent_at, deadline)) => {
            let service_time = sent_at.elapsed();
            log.upstream_service_time = Some(service_time);
            w.histograms.borrow_mut().record(
                HistogramId::UpstreamRqTime(cluster_id),
                service_time.as_micros() as u64,
            );
            match upstream {
                Upstream::H2 {
                    response, _slot, ..
                } => {
                    let relay = Relay { deadline, activity };
                    relay_h2(w, req, response, respond, relay, log).await;
                }
                Upstream::H1 {
                    conn,
                    head,
                    buf,
                    headers,
                } => {
                    let relay = Relay { deadline, activity };
                    relay_h1(w, req, conn, head, buf, headers, respond, relay, log).await;
                }
            }
        }
        Err(e) => {
            let Some((status, flag, text)) = failure_reply(w, cluster_id, &e) else {
                log.flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                respond.send_reset(Reason::CANCEL);
                return;
            };
            log.flags.insert(flag);
            if req.retry.is_some_and(|p| p.num_retries > 0) && creq.retries.left == 0 {
                log.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            local_reply(respond, req.hcm, req.grpc, status, text, &[], log);
        }
    }
}

pub(crate) type Outcome = Result<(Upstream, Instant, Option<Instant>), AttemptError>;

/// Tries endpoints until one answers in a way the retry policy accepts.
pub(crate) async fn attempts<'w>(
    w: &'w Rc<Worker>,
    req: &StreamRequest<'_>,
    body: &mut RequestBody<'_>,
    creq: &mut ClusterRequest<'w>,
    log: &mut RequestLog<'_>,
    activity: &Rc<Activity>,
) -> Outcome {
    let cluster_id = req.action.cluster;
    let Some(cluster) = w.shared.config.clusters.get(cluster_id) else {
        return Err(AttemptError::Connect);
    };

    // The path and request id are the same for every attempt.
    let mut path = Vec::with_capacity(req.head.path.len());
    if !crate::proxy::router::apply_prefix_rewrite(req.route, req.head.path, &mut path) {
        path.extend_from_slice(req.head.path);
    }
    let mut request_id = Vec::new();
    if req.hcm.generate_request_id && !req.head.parts.headers.contains_key("x-request-id") {
        w.rng.borrow_mut().write_uuid_v4(&mut request_id);
        log.generated_request_id.clone_from(&request_id);
    }
    let authority = req
        .action
        .host_rewrite_literal
        .as_deref()
        .map_or(req.head.authority, str::as_bytes);
    let headers = upstream_headers(req, &request_id);

    let deadline = req.action.timeout.map(|t| log.start + t);
    let accepted = crate::exchange::attempts::run(
        w,
        cluster_id,
        req.retry,
        creq,
        deadline,
        async |t: Try<'_>| {
            let had_rest = body.rest.is_some();
            let result = match cluster.protocol {
                UpstreamProtocol::Http2(opts) => {
                    match pick_endpoint(w, cluster_id, t.fresh_to, t.tried) {
                        None => Err((AttemptError::Connect, None)),
                        Some(endpoint) => {
                            log.upstream_host = Some(endpoint.addr);
                            attempt_h2(
                                w,
                                req,
                                cluster_id,
                                &endpoint,
                                opts,
                                cluster.connect_timeout,
                                cluster.tls.is_some(),
                                authority,
                                &path,
                                &headers,
                                body,
                                t.deadline,
                                activity,
                            )
                            .await
                        }
                    }
                }
                UpstreamProtocol::Http1 => {
                    match obtain_connection(
                        w,
                        cluster_id,
                        cluster.connect_timeout,
                        t.deadline,
                        t.fresh_to,
                        t.tried,
                    )
                    .await
                    {
                        Ok(conn) => {
                            log.upstream_host = Some(conn.endpoint.addr);
                            let target = (authority, path.as_slice());
                            attempt_h1(w, req, conn, target, &headers, body, t.deadline, activity)
                                .await
                        }
                        Err(e) => Err((e, None)),
                    }
                }
            };
            // The rest of a long body goes out once: a try that took it cannot be repeated.
            let replayable = !had_rest || body.rest.is_some();
            (result, replayable)
        },
    )
    .await?;
    Ok((accepted.leg, accepted.sent_at, deadline))
}

impl Answered for Upstream {
    fn status(&self) -> u16 {
        Upstream::status(self)
    }

    fn endpoint(&self) -> &Endpoint {
        match self {
            Upstream::H2 { endpoint, .. } => endpoint,
            Upstream::H1 { conn, .. } => &conn.endpoint,
        }
    }

    fn abandon(self, w: &Worker) {
        if let Upstream::H1 { conn, .. } = self {
            w.pool
                .borrow_mut()
                .discard(conn, ClusterStat::UpstreamCxDestroyLocal);
        }
    }
}

/// An attempt's failure, with the endpoint it failed on and whether that was a reused
/// connection (for the keep-alive race rule), when an endpoint was reached at all.
type AttemptFail = TryFailure;

/// Reads up to `limit` body bytes so the request can be replayed; a longer body keeps its
/// stream for the attempt to continue from.
async fn plan_body(
    mut body: RecvStream,
    limit: usize,
    activity: &Activity,
) -> Result<RequestBody<'static>, AttemptError> {
    let mut planned = RequestBody {
        chunks: Vec::new(),
        len: 0,
        rest: None,
        trailers: None,
    };
    if body.is_end_stream() {
        return Ok(planned);
    }
    loop {
        match body.data().await {
            Some(Ok(data)) => {
                activity.stamp();
                let n = data.len();
                let _ = body.flow_control().release_capacity(n);
                planned.len += n as u64;
                if n > 0 {
                    planned.chunks.push(data);
                }
                if planned.len as usize > limit {
                    planned.rest = Some(BodyRest::H2(body));
                    return Ok(planned);
                }
            }
            Some(Err(_)) => return Err(AttemptError::Downstream),
            None => break,
        }
    }
    planned.trailers = body
        .trailers()
        .await
        .map_err(|_| AttemptError::Downstream)?;
    Ok(planned)
}

/// Connection-specific fields (RFC 9113 §8.2.2) and the ones the proxy sets itself.
fn dropped_request_header(name: &HeaderName, value: &HeaderValue) -> bool {
    let n = name.as_str();
    if n == "te" {
        return value.as_bytes() != b"trailers";
    }
    is_hop_by_hop(n.as_bytes())
        || matches!(
            n,
            "host"
                | "http2-settings"
                | "x-forwarded-proto"
                | "x-forwarded-for"
                | "x-envoy-original-path"
                | "expect"
        )
}

/// The upstream request's fields (without `host`/`:authority` and framing), as Envoy's router
/// filter builds them: hop-by-hop fields gone, `x-forwarded-for` appended at the edge,
/// `x-forwarded-proto`, a generated `x-request-id`, and the route's header mutations.
pub(crate) fn upstream_headers(req: &StreamRequest<'_>, request_id: &[u8]) -> HeaderMap {
    let src = &req.head.parts.headers;
    let mut out = HeaderMap::with_capacity(src.len() + 4);
    // Fields an HTTP/1.1 client's `connection` header names are hop-by-hop too.
    let nominated = |name: &HeaderName| {
        src.get_all(http::header::CONNECTION).iter().any(|v| {
            crate::http1::fields::list_elements(v.as_bytes())
                .any(|t| t.eq_ignore_ascii_case(name.as_str().as_bytes()))
        })
    };
    let has_connection = src.contains_key(http::header::CONNECTION);
    for (name, value) in src {
        if dropped_request_header(name, value)
            || req.mutations.removes_request(name.as_ref())
            || (has_connection && name != http::header::TE && nominated(name))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    // x-forwarded-for: the client's values joined, plus the peer at the edge
    // (`use_remote_address`); built in one buffer that becomes the header value without a copy.
    let mut xff = Vec::new();
    let mut push = |part: &[u8]| {
        if !xff.is_empty() {
            xff.extend_from_slice(b", ");
        }
        xff.extend_from_slice(part);
    };
    for v in src.get_all("x-forwarded-for") {
        push(v.as_bytes());
    }
    if req.hcm.use_remote_address {
        push(&req.ctx.peer_ip);
    }
    if !xff.is_empty() {
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(xff)) {
            out.insert("x-forwarded-for", v);
        }
    }
    let proto = if req.ctx.tls { "https" } else { "http" };
    out.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_bytes(request_id) {
        if !request_id.is_empty() {
            out.insert("x-request-id", v);
        }
    }
    for m in req.mutations.iter() {
        for add in &m.request_add {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(add.name.as_bytes()),
                HeaderValue::from_str(&add.value),
            ) else {
                continue;
            };
            if add.action == AppendAction::AddIfAbsent && out.contains_key(&name) {
                continue;
            }
            out.append(name, value);
        }
    }
    out
}

/// One try on an HTTP/2 endpoint: a stream slot, the request, the body pumped in its own task,
/// and the response head within the deadline.
#[allow(clippy::too_many_arguments)]
async fn attempt_h2(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    cluster_id: ClusterId,
    endpoint: &Arc<Endpoint>,
    opts: crate::config::Http2Options,
    connect_timeout: Duration,
    tls: bool,
    authority: &[u8],
    path: &[u8],
    headers: &HeaderMap,
    body: &mut RequestBody<'_>,
    deadline: Option<Instant>,
    activity: &Rc<Activity>,
) -> Result<Upstream, AttemptFail> {
    let fail = |e: AttemptError| (e, Some((endpoint.clone(), false)));
    // A stream the upstream never processed (GOAWAY, REFUSED_STREAM, a connection that died
    // under us) is like the HTTP/1.1 keep-alive race: retried once, transparently.
    let unprocessed = |slot: &StreamSlot, e: &h2::Error| {
        if e.is_go_away() || e.is_io() || e.reason() != Some(Reason::REFUSED_STREAM) {
            slot.mark_closed();
        }
        (AttemptError::Refused, Some((endpoint.clone(), true)))
    };
    let mut slot = obtain_stream_slot(w, cluster_id, endpoint, opts, connect_timeout, deadline)
        .await
        .map_err(|e| (e, None))?;
    if let Some(cs) = w.stats().clusters.get(cluster_id) {
        cs.inc(w.index, ClusterStat::UpstreamRqTotal);
    }
    endpoint.stats.inc(w.index, EndpointStat::RqTotal);
    slot.start_request(endpoint);

    let uri = Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| fail(AttemptError::Protocol))?;
    let mut request = Request::builder()
        .method(req.head.parts.method.clone())
        .uri(uri)
        .body(())
        .map_err(|_| fail(AttemptError::Protocol))?;
    *request.headers_mut() = headers.clone();

    let send = slot.send.clone();
    let mut send = match send.ready().await {
        Ok(s) => s,
        Err(e) => return Err(unprocessed(&slot, &e)),
    };
    let end = body.is_empty();
    // A refused or failed stream never reached the application: safe to retry.
    let (response, mut stream) = send
        .send_request(request, end)
        .map_err(|e| unprocessed(&slot, &e))?;
    if !end {
        let chunks = body.chunks.clone();
        let trailers = body.trailers.clone();
        match body.rest.take() {
            // An HTTP/1.1 client sends its whole body before it reads: pump it here.
            Some(BodyRest::H1(mut rest)) => {
                for chunk in chunks {
                    if send_all(&mut stream, chunk, false, activity).await.is_err() {
                        return Err(fail(AttemptError::Reset {
                            before_response: false,
                        }));
                    }
                }
                rest.pump(&mut stream, w.shared.tuning.body_chunk_bytes, activity)
                    .await
                    .map_err(fail)?;
                activity.complete_request();
            }
            // An HTTP/2 client's body flows alongside the response (gRPC streams both ways).
            Some(BodyRest::H2(rest)) => {
                monoio::spawn(pump_request_body(
                    stream,
                    chunks,
                    Some(rest),
                    trailers,
                    activity.clone(),
                ));
            }
            None => {
                monoio::spawn(pump_request_body(
                    stream,
                    chunks,
                    None,
                    trailers,
                    activity.clone(),
                ));
            }
        }
    }
    let response = match deadline {
        Some(d) => monoio::time::timeout(d.saturating_duration_since(Instant::now()), response)
            .await
            .map_err(|_| fail(AttemptError::Timeout))?,
        None => response.await,
    };
    match response {
        Ok(response) => Ok(Upstream::H2 {
            response,
            endpoint: endpoint.clone(),
            _slot: slot,
        }),
        Err(e) if e.is_go_away() || e.reason() == Some(Reason::REFUSED_STREAM) => {
            Err(unprocessed(&slot, &e))
        }
        Err(_) => Err(fail(AttemptError::Reset {
            before_response: true,
        })),
    }
}

/// Sends the request body upstream: the buffered prefix, the rest as the client sends it
/// (its window released only once the bytes went on), then trailers or end of stream.
async fn pump_request_body(
    mut up: SendStream<Bytes>,
    chunks: Vec<Bytes>,
    rest: Option<RecvStream>,
    trailers: Option<HeaderMap>,
    activity: Rc<Activity>,
) {
    let last = chunks.len();
    let more = rest.is_some() || trailers.is_some();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if send_all(&mut up, chunk, i + 1 == last && !more, &activity)
            .await
            .is_err()
        {
            return;
        }
    }
    let mut trailers = trailers;
    if let Some(mut down) = rest {
        loop {
            match down.data().await {
                Some(Ok(data)) => {
                    let n = data.len();
                    if send_all(&mut up, data, false, &activity).await.is_err() {
                        return;
                    }
                    let _ = down.flow_control().release_capacity(n);
                }
                Some(Err(_)) => {
                    up.send_reset(Reason::CANCEL);
                    return;
                }
                None => break,
            }
        }
        match down.trailers().await {
            Ok(t) => trailers = t,
            Err(_) => {
                up.send_reset(Reason::CANCEL);
                return;
            }
        }
    }
    activity.complete_request();
    match trailers {
        Some(t) => {
            let _ = up.send_trailers(t);
        }
        None if more || last == 0 => {
            let _ = up.send_data(Bytes::new(), true);
        }
        None => {}
    }
}

/// One try on an HTTP/1.1 connection. A failed try's connection is discarded (counted as
/// closed by the upstream, as the HTTP/1.1 forwarder counts it) before the failure is returned.
#[allow(clippy::too_many_arguments)]
async fn attempt_h1(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    mut conn: UpstreamConn,
    target: (&[u8], &[u8]),
    headers: &HeaderMap,
    body: &mut RequestBody<'_>,
    deadline: Option<Instant>,
    activity: &Activity,
) -> Result<Upstream, AttemptFail> {
    match exchange_h1(w, req, &mut conn, target, headers, body, deadline, activity).await {
        Ok((head, buf, headers)) => Ok(Upstream::H1 {
            conn,
            head,
            buf,
            headers,
        }),
        Err(e) => Err(fail_on(w, conn, e)),
    }
}

/// The translated head, the body, the response head.
#[allow(clippy::too_many_arguments)]
async fn exchange_h1(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    conn: &mut UpstreamConn,
    (authority, path): (&[u8], &[u8]),
    headers: &HeaderMap,
    body: &mut RequestBody<'_>,
    deadline: Option<Instant>,
    activity: &Activity,
) -> Result<(ResponseHead, Vec<u8>, Vec<HeaderSpan>), AttemptError> {
    if let Some(cs) = w.stats().clusters.get(conn.cluster) {
        cs.inc(w.index, ClusterStat::UpstreamRqTotal);
    }
    conn.endpoint.stats.inc(w.index, EndpointStat::RqTotal);
    conn.start_request();

    let method = req.head.parts.method.as_str().as_bytes();
    let mut out = Vec::with_capacity(512 + body.len as usize);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(&mut out, b"host", authority);
    for (name, value) in headers {
        write_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    let length_known = headers.contains_key(http::header::CONTENT_LENGTH);
    let chunked = !length_known && !body.is_empty();
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !length_known && matches!(method, b"POST" | b"PUT" | b"PATCH") {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    for chunk in &body.chunks {
        frame_body(&mut out, chunk, chunked);
    }
    let sent_all = body.rest.is_none();
    if sent_all && chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    let (res, _) = write_all_until(&mut conn.stream, out, deadline).await;
    match res {
        Ok(()) => {}
        Err(IoFail::TimedOut) => return Err(AttemptError::Timeout),
        Err(_) => {
            return Err(AttemptError::Reset {
                before_response: true,
            })
        }
    }
    if let Some(rest) = body.rest.take() {
        let BodyRest::H2(mut down) = rest else {
            // HTTP/1.1 clients reach HTTP/1.1 clusters through `forward.rs`, never here.
            return Err(AttemptError::Protocol);
        };
        let mut out = Vec::new();
        loop {
            match down.data().await {
                Some(Ok(data)) => {
                    activity.stamp();
                    let n = data.len();
                    out.clear();
                    frame_body(&mut out, &data, chunked);
                    let (res, o) = write_all_until(&mut conn.stream, out, deadline).await;
                    out = o;
                    if res.is_err() {
                        return Err(AttemptError::Reset {
                            before_response: false,
                        });
                    }
                    let _ = down.flow_control().release_capacity(n);
                }
                Some(Err(_)) => return Err(AttemptError::Downstream),
                None => break,
            }
        }
        activity.complete_request();
        if chunked {
            out.clear();
            out.extend_from_slice(b"0\r\n\r\n");
            let (res, _) = write_all_until(&mut conn.stream, out, deadline).await;
            if res.is_err() {
                return Err(AttemptError::Reset {
                    before_response: false,
                });
            }
        }
    }

    // The response head.
    let limits = Limits {
        max_head_bytes: 60 * 1024,
        max_headers: 100,
        max_request_line: 8 * 1024,
    };
    let request_method = match req.head.parts.method {
        http::Method::HEAD => Method::Head,
        _ => Method::Other,
    };
    let mut buf = Vec::with_capacity(w.shared.tuning.read_buffer_bytes);
    let mut spans = Vec::with_capacity(32);
    loop {
        match parse_response(&buf, &mut spans, request_method, &limits) {
            Ok(Some(head)) if (100..200).contains(&head.status) => {
                // Interim responses are absorbed; 101 is never asked for on this path.
                if head.status == 101 {
                    return Err(AttemptError::Protocol);
                }
                buf.drain(..head.head_len.min(buf.len()));
                continue;
            }
            Ok(Some(head)) => return Ok((head, buf, spans)),
            Ok(None) => {}
            Err(_) => return Err(AttemptError::Protocol),
        }
        let room = w.shared.tuning.read_buffer_bytes;
        let (res, b) = read_append_until(&mut conn.stream, buf, room, deadline).await;
        buf = b;
        match res {
            Ok(n) => {
                if let Some(cs) = w.stats().clusters.get(conn.cluster) {
                    cs.add(w.index, ClusterStat::UpstreamCxRxBytesTotal, n as u64);
                }
            }
            Err(IoFail::TimedOut) => return Err(AttemptError::Timeout),
            Err(_) => {
                return Err(AttemptError::Reset {
                    before_response: buf.is_empty(),
                })
            }
        }
    }
}

fn frame_body(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        write_chunk_size(out, data.len() as u64);
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Response fields for the client: connection-specific ones gone, `server`,
/// `x-envoy-upstream-service-time`, the route's response mutations.
pub(crate) fn finish_response_headers(
    req: &StreamRequest<'_>,
    headers: &mut HeaderMap,
    service_time: Option<Duration>,
) {
    let mut drop = Vec::new();
    for name in headers.keys() {
        let n = name.as_str().as_bytes();
        if is_hop_by_hop(n)
            || n == b"x-envoy-upstream-service-time"
            || req.mutations.removes_response(n)
        {
            drop.push(name.clone());
        }
    }
    for name in drop {
        headers.remove(name);
    }
    if !headers.contains_key(http::header::SERVER) {
        if let Ok(v) = HeaderValue::from_str(&req.hcm.server_name) {
            headers.insert(http::header::SERVER, v);
        }
    }
    if let Some(t) = service_time {
        headers.insert(
            "x-envoy-upstream-service-time",
            HeaderValue::from(t.as_millis() as u64),
        );
    }
    for m in req.mutations.iter() {
        for add in &m.response_add {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(add.name.as_bytes()),
                HeaderValue::from_str(&add.value),
            ) else {
                continue;
            };
            if add.action == AppendAction::AddIfAbsent && headers.contains_key(&name) {
                continue;
            }
            headers.append(name, value);
        }
    }
}

/// Keeps the response head for `%RESP(X)%` in the access log, as HTTP/1.1 text.
pub(crate) fn log_response_head(
    w: &Worker,
    log: &mut RequestLog<'_>,
    status: u16,
    headers: &HeaderMap,
) {
    if w.shared.access_logs.iter().all(|l| l.is_empty()) {
        return;
    }
    let mut head = Vec::with_capacity(256);
    crate::http1::encode::write_status_line(
        &mut head,
        crate::http1::parse::Version::Http11,
        status,
    );
    for (name, value) in headers {
        write_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let mut spans = Vec::new();
    let limits = Limits {
        max_head_bytes: usize::MAX,
        max_headers: usize::MAX,
        max_request_line: usize::MAX,
    };
    if parse_response(&head, &mut spans, Method::Other, &limits).is_ok() {
        log.response_head = head;
        log.response_headers = spans;
    }
}

/// What bounds a response relay: the route's deadline and the stream's progress (stamped
/// here, and marked once the response head went out, for the watchdog).
struct Relay<'a> {
    deadline: Option<Instant>,
    activity: &'a Activity,
}

/// Relays an HTTP/2 upstream's response: head, data as the client's window allows, trailers.
async fn relay_h2(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    response: Response<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    relay: Relay<'_>,
    log: &mut RequestLog<'_>,
) {
    let Relay { deadline, activity } = relay;
    let (mut parts, mut up) = response.into_parts();
    finish_response_headers(req, &mut parts.headers, log.upstream_service_time);
    let status = parts.status.as_u16();
    log.status = status;
    log_response_head(w, log, status, &parts.headers);
    let end = up.is_end_stream();
    let Ok(mut down) = respond.send_response(Response::from_parts(parts, ()), end) else {
        log.flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        return;
    };
    activity.start_response();
    if end {
        return;
    }
    let relay = async {
        loop {
            match up.data().await {
                Some(Ok(data)) => {
                    activity.stamp();
                    let n = data.len();
                    if send_all(&mut down, data, false, activity).await.is_err() {
                        log.flags
                            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                        return;
                    }
                    log.bytes_sent += n as u64;
                    let _ = up.flow_control().release_capacity(n);
                }
                Some(Err(_)) => {
                    log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
                    down.send_reset(Reason::INTERNAL_ERROR);
                    return;
                }
                None => break,
            }
        }
        match up.trailers().await {
            Ok(Some(t)) => {
                let _ = down.send_trailers(t);
            }
            Ok(None) => {
                let _ = down.send_data(Bytes::new(), true);
            }
            Err(_) => {
                log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
                down.send_reset(Reason::INTERNAL_ERROR);
            }
        }
    };
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if monoio::time::timeout(left, relay).await.is_err() {
                log.flags.insert(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                down.send_reset(Reason::CANCEL);
            }
        }
        None => relay.await,
    }
}

/// Relays an HTTP/1.1 upstream's response onto the stream, decoding its framing; the
/// connection goes back to the pool when the exchange ended cleanly.
#[allow(clippy::too_many_arguments)]
async fn relay_h1(
    w: &Rc<Worker>,
    req: &StreamRequest<'_>,
    mut conn: UpstreamConn,
    head: ResponseHead,
    mut buf: Vec<u8>,
    spans: Vec<HeaderSpan>,
    respond: &mut SendResponse<Bytes>,
    relay: Relay<'_>,
    log: &mut RequestLog<'_>,
) {
    let Relay { deadline, activity } = relay;
    let is_head = req.head.parts.method == http::Method::HEAD;
    let framing = if is_head || matches!(head.status, 204 | 304) {
        BodyFraming::None
    } else {
        head.framing
    };
    let mut headers = HeaderMap::with_capacity(spans.len() + 2);
    for h in &spans {
        let name = h.name.get(&buf);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(h.value.get(&buf)),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    finish_response_headers(req, &mut headers, log.upstream_service_time);
    log.status = status.as_u16();
    log_response_head(w, log, log.status, &headers);
    buf.drain(..head.head_len.min(buf.len()));
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let end = framing == BodyFraming::None || framing == BodyFraming::Length(0);
    let mut down = match respond.send_response(response, end) {
        Ok(down) => {
            activity.start_response();
            down
        }
        Err(_) => {
            log.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            w.pool
                .borrow_mut()
                .discard(conn, ClusterStat::UpstreamCxDestroyLocal);
            return;
        }
    };
    let mut clean = end;
    if !end {
        let mut dec = ChunkedDecoder::new();
        let mut remaining = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        let chunk = w.shared.tuning.body_chunk_bytes;
        let mut data = BytesMut::new();
        let mut decoded = Vec::new();
        loop {
            let finished = match framing {
                BodyFraming::None => true,
                BodyFraming::Length(_) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    data.extend_from_slice(&buf[..take]);
                    buf.drain(..take);
                    remaining -= take as u64;
                    remaining == 0
                }
                BodyFraming::Chunked => {
                    decoded.clear();
                    match dec.feed(&buf, &mut decoded, false) {
                        Ok(n) => {
                            buf.drain(..n);
                            data.extend_from_slice(&decoded);
                            dec.is_done()
                        }
                        Err(_) => {
                            down.send_reset(Reason::INTERNAL_ERROR);
                            log.flags.insert(ResponseFlags::UPSTREAM_PROTOCOL_ERROR);
                            break;
                        }
                    }
                }
                BodyFraming::UntilClose => {
                    data.extend_from_slice(&buf);
                    buf.clear();
                    false
                }
            };
            if !data.is_empty() || finished {
                let n = data.len();
                if send_all(&mut down, data.split().freeze(), finished, activity)
                    .await
                    .is_err()
                {
                    log.flags
                        .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                    break;
                }
                log.bytes_sent += n as u64;
            }
            if finished {
                clean = framing != BodyFraming::UntilClose;
                break;
            }
            let (res, b) = read_append_until(&mut conn.stream, buf, chunk, deadline).await;
            buf = b;
            match res {
                Ok(n) => {
                    activity.stamp();
                    if let Some(cs) = w.stats().clusters.get(conn.cluster) {
                        cs.add(w.index, ClusterStat::UpstreamCxRxBytesTotal, n as u64);
                    }
                }
                Err(IoFail::Eof) if framing == BodyFraming::UntilClose => {
                    let _ = down.send_data(Bytes::new(), true);
                    break;
                }
                Err(_) => {
                    log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
                    down.send_reset(Reason::INTERNAL_ERROR);
                    break;
                }
            }
        }
    }
    conn.finish_request();
    if clean {
        release_upstream(w, conn, &head, buf.is_empty());
    } else {
        w.pool
            .borrow_mut()
            .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
    }
}
