//! One worker: its listeners' accept loops, its connections, and its own state.
//!
//! Everything a request touches lives in [`Worker`], owned by this thread alone (`Rc`, `Cell`,
//! `RefCell`: no atomics beyond the stats slots, no locks). Borrows of the `RefCell`s are never
//! held across an `.await`. A housekeeping task runs once a second: it adopts membership changes
//! (also checked at every request start) and reloaded TLS certificates, sweeps the pool, and
//! flushes histograms and access logs to their consumer threads.

use std::cell::{Cell, RefCell};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{Format, WorkerAccessLog};
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

/// Large buffers lent to HTTP/1.1 connections while they have a request in hand (the upstream
/// read buffer, the outgoing buffer, a grown read buffer) and given back when the connection
/// goes idle, so an idle keep-alive connection holds only its small read buffer. Bounded: at
/// most `max_free` buffers wait here, and oversized ones are freed rather than kept.
pub struct BufPool {
    free: Vec<Vec<u8>>,
    size: usize,
    max_free: usize,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            size,
            max_free,
        }
    }

    /// An empty buffer of at least the pool's size.
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Returns a buffer for reuse (dropped when the pool is full or the buffer grew past 4x
    /// the standard size, so one large body does not pin its memory forever).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap >= self.size && cap <= self.size * 4 && self.free.len() < self.max_free {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

pub struct Worker {
    pub index: usize,
    /// Buffers lent to connections per request.
    pub bufs: RefCell<BufPool>,
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
        let w = self.workers.max(1) as u32;
        threshold.div_ceil(w).max(1)
    }
}

/// Buffers a worker keeps for reuse at most (at the default 16 KiB, 4 MiB per worker).
const BUF_POOL_MAX_FREE: usize = 256;

/// The worker's main future: accept on every listener until they close, then wait for in-flight
/// requests to finish.
pub async fn run(spec: WorkerSpec) {
    let cfg = spec.shared.config.clone();
    let seed = 0x9e37_79b9_7f4a_7c15u64
        ^ (spec.index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let worker = Rc::new(Worker {
        index: spec.index,
        bufs: RefCell::new(BufPool::new(
            spec.shared.tuning.read_buffer_bytes.max(4096),
            BUF_POOL_MAX_FREE,
        )),
        shared: spec.shared.clone(),
        membership: RefCell::new(spec.membership),
        pool: RefCell::new(Pool::new(
            spec.index,
            spec.shared.stats.clone(),
            spec.shared.tuning.max_idle_per_endpoint,
        )),
        h2pool: RefCell::new(crate::http2::client::H2Pool::new(cfg.clusters.len())),
        lbs: RefCell::new(
            cfg.clusters
                .iter()
                .enumerate()
                .map(|(i, c)| LoadBalancer::new(c.lb_policy, seed ^ (i as u64 + 1)))
                .collect(),
        ),
        rng: RefCell::new(FastRng::new(seed)),
        histograms: RefCell::new(spec.histograms),
        access_log: RefCell::new(spec.access_log),
        tls: RefCell::new(spec.tls),
        in_flight: Cell::new(0),
        workers: spec.shared.stats.workers,
    });

    let open_listeners = Rc::new(Cell::new(0usize));
    for (li, std_listener) in spec.listeners.into_iter().enumerate() {
        match monoio::net::TcpListener::from_std(std_listener) {
            Ok(l) => {
                open_listeners.set(open_listeners.get() + 1);
                monoio::spawn(accept_loop(worker.clone(), li, l, open_listeners.clone()));
            }
            Err(e) => error!("worker {}: listener {li}: {e}", spec.index),
        }
    }

    // Housekeeping until the listeners are closed and nothing is in flight.
    let mut last_sweep = (
        Instant::now(),
        worker.membership.borrow().current.generation,
    );
    loop {
        let tick = if open_listeners.get() == 0 {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        };
        monoio::time::sleep(tick).await;
        housekeeping(&worker, &mut last_sweep);
        if open_listeners.get() == 0 && worker.in_flight.get() == 0 {
            break;
        }
    }
    worker.pool.borrow_mut().clear();
    worker.h2pool.borrow_mut().clear();
    worker.histograms.borrow_mut().flush();
    let mut log = worker.access_log.borrow_mut();
    if let Some(log) = log.as_mut() {
        log.flush();
    }
}

fn housekeeping(worker: &Rc<Worker>, last_sweep: &mut (Instant, u64)) {
    let now = Instant::now();
    worker.membership.borrow_mut().refresh();
    worker.tls.borrow_mut().refresh();
    let snapshot = worker.membership.borrow().current.clone();
    // Sweep every second, and at once after a membership change (adopted here or at a request
    // start) so idle connections to removed endpoints close promptly.
    if now.duration_since(last_sweep.0) >= Duration::from_secs(1)
        || snapshot.generation != last_sweep.1
    {
        let periodic = now.duration_since(last_sweep.0) >= Duration::from_secs(1);
        *last_sweep = (now, snapshot.generation);
        let is_member = |cluster: usize, addr: &std::net::SocketAddr| {
            snapshot
                .clusters
                .get(cluster)
                .is_some_and(|m| m.endpoints.iter().any(|e| e.addr == *addr))
        };
        worker.pool.borrow_mut().sweep(now, is_member);
        worker.h2pool.borrow_mut().sweep(is_member);
        // Histograms go to the admin thread once a second: each flush copies them.
        if periodic {
            worker.histograms.borrow_mut().flush();
        }
    }
    if let Some(log) = worker.access_log.borrow_mut().as_mut() {
        log.flush();
    }
}

async fn accept_loop(
    worker: Rc<Worker>,
    listener_index: usize,
    listener: monoio::net::TcpListener,
    open: Rc<Cell<usize>>,
) {
    let stats = worker.shared.stats.clone();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if worker.draining() {
                    break;
                }
                let _ = stream.set_nodelay(true);
                if let Some(ls) = stats.listeners.get(listener_index) {
                    ls.inc(worker.index, ListenerStat::DownstreamCxTotal);
                    ls.inc(worker.index, ListenerStat::DownstreamCxActive);
                }
                if let Some(hs) = stats.http.get(listener_index) {
                    hs.inc(worker.index, HttpStat::DownstreamCxTotal);
                    hs.inc(worker.index, HttpStat::DownstreamCxActive);
                }
                let w = worker.clone();
                monoio::spawn(async move {
                    super::connection::serve(&w, listener_index, stream, peer).await;
                    let stats = w.stats();
                    if let Some(ls) = stats.listeners.get(listener_index) {
                        ls.dec(w.index, ListenerStat::DownstreamCxActive);
                    }
                    if let Some(hs) = stats.http.get(listener_index) {
                        hs.dec(w.index, HttpStat::DownstreamCxActive);
                    }
                });
            }
            Err(e) => {
                if worker.draining() {
                    break;
                }
                // EMFILE and friends: back off briefly rather than spin.
                warn!("worker {}: accept failed: {e}", worker.index);
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    open.set(open.get().saturating_sub(1));
}
