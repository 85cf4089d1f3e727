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

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use super::io::H2Io;
use crate::config::{ClusterId, Http2Options};
use crate::stats::{ClusterStat, Stats};
use crate::upstream::membership::Endpoint;
use crate::upstream::pool::{connect, ConnectError};

struct H2Conn {
    addr: SocketAddr,
    send: SendRequest<Bytes>,
    in_flight: Rc<Cell<u32>>,
    max_streams: u32,
    closed: Rc<Cell<bool>>,
}

impl H2Conn {
    fn has_slot(&self) -> bool {
        let peer_max = u32::try_from(self.send.current_max_send_streams()).unwrap_or(u32::MAX);
        self.in_flight.get() < peer_max.min(self.max_streams)
    }
}

/// A stream slot on an upstream connection, held for the life of one request; dropping it
/// frees the slot.
pub struct StreamSlot {
    pub send: SendRequest<Bytes>,
    in_flight: Rc<Cell<u32>>,
    closed: Rc<Cell<bool>>,
}

impl StreamSlot {
    /// The connection refused new streams (GOAWAY or failure): take no more slots on it.
    pub fn mark_closed(&self) {
        self.closed.set(true);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
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
    /// Resolves once the connection is open or has failed.
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

#[derive(Default)]
pub struct H2Pool {
    /// Per cluster, its open connections.
    conns: Vec<Vec<H2Conn>>,
    connecting: Vec<Rc<Connecting>>,
}

impl H2Pool {
    pub fn new(clusters: usize) -> H2Pool {
        H2Pool {
            conns: (0..clusters).map(|_| Vec::new()).collect(),
            connecting: Vec::new(),
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
        conns.retain(|c| !c.closed.get());
        let conn = conns.iter().find(|c| c.addr == *addr && c.has_slot())?;
        conn.in_flight.set(conn.in_flight.get() + 1);
        Some(StreamSlot {
            send: conn.send.clone(),
            in_flight: conn.in_flight.clone(),
            closed: conn.closed.clone(),
        })
    }

    /// Open connections of `cluster` (for its `max_connections` breaker).
    pub fn open_connections(&self, cluster: ClusterId) -> u32 {
        self.conns
            .get(cluster)
            .map_or(0, |c| c.iter().filter(|c| !c.closed.get()).count() as u32)
    }

    /// Forgets connections to endpoints no longer in their cluster: no new streams go there,
    /// and each connection closes once its last stream ends (its handle is gone).
    pub fn sweep(&mut self, is_member: impl Fn(ClusterId, &SocketAddr) -> bool) {
        for (cluster, conns) in self.conns.iter_mut().enumerate() {
            conns.retain(|c| !c.closed.get() && is_member(cluster, &c.addr));
        }
    }

    pub fn clear(&mut self) {
        for conns in &mut self.conns {
            conns.clear();
        }
        for c in self.connecting.drain(..) {
            c.finish();
        }
    }

    /// Opens a connection to `endpoint`, runs its HTTP/2 handshake, starts its driver task and
    /// returns a slot on it.
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
        let result =
            Self::establish(pool, worker, stats, cluster, endpoint, timeout, opts, tls).await;
        pool.borrow_mut()
            .connecting
            .retain(|c| !Rc::ptr_eq(c, &pending));
        pending.finish();
        result
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
    ) -> Result<StreamSlot, H2ConnectError> {
        let conn = connect(worker, stats, cluster, endpoint, timeout, tls)
            .await
            .map_err(H2ConnectError::Connect)?;
        let crate::upstream::pool::UpstreamConn { stream, _guard, .. } = conn;
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(opts.initial_stream_window_size)
            .initial_connection_window_size(opts.initial_connection_window_size)
            .initial_max_send_streams(opts.max_concurrent_streams as usize)
            .max_header_list_size(super::MAX_HEADER_LIST_SIZE)
            .enable_push(false);
        let handshake = builder.handshake::<_, Bytes>(H2Io::client(stream));
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
        let closed = Rc::new(Cell::new(false));
        let done = closed.clone();
        let slot_closed = closed.clone();
        monoio::spawn(async move {
            // The guard lives as long as the connection: cx_active drops when it really ends.
            let _guard = _guard;
            let _ = connection.await;
            done.set(true);
        });
        let in_flight = Rc::new(Cell::new(1));
        if let Some(conns) = pool.borrow_mut().conns.get_mut(cluster) {
            conns.push(H2Conn {
                addr: endpoint.addr,
                send: send.clone(),
                in_flight: in_flight.clone(),
                max_streams: opts.max_concurrent_streams,
                closed,
            });
        }
        Ok(StreamSlot {
            send,
            in_flight,
            closed: slot_closed,
        })
    }
}
