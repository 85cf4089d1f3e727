//! Choosing an endpoint and getting a connection (or stream slot) to it for one attempt.
//!
//! Load balancing skips members that failed active health checks or are ejected by outlier
//! detection (unless the cluster is in panic), and avoids the host the previous attempt used
//! whenever another will do (nginx's `proxy_next_upstream`, Envoy's `previous_hosts`). The
//! connection comes from this worker's pool or is opened under the cluster's `max_connections`
//! permit, within what is left of the attempt's deadline.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ClusterId, Http2Options};
use crate::http1::parse::ResponseHead;
use crate::http2::client::{H2ConnectError, H2Pool, StreamSlot};
use crate::proxy::worker::Worker;
use crate::stats::{ClusterStat, EndpointStat};
use crate::upstream::admission::{Breaker, BreakerHold};
use crate::upstream::endpoint_health::FAILED_ACTIVE_HC;
use crate::upstream::membership::Endpoint;
use crate::upstream::outlier::{self, Verdict};
use crate::upstream::pool::{ConnectError, UpstreamConn};

use super::retry::AttemptError;

/// The hosts this request's attempts went to (the last few), which a retry avoids whenever
/// another member will do: Envoy's `previous_hosts` predicate ("reject any host already
/// attempted"), nginx's `proxy_next_upstream`. Inline, so it costs no allocation.
#[derive(Debug, Default, Clone, Copy)]
pub struct TriedHosts {
    addrs: [Option<SocketAddr>; 4],
    next: usize,
}

impl TriedHosts {
    pub fn record(&mut self, addr: SocketAddr) {
        if self.contains(&addr) {
            return;
        }
        self.addrs[self.next % self.addrs.len()] = Some(addr);
        self.next += 1;
    }

    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.addrs.iter().any(|a| a.as_ref() == Some(addr))
    }
}

/// Feeds one exchange's outcome with `endpoint` to this worker's outlier detection (a no-op for
/// clusters without `outlier_detection`). Success costs one load of the worker's own slot; a
/// failure looks the endpoint up in the current members to apply `max_ejection_percent`.
pub fn report_outcome(w: &Worker, cluster_id: ClusterId, endpoint: &Endpoint, ok: bool) {
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
/// skipped unless the cluster is in panic mode, and the hosts this request already tried
/// whenever another will do.
fn pick_index(
    w: &Worker,
    cluster_id: ClusterId,
    endpoints: &[Arc<Endpoint>],
    tried: &TriedHosts,
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
    let fresh = |i: usize| !tried.contains(&endpoints[i].addr);
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

/// Picks an endpoint of `cluster_id` (`fresh_to` when it is still a member) and records it in
/// `tried`.
pub fn pick_endpoint(
    w: &Worker,
    cluster_id: ClusterId,
    fresh_to: Option<Arc<Endpoint>>,
    tried: &mut TriedHosts,
) -> Option<Arc<Endpoint>> {
    if let Some(e) = fresh_to.filter(|e| e.is_member()) {
        return Some(e);
    }
    let membership = w.membership.borrow();
    let members = membership.current.clusters.get(cluster_id)?;
    let idx = pick_index(w, cluster_id, &members.endpoints, tried)?;
    let picked = members.endpoints.get(idx).cloned();
    if let Some(e) = &picked {
        tried.record(e.addr);
    }
    picked
}

/// The time a connect may take: the cluster's `connect_timeout`, cut to what is left of the
/// attempt's deadline. `true` when the deadline is the tighter bound (a connect cut short by
/// it is the request timing out, 504, not a connect failure, 503).
fn connect_budget(connect_timeout: Duration, deadline: Option<Instant>) -> (Duration, bool) {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left < connect_timeout {
                (left, true)
            } else {
                (connect_timeout, false)
            }
        }
        None => (connect_timeout, false),
    }
}

/// A `max_connections` permit for a new connection of `cluster_id`, or `Overflow`.
fn connection_permit(w: &Worker, cluster_id: ClusterId) -> Result<BreakerHold, AttemptError> {
    let share = w
        .shared
        .config
        .clusters
        .get(cluster_id)
        .map_or(u32::MAX, |c| w.share(c.circuit_breakers.max_connections));
    BreakerHold::try_take(
        &w.shared.stats,
        w.index,
        cluster_id,
        Breaker::Connections,
        share,
    )
    .ok_or(AttemptError::Overflow)
}

/// Picks an endpoint and returns a pooled HTTP/1.1 connection to it, or a new one.
/// `fresh_to`: connect anew to this endpoint without load balancing or the pool (the keep-alive
/// race retry: the endpoint is fine, only its pooled connection was stale).
pub async fn obtain_connection(
    w: &Rc<Worker>,
    cluster_id: ClusterId,
    connect_timeout: Duration,
    deadline: Option<Instant>,
    fresh_to: Option<Arc<Endpoint>>,
    tried: &mut TriedHosts,
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
            let idx = pick_index(w, cluster_id, &members.endpoints, tried)
                .ok_or(AttemptError::Connect)?;
            let addr = members.endpoints[idx].addr;
            tried.record(addr);
            if let Some(conn) = w.pool.borrow_mut().take(cluster_id, &addr, now) {
                if let Some(cs) = w.stats().clusters.get(cluster_id) {
                    cs.inc(w.index, ClusterStat::UpstreamCxPoolReuse);
                }
                return Ok(conn);
            }
            members.endpoints[idx].clone()
        }
    };
    let permit = connection_permit(w, cluster_id)?;
    let (timeout, cut_by_deadline) = connect_budget(connect_timeout, deadline);
    // The pool is not borrowed across the connect: other connections on this worker use it.
    let conn = crate::upstream::pool::connect(
        w.index,
        &w.shared.stats,
        cluster_id,
        &endpoint,
        timeout,
        w.shared
            .upstream_tls
            .get(cluster_id)
            .and_then(Option::as_deref),
        permit,
    )
    .await
    .map_err(|e: ConnectError| {
        if cut_by_deadline && matches!(e, ConnectError::Timeout) {
            return AttemptError::Timeout;
        }
        report_outcome(w, cluster_id, &endpoint, false);
        AttemptError::Connect
    })?;
    if let Some(cs) = w.stats().clusters.get(cluster_id) {
        cs.inc(w.index, ClusterStat::UpstreamCxHttp1Total);
    }
    Ok(conn)
}

/// A stream slot on an HTTP/2 connection to `endpoint`: a free slot on an open connection, a
/// place on one being opened (counted as a pending request while it waits), or a new
/// connection under the cluster's `max_connections` permit.
pub async fn obtain_stream_slot(
    w: &Rc<Worker>,
    cluster_id: ClusterId,
    endpoint: &Arc<Endpoint>,
    opts: Http2Options,
    connect_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<StreamSlot, AttemptError> {
    let mut slot = w.h2pool.borrow_mut().take_slot(cluster_id, &endpoint.addr);
    if slot.is_none() {
        let pending = w
            .h2pool
            .borrow_mut()
            .join_connecting(cluster_id, &endpoint.addr);
        if let Some(pending) = pending {
            let _waiting = BreakerHold::try_take(
                &w.shared.stats,
                w.index,
                cluster_id,
                Breaker::Pending,
                u32::MAX,
            );
            if let Some(cs) = w.stats().clusters.get(cluster_id) {
                cs.inc(w.index, ClusterStat::UpstreamRqPendingTotal);
            }
            pending.wait().await;
            slot = w.h2pool.borrow_mut().take_slot(cluster_id, &endpoint.addr);
        }
    }
    if let Some(slot) = slot {
        if let Some(cs) = w.stats().clusters.get(cluster_id) {
            cs.inc(w.index, ClusterStat::UpstreamCxPoolReuse);
        }
        return Ok(slot);
    }
    let permit = connection_permit(w, cluster_id)?;
    let (timeout, cut_by_deadline) = connect_budget(connect_timeout, deadline);
    let opened = H2Pool::open(
        &w.h2pool,
        w.index,
        &w.shared.stats,
        cluster_id,
        endpoint,
        timeout,
        opts,
        w.shared
            .upstream_tls
            .get(cluster_id)
            .and_then(Option::as_deref),
        permit,
    )
    .await;
    match opened {
        Ok(slot) => Ok(slot),
        Err(H2ConnectError::Connect(ConnectError::Timeout)) if cut_by_deadline => {
            Err(AttemptError::Timeout)
        }
        Err(H2ConnectError::Connect(_)) => {
            report_outcome(w, cluster_id, endpoint, false);
            Err(AttemptError::Connect)
        }
        Err(H2ConnectError::Handshake) => {
            report_outcome(w, cluster_id, endpoint, false);
            Err(AttemptError::Protocol)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn tried_hosts_remember_every_attempt_up_to_four() {
        let mut t = TriedHosts::default();
        for p in 1..=4 {
            t.record(addr(p));
        }
        assert!((1..=4).all(|p| t.contains(&addr(p))));
        // Recording a host again does not push another out.
        t.record(addr(2));
        assert!(t.contains(&addr(1)));
        // A fifth replaces the oldest.
        t.record(addr(5));
        assert!(t.contains(&addr(5)) && !t.contains(&addr(1)));
        assert!(!TriedHosts::default().contains(&addr(1)));
    }
}
