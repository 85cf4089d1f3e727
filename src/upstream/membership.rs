//! Which endpoints each cluster has right now, and how a change reaches every worker.
//!
//! The control side (DNS re-resolution, admin membership API, later EDS and health checks) owns
//! the [`MembershipHub`]. A change builds a new immutable [`MembershipSnapshot`] and sends an
//! `Arc` of it down each worker's channel. A worker polls its channel between requests (a
//! `try_recv`, no lock) and adopts the newest snapshot; requests already in flight keep the
//! endpoint they picked. Endpoints keep their identity (and counters) across snapshots through
//! `Arc<Endpoint>`, so a worker's pool can tell "still a member" from "removed, drain it": an
//! endpoint dropped from its cluster has its `member` flag cleared once, at publish time, so a
//! connection finishing its exchange after that is closed instead of pooled.
//!
//! Every change goes through one locked read-modify-write ([`MembershipHub::set_endpoints`],
//! [`MembershipHub::add_endpoints`], [`MembershipHub::remove_endpoints`]), so the admin API and
//! the control thread (DNS, EDS) never lose each other's updates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::config::{Bootstrap, ClusterId};
use crate::stats::{ClusterStat, EndpointStats, Stats};
use crate::upstream::endpoint_health::EndpointHealth;
use crate::upstream::outlier::{HasOutlier, OutlierSlots};

/// One upstream endpoint. Shared between snapshots while it stays a member.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The configured host name (or the address text for literal endpoints).
    pub hostname: String,
    pub stats: EndpointStats,
    /// Cleared (once, never set again) when the endpoint leaves its cluster.
    member: AtomicBool,
    /// Active health-check verdict and per-worker outlier state (`upstream::endpoint_health`), read by
    /// workers without locks.
    pub health: EndpointHealth,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, hostname: String, workers: usize) -> Endpoint {
        Endpoint {
            addr,
            hostname,
            stats: EndpointStats::new(workers),
            member: AtomicBool::new(true),
            health: EndpointHealth::new(workers),
        }
    }

    /// False once a published change removed this endpoint: connections to it are drained.
    #[inline]
    pub fn is_member(&self) -> bool {
        self.member.load(Ordering::Relaxed)
    }
}

impl HasOutlier for Endpoint {
    #[inline]
    fn outlier(&self) -> &OutlierSlots {
        &self.health.outlier
    }
}

/// One cluster's members.
pub struct ClusterMembers {
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// Every cluster's members at one moment.
pub struct MembershipSnapshot {
    /// Increases by one per published change.
    pub generation: u64,
    /// Indexed by `ClusterId`.
    pub clusters: Vec<Arc<ClusterMembers>>,
}

pub struct MembershipHub {
    workers: usize,
    stats: Arc<Stats>,
    state: Mutex<HubState>,
}

struct HubState {
    current: Arc<MembershipSnapshot>,
    subscribers: Vec<Sender<Arc<MembershipSnapshot>>>,
}

/// A worker's end: adopt the newest snapshot between requests.
pub struct MembershipWatch {
    rx: Receiver<Arc<MembershipSnapshot>>,
    pub current: Arc<MembershipSnapshot>,
}

impl MembershipWatch {
    /// Adopts the newest published snapshot, if any arrived. Returns true on change.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let mut changed = false;
        while let Ok(s) = self.rx.try_recv() {
            self.current = s;
            changed = true;
        }
        changed
    }
}

impl MembershipHub {
    /// Starts with the statically known endpoints (literal addresses); DNS clusters start empty and
    /// are filled by the first resolution before workers start serving.
    pub fn new(cfg: &Bootstrap, stats: Arc<Stats>, workers: usize) -> Arc<MembershipHub> {
        let clusters = cfg
            .clusters
            .iter()
            .map(|c| {
                Arc::new(ClusterMembers {
                    endpoints: c
                        .endpoints
                        .iter()
                        .filter_map(|e| {
                            e.addr
                                .map(|addr| Arc::new(Endpoint::new(addr, e.host.clone(), workers)))
                        })
                        .collect(),
                })
            })
            .collect();
        let hub = Arc::new(MembershipHub {
            workers,
            stats,
            state: Mutex::new(HubState {
                current: Arc::new(MembershipSnapshot {
                    generation: 0,
                    clusters,
                }),
                subscribers: Vec::new(),
            }),
        });
        let current = hub.current();
        for (id, members) in current.clusters.iter().enumerate() {
            hub.publish_gauges(id, members);
        }
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The snapshot now in force (admin and control side).
    pub fn current(&self) -> Arc<MembershipSnapshot> {
        self.lock().current.clone()
    }

    /// A worker's subscription, created before the worker starts.
    pub fn subscribe(&self) -> MembershipWatch {
        let (tx, rx) = channel();
        let mut st = self.lock();
        st.subscribers.push(tx);
        MembershipWatch {
            rx,
            current: st.current.clone(),
        }
    }

    /// Replaces cluster `id`'s members with `addrs` (hostname, address). Endpoints present before
    /// and after keep their identity and counters. Returns false when nothing changed.
    pub fn set_endpoints(&self, id: ClusterId, addrs: &[(String, SocketAddr)]) -> bool {
        let mut st = self.lock();
        self.replace(&mut st, id, addrs)
    }

    /// Adds the endpoints of `addrs` that are not members yet (appended in order). Returns false
    /// when all were members already.
    pub fn add_endpoints(&self, id: ClusterId, addrs: &[(String, SocketAddr)]) -> bool {
        let mut st = self.lock();
        let Some(old) = st.current.clusters.get(id).cloned() else {
            return false;
        };
        let mut next: Vec<(String, SocketAddr)> = old
            .endpoints
            .iter()
            .map(|e| (e.hostname.clone(), e.addr))
            .collect();
        for (host, addr) in addrs {
            if !next.iter().any(|(_, a)| a == addr) {
                next.push((host.clone(), *addr));
            }
        }
        self.replace(&mut st, id, &next)
    }

    /// Removes the members whose address is in `addrs` (others are ignored). Returns false when
    /// none of them was a member.
    pub fn remove_endpoints(&self, id: ClusterId, addrs: &[SocketAddr]) -> bool {
        let mut st = self.lock();
        let Some(old) = st.current.clusters.get(id).cloned() else {
            return false;
        };
        let next: Vec<(String, SocketAddr)> = old
            .endpoints
            .iter()
            .filter(|e| !addrs.contains(&e.addr))
            .map(|e| (e.hostname.clone(), e.addr))
            .collect();
        self.replace(&mut st, id, &next)
    }

    /// Counts one EDS update of cluster `id`: `update_success` or `update_rejected`.
    pub fn record_update(&self, id: ClusterId, accepted: bool) {
        // Under the hub lock like the other membership stats, so slot 0 has one writer at a time.
        let _st = self.lock();
        let stat = if accepted {
            ClusterStat::UpdateSuccess
        } else {
            ClusterStat::UpdateRejected
        };
        if let Some(cs) = self.stats.clusters.get(id) {
            cs.counters.add(0, stat as usize, 1);
        }
    }

    /// Publishes `addrs` as cluster `id`'s members; the caller holds the lock.
    fn replace(&self, st: &mut HubState, id: ClusterId, addrs: &[(String, SocketAddr)]) -> bool {
        let Some(old) = st.current.clusters.get(id).cloned() else {
            return false;
        };
        let same = old.endpoints.len() == addrs.len()
            && old
                .endpoints
                .iter()
                .zip(addrs)
                .all(|(e, (_, a))| e.addr == *a);
        if same {
            return false;
        }
        let endpoints: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|(host, addr)| {
                old.endpoints
                    .iter()
                    .find(|e| e.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*addr, host.clone(), self.workers)))
            })
            .collect();
        for e in &old.endpoints {
            if !endpoints.iter().any(|n| Arc::ptr_eq(n, e)) {
                e.member.store(false, Ordering::Relaxed);
            }
        }
        let mut clusters = st.current.clusters.clone();
        let members = Arc::new(ClusterMembers { endpoints });
        clusters[id] = members.clone();
        let next = Arc::new(MembershipSnapshot {
            generation: st.current.generation + 1,
            clusters,
        });
        st.current = next.clone();
        st.subscribers.retain(|tx| tx.send(next.clone()).is_ok());
        // Membership stats are written only while holding the hub lock, so they have one writer
        // at a time; workers never write them.
        self.publish_gauges(id, &members);
        if let Some(cs) = self.stats.clusters.get(id) {
            cs.counters
                .add(0, ClusterStat::MembershipChange as usize, 1);
        }
        true
    }

    fn publish_gauges(&self, id: ClusterId, members: &ClusterMembers) {
        if let Some(cs) = self.stats.clusters.get(id) {
            // Written by whichever control thread holds the hub; set in slot 0, other slots stay 0.
            let total = members.endpoints.len() as u64;
            let healthy = members
                .endpoints
                .iter()
                .filter(|e| e.health.is_healthy())
                .count() as u64;
            cs.counters
                .set(0, ClusterStat::MembershipTotal as usize, total);
            cs.counters
                .set(0, ClusterStat::MembershipHealthy as usize, healthy);
        }
    }

    /// Recomputes `membership_total` and `membership_healthy` after health verdicts changed
    /// (the health-check thread calls this; the hub lock keeps the gauges single-writer).
    pub fn publish_health(&self, id: ClusterId) {
        let st = self.lock();
        if let Some(members) = st.current.clusters.get(id) {
            self.publish_gauges(id, members);
        }
        drop(st);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hub() -> (Arc<MembershipHub>, Arc<Stats>) {
        let yaml = "
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: {virtual_hosts: []}
          http_filters: [{name: envoy.filters.http.router}]
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}
";
        let cfg = crate::config::load_str(yaml).unwrap().bootstrap;
        let stats = Stats::new(&cfg, 2);
        (MembershipHub::new(&cfg, stats.clone(), 2), stats)
    }

    fn a(port: u16) -> (String, SocketAddr) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        (addr.to_string(), addr)
    }

    fn ports(hub: &MembershipHub) -> Vec<u16> {
        hub.current().clusters[0]
            .endpoints
            .iter()
            .map(|e| e.addr.port())
            .collect()
    }

    fn stat(stats: &Stats, s: ClusterStat) -> u64 {
        stats.clusters[0].counters.sum(s as usize)
    }

    #[test]
    fn add_remove_keep_identity_and_flag_removed_endpoints() {
        let (hub, stats) = hub();
        let mut watch = hub.subscribe();
        let first = hub.current().clusters[0].endpoints[0].clone();
        assert!(hub.add_endpoints(0, &[a(3), a(1)]));
        assert_eq!(ports(&hub), [1, 2, 3]);
        assert!(
            !hub.add_endpoints(0, &[a(2)]),
            "already a member: no change"
        );
        assert!(Arc::ptr_eq(&hub.current().clusters[0].endpoints[0], &first));
        assert!(hub.remove_endpoints(0, &[a(1).1, a(9).1]));
        assert_eq!(ports(&hub), [2, 3]);
        assert!(!first.is_member());
        assert!(hub.current().clusters[0]
            .endpoints
            .iter()
            .all(|e| e.is_member()));
        assert!(!hub.remove_endpoints(0, &[a(1).1]));
        assert!(hub.set_endpoints(0, &[a(1)]));
        let again = hub.current().clusters[0].endpoints[0].clone();
        assert!(again.is_member() && !Arc::ptr_eq(&again, &first));
        assert!(watch.refresh());
        assert_eq!(watch.current.generation, 3);
        assert_eq!(stat(&stats, ClusterStat::MembershipChange), 3);
        assert_eq!(stat(&stats, ClusterStat::MembershipTotal), 1);
        hub.record_update(0, true);
        hub.record_update(0, false);
        hub.record_update(0, false);
        assert_eq!(stat(&stats, ClusterStat::UpdateSuccess), 1);
        assert_eq!(stat(&stats, ClusterStat::UpdateRejected), 2);
    }
}
