//! A worker's upstream connection pool: idle HTTP/1.1 connections per endpoint.
//!
//! Each worker owns its pool outright (no sharing, no lock). A connection comes back to the pool
//! only when its exchange ended cleanly at a message boundary; any cancelled or failed operation
//! drops it instead. Idle connections expire after the cluster's `idle_timeout`, or earlier when
//! the upstream announced `Keep-Alive: timeout=N`, and are closed once their endpoint leaves the
//! cluster. A pooled connection may still have been closed by the upstream in the meantime (the
//! keep-alive race); `proxy::forward` detects that and retries once on a fresh connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::transport::Transport;

use crate::config::ClusterId;
use crate::stats::{ClusterStat, EndpointStat, Stats};
use crate::sys::{peek_idle, IdlePeer};
use crate::tls::client::ClusterTls;
use crate::tls::handshake::HandshakeError;
use crate::upstream::admission::BreakerHold;
use crate::upstream::membership::Endpoint;

/// Keeps the connection gauges and its `max_connections` permit honest: given back however the
/// connection ends. Also holds the endpoint's `rq_active` while a request is on the connection.
pub struct CxGuard {
    stats: Arc<Stats>,
    worker: usize,
    cluster: ClusterId,
    endpoint: Arc<Endpoint>,
    /// A request is on this connection and counted in the endpoint's `rq_active`.
    rq_active: bool,
    _permit: BreakerHold,
}

impl Drop for CxGuard {
    fn drop(&mut self) {
        if let Some(cs) = self.stats.clusters.get(self.cluster) {
            cs.dec(self.worker, ClusterStat::UpstreamCxActive);
        }
        self.endpoint.stats.dec(self.worker, EndpointStat::CxActive);
        if self.rq_active {
            self.endpoint.stats.dec(self.worker, EndpointStat::RqActive);
        }
    }
}

/// An upstream connection owned by one exchange at a time.
pub struct UpstreamConn {
    pub stream: Transport,
    pub endpoint: Arc<Endpoint>,
    pub cluster: ClusterId,
    /// True when taken from the pool (it served requests before).
    pub reused: bool,
    pub requests: u32,
    /// The TCP socket under `stream` (TLS included), for the liveness peek before reuse.
    fd: std::os::fd::RawFd,
    pub(crate) guard: CxGuard,
}

impl UpstreamConn {
    /// A request starts on this connection: counted in `requests` and the endpoint's
    /// `rq_active` until [`UpstreamConn::finish_request`] or the connection drops.
    pub fn start_request(&mut self) {
        self.requests += 1;
        if !self.guard.rq_active {
            self.guard.rq_active = true;
            self.endpoint
                .stats
                .inc(self.guard.worker, EndpointStat::RqActive);
        }
    }

    /// The request on this connection is over (its response relayed or abandoned).
    pub fn finish_request(&mut self) {
        if self.guard.rq_active {
            self.guard.rq_active = false;
            self.endpoint
                .stats
                .dec(self.guard.worker, EndpointStat::RqActive);
        }
    }

    /// Whether the idle connection's socket shows the upstream closed it (or sent bytes no
    /// request asked for, which on plain HTTP/1.1 can only be garbage or an error).
    fn looks_dead(&self) -> bool {
        match peek_idle(self.fd) {
            IdlePeer::Quiet => false,
            IdlePeer::Closed => true,
            // TLS may legitimately deliver records while idle (session tickets).
            IdlePeer::Readable => !self.stream.is_tls(),
        }
    }
}

/// A pooled connection; holds `upstream_cx_idle` while it exists.
struct Idle {
    conn: Option<UpstreamConn>,
    expires: Instant,
}

impl Idle {
    fn new(conn: UpstreamConn, expires: Instant) -> Idle {
        conn.guard.adjust_idle(1);
        Idle {
            conn: Some(conn),
            expires,
        }
    }

    fn take(mut self) -> Option<UpstreamConn> {
        self.conn.take().inspect(|c| c.guard.adjust_idle(-1))
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if let Some(c) = &self.conn {
            c.guard.adjust_idle(-1);
        }
    }
}

impl CxGuard {
    fn adjust_idle(&self, delta: i64) {
        if let Some(cs) = self.stats.clusters.get(self.cluster) {
            if delta > 0 {
                cs.inc(self.worker, ClusterStat::UpstreamCxIdle);
            } else {
                cs.dec(self.worker, ClusterStat::UpstreamCxIdle);
            }
        }
    }
}

/// Per-worker pool, keyed by (cluster, endpoint address).
pub struct Pool {
    worker: usize,
    stats: Arc<Stats>,
    max_idle_per_endpoint: usize,
    idle: HashMap<(ClusterId, SocketAddr), Vec<Idle>>,
}

impl Pool {
    pub fn new(worker: usize, stats: Arc<Stats>, max_idle: usize) -> Pool {
        Pool {
            worker,
            stats,
            max_idle_per_endpoint: max_idle,
            idle: HashMap::new(),
        }
    }

    /// The most recently returned idle connection to `endpoint` that is still alive, if any.
    /// Expired ones and ones the upstream has closed are dropped on the way.
    pub fn take(
        &mut self,
        cluster: ClusterId,
        endpoint: &SocketAddr,
        now: Instant,
    ) -> Option<UpstreamConn> {
        let list = self.idle.get_mut(&(cluster, *endpoint))?;
        let mut closed = Vec::new();
        let mut found = None;
        while let Some(idle) = list.pop() {
            if idle.expires <= now {
                closed.push(ClusterStat::UpstreamCxIdleTimeout);
                continue;
            }
            let Some(mut conn) = idle.take() else {
                continue;
            };
            if conn.looks_dead() {
                closed.push(ClusterStat::UpstreamCxDestroyRemote);
                continue;
            }
            conn.reused = true;
            found = Some(conn);
            break;
        }
        for why in closed {
            self.closed(cluster, why);
        }
        found
    }

    /// Returns a connection that ended cleanly at a message boundary.
    pub fn put(&mut self, mut conn: UpstreamConn, idle_for: Duration, now: Instant) {
        conn.finish_request();
        let key = (conn.cluster, conn.endpoint.addr);
        let list = self.idle.entry(key).or_default();
        // A removed endpoint is drained: its connections close as their exchanges end.
        if list.len() >= self.max_idle_per_endpoint
            || idle_for.is_zero()
            || !conn.endpoint.is_member()
        {
            let cluster = conn.cluster;
            drop(conn);
            self.closed(cluster, ClusterStat::UpstreamCxDestroyLocal);
            return;
        }
        list.push(Idle::new(conn, now + idle_for));
    }

    /// Accounts for a connection that ends outside the pool (dropped by the exchange).
    pub fn discard(&mut self, conn: UpstreamConn, why: ClusterStat) {
        let cluster = conn.cluster;
        drop(conn);
        self.closed(cluster, why);
    }

    /// Counts why a connection closed (its counts go back as it drops).
    fn closed(&mut self, cluster: ClusterId, why: ClusterStat) {
        if let Some(cs) = self.stats.clusters.get(cluster) {
            cs.inc(self.worker, why);
        }
    }

    /// Closes expired idle connections and those whose endpoint is no longer a member.
    pub fn sweep(&mut self, now: Instant, is_member: impl Fn(ClusterId, &SocketAddr) -> bool) {
        let mut closed: Vec<(ClusterId, ClusterStat)> = Vec::new();
        self.idle.retain(|(cluster, addr), list| {
            let member = is_member(*cluster, addr);
            list.retain(|idle| {
                let keep = member && idle.expires > now;
                if !keep {
                    closed.push((
                        *cluster,
                        if member {
                            ClusterStat::UpstreamCxIdleTimeout
                        } else {
                            ClusterStat::UpstreamCxDestroyLocal
                        },
                    ));
                }
                keep
            });
            !list.is_empty()
        });
        for (cluster, why) in closed {
            self.closed(cluster, why);
        }
    }

    /// Closes every idle connection (drain).
    pub fn clear(&mut self) {
        self.sweep(Instant::now(), |_, _| false);
    }
}

/// Opens a new connection to `endpoint` within `timeout`, TLS included when the cluster has a TLS
/// `transport_socket` (as Envoy's `connect_timeout` covers the transport socket's handshake).
/// `permit` is the connection's `max_connections` unit, taken by the caller before connecting;
/// the connection holds it for life. The pool is not borrowed across the await.
pub async fn connect(
    worker: usize,
    stats: &Arc<Stats>,
    cluster: ClusterId,
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
    tls: Option<&ClusterTls>,
    permit: BreakerHold,
) -> Result<UpstreamConn, ConnectError> {
    let cs = stats.clusters.get(cluster);
    let started = Instant::now();
    let attempt = monoio::time::timeout(timeout, TcpStream::connect_addr(endpoint.addr)).await;
    let stream = match attempt {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            if let Some(cs) = cs {
                cs.inc(worker, ClusterStat::UpstreamCxConnectFail);
            }
            endpoint.stats.inc(worker, EndpointStat::CxConnectFail);
            return Err(ConnectError::Refused(e));
        }
        Err(_) => {
            if let Some(cs) = cs {
                cs.inc(worker, ClusterStat::UpstreamCxConnectFail);
                cs.inc(worker, ClusterStat::UpstreamCxConnectTimeout);
            }
            endpoint.stats.inc(worker, EndpointStat::CxConnectFail);
            return Err(ConnectError::Timeout);
        }
    };
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let stream = match tls {
        None => Transport::Plain(stream),
        Some(t) => {
            let left = timeout.saturating_sub(started.elapsed());
            let name = t.server_name(&endpoint.hostname, endpoint.addr);
            match crate::tls::client::handshake(&t.config, name, stream, left).await {
                Ok((s, negotiated)) => {
                    if let Some(cs) = cs {
                        cs.inc(worker, ClusterStat::SslHandshake);
                        if negotiated.resumed {
                            cs.inc(worker, ClusterStat::SslSessionReused);
                        }
                    }
                    Transport::ClientTls(Box::new(s))
                }
                Err(e) => {
                    if let Some(cs) = cs {
                        cs.inc(worker, ClusterStat::UpstreamCxConnectFail);
                        cs.inc(
                            worker,
                            match e {
                                HandshakeError::Verify(_) => ClusterStat::SslFailVerifyError,
                                HandshakeError::TimedOut => ClusterStat::UpstreamCxConnectTimeout,
                                _ => ClusterStat::SslConnectionError,
                            },
                        );
                    }
                    endpoint.stats.inc(worker, EndpointStat::CxConnectFail);
                    debug!(
                        "cluster {}: TLS to {} ({}) failed: {e}",
                        cs.map_or("?", |c| c.name.as_str()),
                        endpoint.addr,
                        endpoint.hostname
                    );
                    return Err(ConnectError::Tls(e));
                }
            }
        }
    };
    if let Some(cs) = cs {
        cs.inc(worker, ClusterStat::UpstreamCxTotal);
        cs.inc(worker, ClusterStat::UpstreamCxActive);
    }
    endpoint.stats.inc(worker, EndpointStat::CxTotal);
    endpoint.stats.inc(worker, EndpointStat::CxActive);
    Ok(UpstreamConn {
        stream,
        endpoint: endpoint.clone(),
        cluster,
        reused: false,
        requests: 0,
        fd,
        guard: CxGuard {
            stats: stats.clone(),
            worker,
            cluster,
            endpoint: endpoint.clone(),
            rq_active: false,
            _permit: permit,
        },
    })
}

#[derive(Debug)]
pub enum ConnectError {
    Refused(io::Error),
    Timeout,
    /// TCP connected but the TLS handshake failed (verification, protocol, timeout).
    Tls(HandshakeError),
}
