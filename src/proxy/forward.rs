//! Forwarding one request to its cluster: pick, connect or reuse, send, relay, retry.
//!
//! The phases, in order (Pingora's shape, Envoy's semantics):
//! 1. admission: the cluster's circuit breakers (this worker's share) and a non-empty member set;
//! 2. request body plan: bodies up to the retry buffer are read first so the request can be
//!    replayed; larger ones stream and can only be retried before their first byte is sent;
//! 3. attempt: load-balance an endpoint, take a pooled connection or connect, write the head
//!    (and buffered body), read the response head within the per-try and route deadlines;
//! 4. retry decision: a failure on a *reused* connection before any response byte is the
//!    keep-alive race, retried once on a fresh connection without counting as a retry; other
//!    failures and 5xx answers are retried per the route's `retry_policy`;
//! 5. relay: the response head is rewritten and the body streamed back in bounded chunks;
//!    the upstream connection returns to the pool only if the exchange ended cleanly.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ClusterId, ForwardAction, HttpConnectionManager, RetryOn, RetryPolicy, Route};
use crate::http1::body::ChunkedDecoder;
use crate::http1::encode::{write_chunk, write_last_chunk};
use crate::http1::parse::{parse_response, BodyFraming, Limits, Method, ResponseHead, Version};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::headers::{
    write_downstream_response, write_upstream_request, DownstreamFraming, DownstreamResponse,
    Mutations, UpstreamRequest,
};
use crate::proxy::http1_conn::{local_reply, Downstream, Request, RequestLog};
use crate::proxy::io::{read_append_until, write_all, write_all_until, IoFail};
use crate::proxy::tunnel::Upgraded;
use crate::proxy::worker::Worker;
use crate::stats::histograms::HistogramId;
use crate::stats::{ClusterStat, EndpointStat};
use crate::upstream::health::FAILED_ACTIVE_HC;
use crate::upstream::membership::Endpoint;
use crate::upstream::outlier::{self, Verdict};
use crate::upstream::pool::{ConnectError, UpstreamConn};

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

/// Why an attempt failed before a usable response head.
pub(crate) enum AttemptError {
    /// Connection refused or connect timeout.
    Connect,
    /// Too many connections for this worker's share of `max_connections`.
    Overflow,
    /// Write failed or the upstream closed/reset before any response byte.
    Reset { before_response: bool },
    /// No response head within the per-try or route deadline.
    Timeout,
    /// The upstream's response was not valid HTTP/1.1.
    Protocol,
    /// The client went away while we were reading its body.
    Downstream,
    /// The client's chunked body turned out malformed while streaming.
    BadBody,
}

/// Serves `req` by forwarding it to `action.cluster`. Writes the response (or a local reply)
/// to the client and fills in `log`.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    w: &Rc<Worker>,
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
) -> Option<Upgraded> {
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

    // 1. admission
    if let Err((status, flag, text)) = admit(w, cluster_id) {
        log.flags.insert(flag);
        local_reply(c, req, log, status, text, hcm, has_body, &[]).await;
        return None;
    }
    let mut budget = RetryBudget::new(retry);

    // 2. body plan (100-continue first: the client waits for it before sending the body)
    if req.head.expect_continue && has_body {
        let mut out = std::mem::take(&mut c.out);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let len = out.len();
        let (res, out) = write_all(&mut c.stream, out, len).await;
        c.out = out;
        if res.is_err() {
            c.close = true;
            log.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            finish_cluster_request(w, cluster_id, budget.held);
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
            finish_cluster_request(w, cluster_id, budget.held);
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
            finish_cluster_request(w, cluster_id, budget.held);
            return None;
        }
        crate::proxy::h1_to_h2::forward(
            w,
            listener,
            c,
            hcm,
            req,
            route,
            action,
            retry,
            mutations,
            log,
            plan,
            &mut budget,
        )
        .await;
        finish_cluster_request(w, cluster_id, budget.held);
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
    let mut reuse_retry_used = false;
    let mut fresh_to: Option<Arc<Endpoint>> = None;
    let mut last_host: Option<std::net::SocketAddr> = None;
    let mut sent_body_bytes = false;
    let outcome = loop {
        budget.back_off(w, cluster_id).await;
        let attempt_start = Instant::now();
        let per_try = policy
            .and_then(|p| p.per_try_timeout)
            .map(|t| attempt_start + t);
        let try_deadline = match (deadline, per_try) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut conn = match obtain_connection(
            w,
            cluster_id,
            cluster.connect_timeout,
            fresh_to.take(),
            &mut last_host,
        )
        .await
        {
            Ok(conn) => conn,
            Err(e) => {
                let retry_on = matches!(e, AttemptError::Connect)
                    && can_retry(policy, RetryOn::CONNECT_FAILURE);
                if retry_on && budget.take(w, cluster_id, cluster.circuit_breakers.max_retries) {
                    continue;
                }
                break Err(e);
            }
        };
        log.upstream_host = Some(conn.endpoint.addr);
        cs.inc(w.index, ClusterStat::UpstreamRqTotal);
        conn.endpoint.stats.inc(w.index, EndpointStat::RqTotal);
        conn.endpoint.stats.inc(w.index, EndpointStat::RqActive);
        conn.requests += 1;

        let host_rewrite = action.host_rewrite_literal.as_deref().map(str::as_bytes);
        let result = attempt(
            w,
            c,
            hcm,
            req,
            &mut conn,
            &mut plan,
            path_len,
            host_rewrite,
            try_deadline,
            &mut sent_body_bytes,
            mutations,
            upgrade,
        )
        .await;
        let replayable = !sent_body_bytes
            || matches!(
                plan,
                BodyPlan::Empty | BodyPlan::BufferedLength(_) | BodyPlan::BufferedChunked
            );
        match result {
            Ok(head) => {
                let sent_at = attempt_start;
                let is_5xx = head.status >= 500;
                let gateway = matches!(head.status, 502..=504);
                let retry_status = (is_5xx && can_retry(policy, RetryOn::FIVE_XX))
                    || (gateway && can_retry(policy, RetryOn::GATEWAY_ERROR));
                cs.codes.inc(w.index, head.status);
                report_outcome(w, cluster_id, &conn.endpoint, !is_5xx);
                if retry_status
                    && replayable
                    && budget.take(w, cluster_id, cluster.circuit_breakers.max_retries)
                {
                    conn.endpoint.stats.inc(w.index, EndpointStat::RqError);
                    conn.endpoint.stats.dec(w.index, EndpointStat::RqActive);
                    let mut pool = w.pool.borrow_mut();
                    pool.discard(conn, ClusterStat::UpstreamCxDestroyLocal);
                    continue;
                }
                if is_5xx {
                    conn.endpoint.stats.inc(w.index, EndpointStat::RqError);
                } else {
                    conn.endpoint.stats.inc(w.index, EndpointStat::RqSuccess);
                }
                // As Envoy counts it: a retried request whose response is not retried again.
                if budget.taken > 0 {
                    cs.inc(w.index, ClusterStat::UpstreamRqRetrySuccess);
                }
                break Ok((conn, head, sent_at));
            }
            Err(e) => {
                conn.endpoint.stats.inc(w.index, EndpointStat::RqError);
                conn.endpoint.stats.dec(w.index, EndpointStat::RqActive);
                let stale = conn.reused
                    && matches!(
                        e,
                        AttemptError::Reset {
                            before_response: true
                        }
                    );
                let endpoint_failed = !stale
                    && matches!(
                        e,
                        AttemptError::Reset { .. } | AttemptError::Timeout | AttemptError::Protocol
                    );
                if endpoint_failed {
                    report_outcome(w, cluster_id, &conn.endpoint, false);
                }
                let stale_endpoint = stale.then(|| conn.endpoint.clone());
                w.pool
                    .borrow_mut()
                    .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
                if matches!(e, AttemptError::Downstream | AttemptError::BadBody) {
                    break Err(e);
                }
                if stale && !reuse_retry_used && replayable {
                    // The keep-alive race: the upstream closed an idle connection as we reused it.
                    reuse_retry_used = true;
                    fresh_to = stale_endpoint;
                    cs.inc(w.index, ClusterStat::UpstreamRqReuseRetry);
                    continue;
                }
                let now = Instant::now();
                let global_expired = deadline.is_some_and(|d| d <= now);
                let per_try_fired = !global_expired && per_try.is_some_and(|p| p <= now);
                let retry_on = match e {
                    AttemptError::Reset { .. } => {
                        can_retry(policy, RetryOn::RESET) || can_retry(policy, RetryOn::FIVE_XX)
                    }
                    // Only a per-try timeout is retried; the route's own timeout ends the request.
                    AttemptError::Timeout if per_try_fired => {
                        can_retry(policy, RetryOn::FIVE_XX)
                            || can_retry(policy, RetryOn::GATEWAY_ERROR)
                            || can_retry(policy, RetryOn::RESET)
                    }
                    AttemptError::Protocol => can_retry(policy, RetryOn::FIVE_XX),
                    _ => false,
                };
                if matches!(e, AttemptError::Timeout) && per_try_fired {
                    cs.inc(w.index, ClusterStat::UpstreamRqPerTryTimeout);
                }
                if retry_on
                    && !global_expired
                    && replayable
                    && budget.take(w, cluster_id, cluster.circuit_breakers.max_retries)
                {
                    continue;
                }
                break Err(e);
            }
        }
    };

    match outcome {
        Ok((conn, head, sent_at)) => {
            let service_time = sent_at.elapsed();
            log.upstream_service_time = Some(service_time);
            w.histograms.borrow_mut().record(
                HistogramId::UpstreamRqTime(cluster_id),
                service_time.as_micros() as u64,
            );
            if head.status == 101 {
                // Only reachable for an enabled upgrade: the tunnel takes over both connections
                // and finishes the cluster's accounting when it ends.
                return switch_protocols(w, c, hcm, req, conn, head, mutations, log)
                    .await
                    .map(|conn| Upgraded {
                        conn,
                        cluster: cluster_id,
                        retries_held: budget.held,
                    })
                    .or_else(|| {
                        finish_cluster_request(w, cluster_id, budget.held);
                        None
                    });
            }
            relay_response(w, c, hcm, req, conn, head, deadline, mutations, log).await;
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
                finish_cluster_request(w, cluster_id, budget.held);
                return None;
            };
            log.flags.insert(flag);
            if policy.is_some_and(|p| p.num_retries > 0) && budget.left == 0 {
                log.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            // A streamed body that was not fully read leaves the connection unusable.
            let unread = matches!(plan, BodyPlan::StreamLength(_) | BodyPlan::StreamChunked(_));
            local_reply(c, req, log, status, body, hcm, unread, &[]).await;
        }
    }
    finish_cluster_request(w, cluster_id, budget.held);
    None
}

/// A local reply: status, response flag and text.
pub(crate) type Reply = (u16, ResponseFlags, &'static [u8]);

/// Admission against the cluster's circuit breakers (this worker's share) and its member set.
/// On success the request counts as active until [`finish_cluster_request`].
pub(crate) fn admit(w: &Worker, cluster_id: ClusterId) -> Result<(), Reply> {
    let (Some(cluster), Some(cs), Some(local)) = (
        w.shared.config.clusters.get(cluster_id),
        w.stats().clusters.get(cluster_id),
        w.clusters.get(cluster_id),
    ) else {
        return Err((503, ResponseFlags::NO_HEALTHY_UPSTREAM, b"no cluster"));
    };
    if local.active_requests.get() >= w.share(cluster.circuit_breakers.max_requests) {
        cs.inc(w.index, ClusterStat::UpstreamRqPendingOverflow);
        return Err((
            503,
            ResponseFlags::UPSTREAM_OVERFLOW,
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ));
    }
    let no_members = w
        .membership
        .borrow()
        .current
        .clusters
        .get(cluster_id)
        .is_none_or(|m| m.endpoints.is_empty());
    if no_members {
        cs.inc(w.index, ClusterStat::UpstreamCxNoneHealthy);
        return Err((
            503,
            ResponseFlags::NO_HEALTHY_UPSTREAM,
            b"no healthy upstream",
        ));
    }
    local.active_requests.set(local.active_requests.get() + 1);
    cs.inc(w.index, ClusterStat::UpstreamRqActive);
    Ok(())
}

/// The local reply for a failed request (Envoy's codes, flags and texts), counting the
/// cluster stat that goes with it; `None` when the client is gone and nothing can be sent.
pub(crate) fn failure_reply(w: &Worker, cluster_id: ClusterId, e: &AttemptError) -> Option<Reply> {
    let cs = w.stats().clusters.get(cluster_id);
    let count = |stat: ClusterStat| {
        if let Some(cs) = cs {
            cs.inc(w.index, stat);
        }
    };
    Some(match e {
        AttemptError::Connect => (
            503,
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        AttemptError::Overflow => {
            count(ClusterStat::UpstreamCxOverflow);
            (
                503,
                ResponseFlags::UPSTREAM_OVERFLOW,
                b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            )
        }
        AttemptError::Reset { .. } => {
            count(ClusterStat::UpstreamRqRxReset);
            (
                502,
                ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                b"upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            )
        }
        AttemptError::Timeout => {
            count(ClusterStat::UpstreamRqTimeout);
            (504, ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, b"upstream request timeout")
        }
        AttemptError::Protocol => {
            count(ClusterStat::UpstreamCxProtocolError);
            (502, ResponseFlags::UPSTREAM_PROTOCOL_ERROR, b"upstream protocol error")
        }
        AttemptError::BadBody => (
            400,
            ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            b"malformed chunked body",
        ),
        AttemptError::Downstream => return None,
    })
}

pub(crate) fn finish_cluster_request(w: &Worker, cluster: ClusterId, retries_held: u32) {
    let local = &w.clusters[cluster];
    local
        .active_retries
        .set(local.active_retries.get().saturating_sub(retries_held));
    local
        .active_requests
        .set(local.active_requests.get().saturating_sub(1));
    if let Some(cs) = w.stats().clusters.get(cluster) {
        cs.dec(w.index, ClusterStat::UpstreamRqActive);
    }
}

pub(crate) fn can_retry(policy: Option<&RetryPolicy>, on: RetryOn) -> bool {
    policy.is_some_and(|p| p.retry_on.contains(on))
}

/// Envoy's default retry back-off: full jitter over 25 ms doubling per retry, capped at 250 ms.
const RETRY_BACKOFF_BASE_MS: u64 = 25;
const RETRY_BACKOFF_MAX_MS: u64 = 250;

/// One request's retries. As in Envoy, a retry counts against the cluster's `max_retries`
/// circuit breaker (this worker's share) while it waits out its back-off, and is released when
/// the retried attempt starts.
pub(crate) struct RetryBudget {
    /// Retries the route still allows.
    pub(crate) left: u32,
    /// Retries taken so far (for `upstream_rq_retry_success`).
    pub(crate) taken: u32,
    /// Retries holding the circuit breaker now (0 or 1; released by `back_off`).
    pub(crate) held: u32,
}

impl RetryBudget {
    pub(crate) fn new(policy: Option<&RetryPolicy>) -> RetryBudget {
        RetryBudget {
            left: policy.map_or(0, |p| p.num_retries),
            taken: 0,
            held: 0,
        }
    }

    /// Takes a retry if the route allows another and this worker's share of `max_retries`
    /// outstanding retries is not used up.
    pub(crate) fn take(&mut self, w: &Worker, cluster: ClusterId, max_retries: u32) -> bool {
        if self.left == 0 {
            return false;
        }
        let cs = w.stats().clusters.get(cluster);
        let local = &w.clusters[cluster];
        if local.active_retries.get() >= w.share(max_retries) {
            if let Some(cs) = cs {
                cs.inc(w.index, ClusterStat::UpstreamRqRetryOverflow);
            }
            return false;
        }
        if let Some(cs) = cs {
            cs.inc(w.index, ClusterStat::UpstreamRqRetry);
        }
        local.active_retries.set(local.active_retries.get() + 1);
        self.held += 1;
        self.taken += 1;
        self.left -= 1;
        true
    }

    /// Before a retried attempt: waits the jittered back-off, then releases the retry's hold.
    pub(crate) async fn back_off(&mut self, w: &Worker, cluster: ClusterId) {
        if self.held == 0 {
            return;
        }
        let shift = self.taken.saturating_sub(1).min(4);
        let ceiling = (RETRY_BACKOFF_BASE_MS << shift).min(RETRY_BACKOFF_MAX_MS);
        let delay = w.rng.borrow_mut().below(ceiling + 1);
        if delay > 0 {
            monoio::time::sleep(Duration::from_millis(delay)).await;
        }
        let local = &w.clusters[cluster];
        local
            .active_retries
            .set(local.active_retries.get().saturating_sub(self.held));
        self.held = 0;
    }
}

/// Feeds one exchange's outcome with `endpoint` to this worker's outlier detection (a no-op for
/// clusters without `outlier_detection`). Success costs one load of the worker's own slot; a
/// failure looks the endpoint up in the current members to apply `max_ejection_percent`.
pub(crate) fn report_outcome(w: &Worker, cluster_id: ClusterId, endpoint: &Endpoint, ok: bool) {
    let Some(od) = w
        .shared
        .config
        .clusters
        .get(cluster_id)
        .and_then(|c| c.outlier.as_ref())
    else {
        return;
    };
    if ok {
        endpoint.health.outlier.record_success(w.index);
        return;
    }
    let membership = w.membership.borrow();
    let Some(members) = membership.current.clusters.get(cluster_id) else {
        return;
    };
    // A drained endpoint (no longer a member) gets no verdict: nothing would pick it anyway.
    let Some(idx) = members
        .endpoints
        .iter()
        .position(|e| std::ptr::eq(&**e, endpoint))
    else {
        return;
    };
    let roll = w.rng.borrow_mut().below(100) as u32;
    let verdict = outlier::record_failure(w.index, od, &members.endpoints, idx, roll);
    let cs = w.stats().clusters.get(cluster_id);
    match verdict {
        Verdict::Ejected => {
            if let Some(cs) = cs {
                cs.inc(w.index, ClusterStat::OutlierEjectionsEnforcedTotal);
                cs.inc(w.index, ClusterStat::OutlierEjectionsEnforcedConsecutive5xx);
            }
            info!(
                "worker {}: endpoint {} ejected by outlier detection ({} consecutive failures)",
                w.index, endpoint.addr, od.consecutive_5xx
            );
        }
        Verdict::Overflow => {
            if let Some(cs) = cs {
                cs.inc(w.index, ClusterStat::OutlierEjectionsOverflow);
            }
        }
        Verdict::Counted | Verdict::NotEnforced => {}
    }
}

/// Whether endpoint choice must consult health at all, and if so whether the cluster is in panic:
/// with fewer than half its members healthy (the `membership_healthy` gauge, kept by the hub and
/// the health thread), Envoy's default 50% panic threshold balances over every member instead.
fn health_mode(w: &Worker, cluster_id: ClusterId) -> (bool, bool) {
    let checked = w
        .shared
        .config
        .clusters
        .get(cluster_id)
        .is_some_and(|c| c.health_checks.is_some() || c.outlier.is_some());
    if !checked {
        return (false, false);
    }
    let panic = w.stats().clusters.get(cluster_id).is_some_and(|cs| {
        let total = cs
            .counters
            .slot_value(0, ClusterStat::MembershipTotal as usize);
        let healthy = cs
            .counters
            .slot_value(0, ClusterStat::MembershipHealthy as usize);
        healthy * 2 < total
    });
    (true, panic)
}

/// Load-balances over `endpoints` (the cluster's members): failed and ejected members are
/// skipped unless the cluster is in panic mode, and `last` (the host the previous attempt of
/// this request used) whenever another will do, so a retry goes elsewhere, as nginx's
/// `proxy_next_upstream` and Envoy's `previous_hosts` retry predicate do.
fn pick_index(
    w: &Worker,
    cluster_id: ClusterId,
    endpoints: &[Arc<Endpoint>],
    last: Option<SocketAddr>,
) -> Option<usize> {
    let n = endpoints.len();
    let active = |i: usize| {
        endpoints[i]
            .stats
            .counters
            .slot_value(w.index, EndpointStat::RqActive as usize) as u32
    };
    let (checked, panic) = health_mode(w, cluster_id);
    let usable = |i: usize| {
        let h = &endpoints[i].health;
        h.flags() & FAILED_ACTIVE_HC == 0 && !h.outlier.is_ejected(w.index)
    };
    let fresh = |i: usize| last != Some(endpoints[i].addr);
    let mut lbs = w.lbs.borrow_mut();
    let lb = lbs.get_mut(cluster_id)?;
    if checked && !panic {
        // Every member unusable while the gauge still says otherwise: fall back to all.
        lb.pick(n, |i| usable(i) && fresh(i), active)
            .or_else(|| lb.pick(n, usable, active))
            .or_else(|| lb.pick(n, |_| true, active))
    } else {
        lb.pick(n, fresh, active)
            .or_else(|| lb.pick(n, |_| true, active))
    }
}

/// Picks an endpoint of `cluster_id` (`fresh_to` when it is still a member).
/// `last` is updated to the endpoint picked.
pub(crate) fn pick_endpoint(
    w: &Worker,
    cluster_id: ClusterId,
    fresh_to: Option<Arc<Endpoint>>,
    last: &mut Option<SocketAddr>,
) -> Option<Arc<Endpoint>> {
    if let Some(e) = fresh_to.filter(|e| e.is_member()) {
        return Some(e);
    }
    let membership = w.membership.borrow();
    let members = membership.current.clusters.get(cluster_id)?;
    let idx = pick_index(w, cluster_id, &members.endpoints, *last)?;
    let picked = members.endpoints.get(idx).cloned();
    *last = picked.as_ref().map(|e| e.addr);
    picked
}

/// Picks an endpoint and returns a pooled connection to it, or a new one.
/// `fresh_to`: connect anew to this endpoint without load balancing or the pool (the keep-alive
/// race retry: the endpoint is fine, only its pooled connection was stale).
pub(crate) async fn obtain_connection(
    w: &Rc<Worker>,
    cluster_id: ClusterId,
    connect_timeout: Duration,
    fresh_to: Option<Arc<Endpoint>>,
    last: &mut Option<SocketAddr>,
) -> Result<UpstreamConn, AttemptError> {
    // Pick by index and look in the pool by address first: the endpoint's `Arc` (shared with
    // other workers) is cloned only when a new connection needs it, so the common path touches
    // no cross-thread reference count.
    let now = Instant::now();
    let endpoint = match fresh_to.filter(|e| e.is_member()) {
        Some(endpoint) => endpoint,
        None => {
            let membership = w.membership.borrow();
            let members = membership
                .current
                .clusters
                .get(cluster_id)
                .ok_or(AttemptError::Connect)?;
            let idx = pick_index(w, cluster_id, &members.endpoints, *last)
                .ok_or(AttemptError::Connect)?;
            let addr = members.endpoints[idx].addr;
            *last = Some(addr);
            if let Some(conn) = w.pool.borrow_mut().take(cluster_id, &addr, now) {
                if let Some(cs) = w.stats().clusters.get(cluster_id) {
                    cs.inc(w.index, ClusterStat::UpstreamCxPoolReuse);
                }
                return Ok(conn);
            }
            members.endpoints[idx].clone()
        }
    };
    let max_cx = w
        .shared
        .config
        .clusters
        .get(cluster_id)
        .map_or(u32::MAX, |c| w.share(c.circuit_breakers.max_connections));
    if w.pool.borrow().open_connections(cluster_id) >= max_cx {
        return Err(AttemptError::Overflow);
    }
    // The pool is not borrowed across the connect: other connections on this worker use it.
    let conn = crate::upstream::pool::connect(
        w.index,
        &w.shared.stats,
        cluster_id,
        &endpoint,
        connect_timeout,
        w.shared
            .upstream_tls
            .get(cluster_id)
            .and_then(Option::as_deref),
    )
    .await
    .map_err(|_: ConnectError| {
        report_outcome(w, cluster_id, &endpoint, false);
        AttemptError::Connect
    })?;
    w.pool.borrow_mut().opened(cluster_id);
    if let Some(cs) = w.stats().clusters.get(cluster_id) {
        cs.inc(w.index, ClusterStat::UpstreamCxHttp1Total);
    }
    Ok(conn)
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
                c.rbuf = buf;
                if res.is_err() {
                    return Err(0);
                }
            }
        }
    }
}

/// When a body read must have made progress: the connection manager's `stream_idle_timeout`.
pub(crate) fn body_deadline(c: &Downstream) -> Option<Instant> {
    (!c.stream_idle_timeout.is_zero()).then(|| Instant::now() + c.stream_idle_timeout)
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
) -> Result<ResponseHead, AttemptError> {
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
    c.out = out;
    match res {
        Ok(()) => {}
        Err(IoFail::TimedOut) => return Err(AttemptError::Timeout),
        Err(_) => {
            return Err(AttemptError::Reset {
                before_response: true,
            })
        }
    }
    if let Some(cs) = w.stats().clusters.get(conn.cluster) {
        cs.add(w.index, ClusterStat::UpstreamCxTxBytesTotal, tx);
    }
    // Streamed bodies follow.
    match plan {
        BodyPlan::StreamLength(n) => stream_length_body(w, c, conn, *n, sent_body_bytes).await?,
        BodyPlan::StreamChunked(dec) => {
            stream_chunked_body(w, c, conn, dec, sent_body_bytes).await?
        }
        _ => {}
    }
    read_response_head(w, c, req, conn, deadline, upgrade.is_some()).await
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
            let (res, mut buf) = write_all(&mut conn.stream, buf, take).await;
            buf.drain(..take);
            c.rbuf = buf;
            res.map_err(|_| AttemptError::Reset {
                before_response: false,
            })?;
            remaining -= take as u64;
        }
        if remaining == 0 {
            return Ok(());
        }
        let buf = std::mem::take(&mut c.rbuf);
        let want = (remaining as usize).min(chunk);
        let until = body_deadline(c);
        let (res, buf) = read_append_until(&mut c.stream, buf, want, until).await;
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
            break Ok(());
        }
        let buf = std::mem::take(&mut c.rbuf);
        let until = body_deadline(c);
        let (res, buf) = read_append_until(&mut c.stream, buf, chunk, until).await;
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
            let len = out.len();
            let (res, o) = write_all(&mut conn.stream, out, len).await;
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
    head: ResponseHead,
    deadline: Option<Instant>,
    mutations: &Mutations<'_>,
    log: &mut RequestLog<'_>,
) {
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

    let end = relay_body(w, c, &mut conn, body_framing, downstream, out, deadline).await;
    conn.endpoint.stats.dec(w.index, EndpointStat::RqActive);
    log.bytes_sent = end.sent;
    if !end.client_ok {
        c.close = true;
    }
    if !end.upstream_clean {
        if end.client_ok {
            // Close-delimited response: complete, but the connection is spent.
            w.pool
                .borrow_mut()
                .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
        } else {
            log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
            w.pool
                .borrow_mut()
                .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
        }
        return;
    }
    release_upstream(w, conn, &head, c.ubuf.is_empty());
}

/// After an exchange that ended at a message boundary: pools the connection when the upstream
/// keeps it alive, nothing unread is left (`drained`) and `max_requests_per_connection` allows,
/// with an idle time within the upstream's own `Keep-Alive: timeout`; otherwise closes it.
pub(crate) fn release_upstream(w: &Worker, conn: UpstreamConn, head: &ResponseHead, drained: bool) {
    let cluster = w.shared.config.clusters.get(conn.cluster);
    let max_rq = cluster.and_then(|c| c.max_requests_per_connection);
    if head.keep_alive && drained && max_rq.is_none_or(|m| conn.requests < m) {
        let mut idle = cluster.map_or(Duration::from_secs(3600), |c| c.idle_timeout);
        if let Some(secs) = head.keep_alive_timeout {
            // Leave a margin so we never send on a connection the upstream is about to close.
            let theirs = Duration::from_millis(u64::from(secs) * 1000)
                .saturating_sub(Duration::from_millis(500));
            idle = idle.min(theirs);
        }
        w.pool.borrow_mut().put(conn, idle, Instant::now());
    } else {
        w.pool
            .borrow_mut()
            .discard(conn, ClusterStat::UpstreamCxDestroyLocal);
    }
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
    let len = out.len();
    let (res, out) = write_all(&mut c.stream, out, len).await;
    c.out = out;
    if res.is_err() {
        log.flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        conn.endpoint.stats.dec(w.index, EndpointStat::RqActive);
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

async fn flush_keep(c: &mut Downstream, out: Vec<u8>) -> (bool, Vec<u8>) {
    let len = out.len();
    let (res, mut out) = write_all(&mut c.stream, out, len).await;
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
