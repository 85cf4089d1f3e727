//! One worker's state: what every request on this thread borrows.
//!
//! Everything a request touches lives in [`Worker`], owned by this thread alone (`Rc`, `Cell`,
//! `RefCell`: no atomics beyond the stats slots, no locks). Borrows of the `RefCell`s are never
//! held across an `.await`. The thread's main future (`worker_loop.rs`) builds it and runs the
//! accept loops; its housekeeping task runs once a second: it adopts membership changes
//! (also checked at every request start) and reloaded TLS certificates, sweeps the pool, and
//! flushes histograms and access logs to their consumer threads. The worker also owns its share
//! of the downstream connection limits: a [`DownstreamCx`] guard per open connection keeps the
//! counts, and connections over the share are closed at accept.

use std::cell::{Cell, RefCell};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::access_log::{Format, WorkerAccessLog};
use crate::bufpool::SharedBufPool;
use crate::config::Bootstrap;
use crate::proxy::router::Router;
use crate::rng::FastRng;
use crate::stats::histograms::WorkerHistograms;
use crate::stats::{HttpStat, ListenerStat, Stats};
use crate::tls::client::ClusterTls;
use crate::tls::reload::TlsWatch;
use crate::upstream::lb::LoadBalancer;
use crate::upstream::membership::MembershipWatch;
use crate::upstream::pool::Pool;

/// Tunables from the command line that the request path reads.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub read_buffer_bytes: usize,
    pub body_chunk_bytes: usize,
    pub retry_buffer_bytes: usize,
    pub max_idle_per_endpoint: usize,
    /// Open downstream connections over all listeners, process-wide (`--max-connections` or
    /// `overload.global_downstream_max_connections`); each worker enforces its [`Worker::share`].
    pub max_connections: Option<u32>,
}

/// Read-only state shared by all workers (built once on the main thread).
pub struct Shared {
    pub config: Arc<Bootstrap>,
    pub stats: Arc<Stats>,
    /// One router per listener.
    pub routers: Vec<Router>,
    /// Per listener: (access-log file index, format).
    pub access_logs: Vec<Vec<(usize, Format)>>,
    pub draining: Arc<AtomicBool>,
    pub tuning: Tuning,
    /// Per cluster (by `ClusterId`): its TLS client side, `None` for plain clusters.
    pub upstream_tls: Vec<Option<Arc<ClusterTls>>>,
}

/// What the main thread hands to a worker thread.
pub struct WorkerSpec {
    pub index: usize,
    pub shared: Arc<Shared>,
    /// One socket per configured listener, in config order.
    pub listeners: Vec<StdListener>,
    pub membership: MembershipWatch,
    pub histograms: WorkerHistograms,
    pub access_log: Option<WorkerAccessLog>,
    /// The listeners' TLS, followed across certificate reloads.
    pub tls: TlsWatch,
}

pub struct Worker {
    pub index: usize,
    /// Buffers lent to connections while bytes move (HTTP/1.1 requests, HTTP/2 reads and
    /// writes); shared with this worker's HTTP/2 connections' I/O adapters.
    pub bufs: SharedBufPool,
    pub shared: Arc<Shared>,
    pub membership: RefCell<MembershipWatch>,
    pub pool: RefCell<Pool>,
    /// Multiplexed connections to the endpoints of HTTP/2 clusters.
    pub h2pool: RefCell<crate::http2::client::H2Pool>,
    pub lbs: RefCell<Vec<LoadBalancer>>,
    pub rng: RefCell<FastRng>,
    pub histograms: RefCell<WorkerHistograms>,
    pub access_log: RefCell<Option<WorkerAccessLog>>,
    /// The listeners' TLS; a handshake clones the listener's `Arc` and releases the borrow.
    pub tls: RefCell<TlsWatch>,
    /// Requests between head parsed and response finished, for drain.
    pub in_flight: Cell<usize>,
    /// Number of workers in the process, for [`Worker::share`].
    pub workers: usize,
    /// This worker's share of the global downstream connection limit.
    pub cx_limit: Option<u32>,
    /// This worker's share of each listener's `connection_limit`, by listener index.
    pub listener_cx_limits: Vec<Option<u32>>,
    /// Downstream connections open on this worker; only [`DownstreamCx`] changes it.
    pub cx_open: Cell<u32>,
    /// The same, per listener.
    pub listener_cx_open: Vec<Cell<u32>>,
}

impl Worker {
    #[inline]
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    #[inline]
    pub fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// This worker's share of a process-wide threshold (at least 1). Envoy enforces circuit
    /// breakers process-wide; ours are split evenly so no counter is shared between threads.
    pub fn share(&self, threshold: u32) -> u32 {
        share_of(threshold, self.workers)
    }
}

/// One worker's share of a process-wide `threshold` split between `workers` (at least 1).
pub fn share_of(threshold: u32, workers: usize) -> u32 {
    let w = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    threshold.div_ceil(w).max(1)
}

/// An accepted downstream connection's place in its worker's connection counts and in the
/// `downstream_cx_active` gauges. Held by the connection's task and given back on `Drop`, so a
/// connection that ends at any `.await` (or whose task is dropped) releases its slot exactly once.
pub struct DownstreamCx {
    worker: Rc<Worker>,
    listener: usize,
}

impl DownstreamCx {
    /// Takes a slot on `listener`, or says which limit is full (the stat to count): the global
    /// limit first, as Envoy checks it before the listener's own.
    pub fn admit(worker: &Rc<Worker>, listener: usize) -> Result<DownstreamCx, ListenerStat> {
        if worker
            .cx_limit
            .is_some_and(|max| worker.cx_open.get() >= max)
        {
            return Err(ListenerStat::DownstreamGlobalCxOverflow);
        }
        let open = worker.listener_cx_open.get(listener);
        let limit = worker.listener_cx_limits.get(listener).copied().flatten();
        if let (Some(open), Some(max)) = (open, limit) {
            if open.get() >= max {
                return Err(ListenerStat::DownstreamCxOverflow);
            }
        }
        worker.cx_open.set(worker.cx_open.get() + 1);
        if let Some(open) = open {
            open.set(open.get() + 1);
        }
        let stats = worker.stats();
        if let Some(ls) = stats.listeners.get(listener) {
            ls.inc(worker.index, ListenerStat::DownstreamCxTotal);
            ls.inc(worker.index, ListenerStat::DownstreamCxActive);
        }
        if let Some(hs) = stats.http.get(listener) {
            hs.inc(worker.index, HttpStat::DownstreamCxTotal);
            hs.inc(worker.index, HttpStat::DownstreamCxActive);
        }
        Ok(DownstreamCx {
            worker: worker.clone(),
            listener,
        })
    }
}

impl Drop for DownstreamCx {
    fn drop(&mut self) {
        let w = &self.worker;
        w.cx_open.set(w.cx_open.get().saturating_sub(1));
        if let Some(open) = w.listener_cx_open.get(self.listener) {
            open.set(open.get().saturating_sub(1));
        }
        let stats = w.stats();
        if let Some(ls) = stats.listeners.get(self.listener) {
            ls.dec(w.index, ListenerStat::DownstreamCxActive);
        }
        if let Some(hs) = stats.http.get(self.listener) {
            hs.dec(w.index, HttpStat::DownstreamCxActive);
        }
    }
}
