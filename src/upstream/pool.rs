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
use crate::tls::client::ClusterTls;
use crate::tls::handshake::HandshakeError;
use crate::upstream::membership::Endpoint;

/// Keeps the connection gauges honest: decremented however the connection ends.
pub struct CxGuard {
    stats: Arc<Stats>,
    worker: usize,
    cluster: ClusterId,
    endpoint: Arc<Endpoint>,
}

impl Drop for CxGuard {
    fn drop(&mut self) {
        if let Some(cs) = self.stats.clusters.get(self.cluster) {
            cs.dec(self.worker, ClusterStat::UpstreamCxActive);
        }
        self.endpoint.stats.dec(self.worker, EndpointStat::CxActive);
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
    pub(crate) _guard: CxGuard,
}

struct Idle {
    conn: UpstreamConn,
    expires: Instant,
}

/// Per-worker pool, keyed by (cluster, endpoint address).
pub struct Pool {
    worker: usize,
    stats: Arc<Stats>,
    max_idle_per_endpoint: usize,
    idle: HashMap<(ClusterId, SocketAddr), Vec<Idle>>,
    /// Open connections per cluster on this worker (for `max_connections`).
    open: Vec<u32>,
}

impl Pool {
    pub fn new(worker: usize, stats: Arc<Stats>, clusters: usize, max_idle: usize) -> Pool {
        Pool {
            worker,
            stats,
            max_idle_per_endpoint: max_idle,
            idle: HashMap::new(),
            open: vec![0; clusters],
        }
    }

    /// Open connections of `cluster` on this worker (pooled and in use).
    pub fn open_connections(&self, cluster: ClusterId) -> u32 {
        self.open.get(cluster).copied().unwrap_or(0)
    }

    /// The most recently returned live idle connection to `endpoint`, if any.
    pub fn take(
        &mut self,
        cluster: ClusterId,
        endpoint: &SocketAddr,
        now: Instant,
    ) -> Option<UpstreamConn> {
        let list = self.idle.get_mut(&(cluster, *endpoint))?;
        let mut expired = 0;
        let mut found = None;
        while let Some(idle) = list.pop() {
            if idle.expires > now {
                let mut conn = idle.conn;
                conn.reused = true;
                found = Some(conn);
                break;
            }
            expired += 1;
        }
        for _ in 0..expired {
            self.closed(cluster, ClusterStat::UpstreamCxIdleTimeout);
        }
        found
    }

    /// Returns a connection that ended cleanly at a message boundary.
    pub fn put(&mut self, conn: UpstreamConn, idle_for: Duration, now: Instant) {
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
        list.push(Idle {
            conn,
            expires: now + idle_for,
        });
    }

    /// Accounts for a connection that ends outside the pool (dropped by the exchange).
    pub fn discard(&mut self, conn: UpstreamConn, why: ClusterStat) {
        let cluster = conn.cluster;
        drop(conn);
        self.closed(cluster, why);
    }

    fn closed(&mut self, cluster: ClusterId, why: ClusterStat) {
        if let Some(n) = self.open.get_mut(cluster) {
            *n = n.saturating_sub(1);
        }
        if let Some(cs) = self.stats.clusters.get(cluster) {
            cs.inc(self.worker, why);
        }
    }

    /// Counts a connection opened by [`connect`] as this pool's.
    pub fn opened(&mut self, cluster: ClusterId) {
        if let Some(n) = self.open.get_mut(cluster) {
            *n += 1;
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
/// `transport_socket` (as Envoy's `connect_timeout` covers the transport socket's handshake). The
/// caller counts it in its pool ([`Pool::opened`]); the pool is not borrowed across the await.
pub async fn connect(
    worker: usize,
    stats: &Arc<Stats>,
    cluster: ClusterId,
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
    tls: Option<&ClusterTls>,
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
        _guard: CxGuard {
            stats: stats.clone(),
            worker,
            cluster,
            endpoint: endpoint.clone(),
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
