//! Which endpoints each cluster has right now, and how a change reaches every worker.
//!
//! The control side (DNS re-resolution, admin membership API, later EDS and health checks) owns
//! the [`MembershipHub`]. A change builds a new immutable [`MembershipSnapshot`] and sends an
//! `Arc` of it down each worker's channel. A worker polls its channel between requests (a
//! `try_recv`, no lock) and adopts the newest snapshot; requests already in flight keep the
//! endpoint they picked. Endpoints keep their identity (and counters) across snapshots through
//! `Arc<Endpoint>`, so a worker's pool can tell "still a member" from "removed, drain it".

use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::config::{Bootstrap, ClusterId};
use crate::stats::{ClusterStat, EndpointStats, Stats};
use crate::upstream::health::EndpointHealth;

/// One upstream endpoint. Shared between snapshots while it stays a member.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The configured host name (or the address text for literal endpoints).
    pub hostname: String,
    pub stats: EndpointStats,
    /// Active health-check verdict and per-worker outlier state (`upstream::health`), read by
    /// workers without locks.
    pub health: EndpointHealth,
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
                            e.addr.map(|addr| {
                                Arc::new(Endpoint {
                                    addr,
                                    hostname: e.host.clone(),
                                    stats: EndpointStats::new(workers),
                                    health: EndpointHealth::new(workers),
                                })
                            })
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
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint {
                            addr: *addr,
                            hostname: host.clone(),
                            stats: EndpointStats::new(self.workers),
                            health: EndpointHealth::new(self.workers),
                        })
                    })
            })
            .collect();
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
        drop(st);
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
