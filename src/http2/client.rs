//! Upstream HTTP/2: this worker's multiplexed connections to the endpoints of h2 clusters.
//!
//! One connection carries many requests. A request takes a stream slot on a connection to its
//! chosen endpoint that still has one (the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, capped by
//! the cluster's `max_concurrent_streams`); when every connection to that endpoint is full, a new
//! one is opened. Each connection's `h2` state machine runs in its own task on this worker; the
//! pool keeps only the `SendRequest` handle and a slot counter, so nothing here is shared with
//! other workers. A connection that failed or got GOAWAY is dropped from the pool as soon as a
//! lookup sees it; streams already on it finish.
//!
//! While a connection is being opened, requests for the same endpoint wait for it (up to its
//! stream limit) instead of each opening their own: a burst of first requests would otherwise
//! open one connection per request, as Envoy's pool avoids by attaching them to the pending one.
//! Such waiters are the cluster's pending requests (`max_pending_requests`).
//!
//! Counting is by ownership, as in the HTTP/1.1 pool: a connection's `max_connections` permit
//! lives in its driver task, a stream slot is given back when the [`StreamSlot`] drops, a
//! connection with no stream counts in `upstream_cx_idle`, and an opener whose future is dropped
//! mid-connect still wakes its waiters and leaves the pool (the [`Announced`] guard).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use super::io::H2Io;
use crate::bufpool::SharedBufPool;
use crate::config::{ClusterId, Http2Options};
use crate::stats::{ClusterStat, EndpointStat, Stats};
use crate::upstream::admission::BreakerHold;
use crate::upstream::membership::Endpoint;
use crate::upstream::pool::{connect, ConnectError};

/// One connection's stream count and state, shared by its pool entry, its slots and its driver.
struct Streams {
    in_flight: Cell<u32>,
    /// GOAWAY, failure or the driver ended: no new streams.
    closed: Cell<bool>,
    /// Counted in `upstream_cx_idle` (open with no stream).
    idle: Cell<bool>,
    stats: Arc<Stats>,
    worker: usize,
    cluster: ClusterId,
}

impl Streams {
    fn set_idle(&self, idle: bool) {
        if self.idle.get() == idle {
            return;
        }
        self.idle.set(idle);
        if let Some(cs) = self.stats.clusters.get(self.cluster) {
            if idle {
                cs.inc(self.worker, ClusterStat::UpstreamCxIdle);
            } else {
                cs.dec(self.worker, ClusterStat::UpstreamCxIdle);
            }
        }
    }

    fn acquire(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.set_idle(false);
    }

    fn release(&self) {
        let n = self.in_flight.get().saturating_sub(1);
        self.in_flight.set(n);
        self.set_idle(n == 0 && !self.closed.get());
    }

    fn close(&self) {
        self.closed.set(true);
        self.set_idle(false);
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.set_idle(false);
    }
}

struct H2Conn {
    addr: SocketAddr,
    send: SendRequest<Bytes>,
    streams: Rc<Streams>,
    max_streams: u32,
}

impl H2Conn {
    fn has_slot(&self) -> bool {
        let peer_max = u32::try_from(self.send.current_max_send_streams()).unwrap_or(u32::MAX);
        self.streams.in_flight.get() < peer_max.min(self.max_streams)
    }
}

/// A stream slot on an upstream connection, held for the life of one request; dropping it
/// frees the slot and the endpoint's `rq_active`.
pub struct StreamSlot {
    pub send: SendRequest<Bytes>,
    streams: Rc<Streams>,
    endpoint: Option<Arc<Endpoint>>,
}

impl StreamSlot {
    fn new(send: SendRequest<Bytes>, streams: Rc<Streams>) -> StreamSlot {
        streams.acquire();
        StreamSlot {
            send,
            streams,
            endpoint: None,
        }
    }

    /// The connection refused new streams (GOAWAY or failure): take no more slots on it.
    pub fn mark_closed(&self) {
        self.streams.close();
    }

    /// A request starts on this slot: the endpoint's `rq_active` is held until the slot drops.
    pub fn start_request(&mut self, endpoint: &Arc<Endpoint>) {
        if self.endpoint.is_none() {
            endpoint
                .stats
                .inc(self.streams.worker, EndpointStat::RqActive);
            self.endpoint = Some(endpoint.clone());
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(e) = self.endpoint.take() {
            e.stats.dec(self.streams.worker, EndpointStat::RqActive);
        }
        self.streams.release();
    }
}

/// Why no stream could be had.
#[derive(Debug)]
pub enum H2ConnectError {
    Connect(ConnectError),
    /// TCP (and TLS) worked but the HTTP/2 handshake did not.
    Handshake,
}

/// A connection being opened, and the requests waiting for it.
pub struct Connecting {
    cluster: ClusterId,
    addr: SocketAddr,
    /// Stream slots promised to waiters (the opener's own request is not counted).
    claimed: Cell<u32>,
    capacity: u32,
    done: Cell<bool>,
    waiters: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Connecting {
    /// Resolves once the connection is open or has failed (or its opener gave up).
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.done.get() {
                return std::task::Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    fn finish(&self) {
        self.done.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

pub struct H2Pool {
    /// Per cluster, its open connections.
    conns: Vec<Vec<H2Conn>>,
    connecting: Vec<Rc<Connecting>>,
    /// The worker's buffers, lent to the connections' I/O adapters.
    bufs: SharedBufPool,
}

impl H2Pool {
    pub fn new(clusters: usize, bufs: SharedBufPool) -> H2Pool {
        H2Pool {
            conns: (0..clusters).map(|_| Vec::new()).collect(),
            connecting: Vec::new(),
            bufs,
        }
    }

    /// A connection to `addr` being opened that can still take this request, if any.
    pub fn join_connecting(
        &mut self,
        cluster: ClusterId,
        addr: &SocketAddr,
    ) -> Option<Rc<Connecting>> {
        let c = self
            .connecting
            .iter()
            .find(|c| c.cluster == cluster && c.addr == *addr && c.claimed.get() < c.capacity)?;
        c.claimed.set(c.claimed.get() + 1);
        Some(c.clone())
    }

    /// A free stream slot on an open connection to `addr`, if any.
    pub fn take_slot(&mut self, cluster: ClusterId, addr: &SocketAddr) -> Option<StreamSlot> {
        let conns = self.conns.get_mut(cluster)?;
        conns.retain(|c| !c.streams.closed.get());
        let conn = conns.iter().find(|c| c.addr == *addr && c.has_slot())?;
        Some(StreamSlot::new(conn.send.clone(), conn.streams.clone()))
    }

    /// Forgets connections to endpoints no longer in their cluster: no new streams go there,
    /// and each connection closes once its last stream ends (its handle is gone).
    pub fn sweep(&mut self, is_member: impl Fn(ClusterId, &SocketAddr) -> bool) {
        for (cluster, conns) in self.conns.iter_mut().enumerate() {
            conns.retain(|c| {
                let keep = !c.streams.closed.get() && is_member(cluster, &c.addr);
                if !keep {
                    // Forgotten by the pool: no longer idle capacity, whatever its streams do.
                    c.streams.close();
                }
                keep
            });
        }
    }

    pub fn clear(&mut self) {
        for conns in &mut self.conns {
            for c in conns.drain(..) {
                c.streams.close();
            }
        }
        for c in self.connecting.drain(..) {
            c.finish();
        }
    }

    /// Opens a connection to `endpoint`, runs its HTTP/2 handshake, starts its driver task and
    /// returns a slot on it. `permit` is the connection's `max_connections` unit.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        pool: &std::cell::RefCell<H2Pool>,
        worker: usize,
        stats: &Arc<Stats>,
        cluster: ClusterId,
        endpoint: &Arc<Endpoint>,
        timeout: Duration,
        opts: Http2Options,
        tls: Option<&crate::tls::client::ClusterTls>,
        permit: BreakerHold,
    ) -> Result<StreamSlot, H2ConnectError> {
        let pending = Rc::new(Connecting {
            cluster,
            addr: endpoint.addr,
            claimed: Cell::new(0),
            capacity: opts.max_concurrent_streams.saturating_sub(1),
            done: Cell::new(false),
            waiters: std::cell::RefCell::new(Vec::new()),
        });
        pool.borrow_mut().connecting.push(pending.clone());
        let _announced = Announced { pool, pending };
        Self::establish(
            pool, worker, stats, cluster, endpoint, timeout, opts, tls, permit,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn establish(
        pool: &std::cell::RefCell<H2Pool>,
        worker: usize,
        stats: &Arc<Stats>,
        cluster: ClusterId,
        endpoint: &Arc<Endpoint>,
        timeout: Duration,
        opts: Http2Options,
        tls: Option<&crate::tls::client::ClusterTls>,
        permit: BreakerHold,
    ) -> Result<StreamSlot, H2ConnectError> {
        let conn = connect(worker, stats, cluster, endpoint, timeout, tls, permit)
            .await
            .map_err(H2ConnectError::Connect)?;
        let crate::upstream::pool::UpstreamConn { stream, guard, .. } = conn;
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(opts.initial_stream_window_size)
            .initial_connection_window_size(opts.initial_connection_window_size)
            .initial_max_send_streams(opts.max_concurrent_streams as usize)
            .max_header_list_size(super::MAX_HEADER_LIST_SIZE)
            .enable_push(false);
        let bufs = pool.borrow().bufs.clone();
        let handshake = builder.handshake::<_, Bytes>(H2Io::client(stream, bufs));
        let (send, connection) = match monoio::time::timeout(timeout, handshake).await {
            Ok(Ok(pair)) => pair,
            _ => {
                if let Some(cs) = stats.clusters.get(cluster) {
                    cs.inc(worker, ClusterStat::UpstreamCxProtocolError);
                }
                return Err(H2ConnectError::Handshake);
            }
        };
        if let Some(cs) = stats.clusters.get(cluster) {
            cs.inc(worker, ClusterStat::UpstreamCxHttp2Total);
        }
        let streams = Rc::new(Streams {
            in_flight: Cell::new(0),
            closed: Cell::new(false),
            idle: Cell::new(false),
            stats: stats.clone(),
            worker,
            cluster,
        });
        let driver_streams = streams.clone();
        monoio::spawn(async move {
            // The guard (gauges and the max_connections permit) lives as long as the
            // connection: cx_active drops when it really ends.
            let _guard = guard;
            let _ = connection.await;
            driver_streams.close();
        });
        let slot = StreamSlot::new(send.clone(), streams.clone());
        if let Some(conns) = pool.borrow_mut().conns.get_mut(cluster) {
            conns.push(H2Conn {
                addr: endpoint.addr,
                send,
                streams,
                max_streams: opts.max_concurrent_streams,
            });
        }
        Ok(slot)
    }
}

/// A connection being opened, announced in the pool for waiters to join; however the opener
/// ends (done, failed, or its future dropped), the announcement goes and the waiters wake.
struct Announced<'a> {
    pool: &'a std::cell::RefCell<H2Pool>,
    pending: Rc<Connecting>,
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.try_borrow_mut() {
            pool.connecting.retain(|c| !Rc::ptr_eq(c, &self.pending));
        }
        self.pending.finish();
    }
}
