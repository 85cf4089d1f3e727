//! Active HTTP health checking, and the per-endpoint health state workers read without locks.
//!
//! One control-side thread (`ringway-health`) checks every endpoint of every cluster that has
//! `health_checks`, taking the membership hub's current snapshot each round so endpoints that come
//! and go are followed. A check is a blocking `GET <path>` on a fresh connection with
//! `Connection: close`, bounded as a whole by `timeout`: blocking is fine here because this thread
//! is never on the request path. A cluster with a TLS `transport_socket` is checked over TLS with
//! the cluster's own client config (as Envoy checks through the cluster's transport socket), so
//! a certificate the proxy would refuse also fails the check. Endpoints of a cluster are checked one after another, so a round
//! takes at most `members × timeout`, and the next round starts `interval` (plus up to
//! `interval_jitter`) after the previous one ended.
//!
//! Verdicts are published as bits in [`EndpointHealth::flags`](crate::upstream::endpoint_health::EndpointHealth), an `AtomicU8` in the endpoint that
//! workers load with `Relaxed` when balancing: no snapshot rebuild, no message, no lock.
//! An endpoint starts healthy (Envoy starts hosts of a health-checked cluster unhealthy until the
//! first check passes; Ringway does not, so a fresh start or a newly added endpoint serves at once),
//! turns unhealthy after `unhealthy_threshold` failures in a row (unexpected status, connect error,
//! timeout, malformed answer) and healthy again after `healthy_threshold` successes in a row.
//!
//! The same thread sweeps outlier-ejection state (see `outlier.rs`) to keep the
//! `ejections_active` gauge, the `/clusters` flag and `membership_healthy` current.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Bootstrap, HealthCheck};
use crate::rng::FastRng;
use crate::stats::{ClusterStat, Stats};
use crate::tls::client::ClusterTls;
use crate::upstream::endpoint_health::EJECTED_OUTLIER;
use crate::upstream::membership::MembershipHub;
use crate::upstream::outlier;

/// Why a check failed (for the log line on a state change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFailure {
    Connect,
    Timeout,
    Io,
    Malformed,
    Status(u16),
    /// The TLS handshake failed (bad certificate, no common protocol, ...).
    Tls,
}

/// The stream a check talks over: plain TCP or TLS on top of it.
trait CheckIo: Read + Write {}
impl<T: Read + Write> CheckIo for T {}

/// Runs one HTTP check against `addr` (over TLS when `tls` names the cluster's client side and the
/// endpoint's host name): the status must be in `expected_statuses`.
pub fn check(
    addr: SocketAddr,
    host: &str,
    hc: &HealthCheck,
    tls: Option<(&ClusterTls, &str)>,
) -> Result<u16, CheckFailure> {
    let deadline = Instant::now() + hc.timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let s = TcpStream::connect_timeout(&addr, hc.timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            CheckFailure::Timeout
        } else {
            CheckFailure::Connect
        }
    })?;
    let _ = s.set_nodelay(true);
    // A second handle on the socket sets its timeouts once TLS owns the stream.
    let ctl = s.try_clone().map_err(|_| CheckFailure::Io)?;
    let mut s: Box<dyn CheckIo> = match tls {
        None => Box::new(s),
        Some((t, hostname)) => {
            let left = remaining().ok_or(CheckFailure::Timeout)?;
            ctl.set_read_timeout(Some(left))
                .and_then(|_| ctl.set_write_timeout(Some(left)))
                .map_err(|_| CheckFailure::Io)?;
            let name = t.server_name(hostname, addr);
            match crate::tls::client::blocking(&t.config, name, s) {
                Ok(tls) => Box::new(tls),
                Err(e) => {
                    return Err(match e.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                            CheckFailure::Timeout
                        }
                        _ => CheckFailure::Tls,
                    })
                }
            }
        }
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: Envoy/HC\r\nconnection: close\r\n\r\n",
        hc.path
    );
    let timed_out = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CheckFailure::Timeout,
        _ => CheckFailure::Io,
    };
    ctl.set_write_timeout(Some(remaining().ok_or(CheckFailure::Timeout)?))
        .map_err(|_| CheckFailure::Io)?;
    s.write_all(req.as_bytes()).map_err(timed_out)?;
    // Only the status line matters; read until its end.
    let mut buf = [0u8; 256];
    let mut len = 0;
    loop {
        if let Some(status) = status_of(&buf[..len])? {
            return if hc.expects(status) {
                Ok(status)
            } else {
                Err(CheckFailure::Status(status))
            };
        }
        if len == buf.len() {
            return Err(CheckFailure::Malformed);
        }
        ctl.set_read_timeout(Some(remaining().ok_or(CheckFailure::Timeout)?))
            .map_err(|_| CheckFailure::Io)?;
        match s.read(&mut buf[len..]) {
            Ok(0) => return Err(CheckFailure::Io),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
}

/// The status code once the status line is complete (`HTTP/1.x NNN ...\r\n`).
fn status_of(buf: &[u8]) -> Result<Option<u16>, CheckFailure> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        // Reject early what can never become a status line.
        let prefix = &buf[..buf.len().min(5)];
        if !b"HTTP/"[..prefix.len()].eq(prefix) {
            return Err(CheckFailure::Malformed);
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let ok_version = line.starts_with(b"HTTP/1.1 ") || line.starts_with(b"HTTP/1.0 ");
    let code = line.get(9..12).filter(|c| c.iter().all(u8::is_ascii_digit));
    match (ok_version, code) {
        (true, Some(c)) => {
            let n = c.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            if (100..600).contains(&n) {
                Ok(Some(n))
            } else {
                Err(CheckFailure::Malformed)
            }
        }
        _ => Err(CheckFailure::Malformed),
    }
}

/// Starts the health thread when some cluster has health checks or outlier detection.
pub fn spawn(
    cfg: Arc<Bootstrap>,
    hub: Arc<MembershipHub>,
    stats: Arc<Stats>,
    tls: Vec<Option<Arc<ClusterTls>>>,
) {
    if !cfg
        .clusters
        .iter()
        .any(|c| c.health_checks.is_some() || c.outlier.is_some())
    {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || run(&cfg, &hub, &stats, &tls));
    if let Err(e) = spawned {
        warn!("cannot start the health-check thread: {e}; endpoints stay healthy");
    }
}

fn run(cfg: &Bootstrap, hub: &MembershipHub, stats: &Stats, tls: &[Option<Arc<ClusterTls>>]) {
    let mut rng = FastRng::new(u64::from(std::process::id()) ^ 0x6865_616c_7468);
    let start = Instant::now();
    // The first round runs at once, so a dead endpoint is found within one timeout of start.
    let mut next_check: Vec<Instant> = vec![start; cfg.clusters.len()];
    let mut next_sweep: Vec<Instant> = vec![start; cfg.clusters.len()];
    loop {
        let now = Instant::now();
        for (id, c) in cfg.clusters.iter().enumerate() {
            let mut changed = false;
            if let Some(hc) = &c.health_checks {
                if next_check[id] <= now {
                    let t = tls.get(id).and_then(Option::as_deref);
                    changed |= check_round(hub, stats, id, &c.name, hc, t);
                    let jitter = if hc.interval_jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        Duration::from_nanos(rng.below(hc.interval_jitter.as_nanos() as u64))
                    };
                    next_check[id] = Instant::now() + hc.interval + jitter;
                }
            }
            if next_sweep[id] <= now {
                changed |= sweep(hub, stats, id);
                let every = c
                    .outlier
                    .as_ref()
                    .map_or(Duration::from_secs(1), outlier::sweep_interval);
                next_sweep[id] = Instant::now() + every;
            }
            if changed {
                hub.publish_health(id);
            }
        }
        let wake = next_check
            .iter()
            .zip(&cfg.clusters)
            .filter(|(_, c)| c.health_checks.is_some())
            .map(|(t, _)| *t)
            .chain(next_sweep.iter().copied())
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let pause = wake.saturating_duration_since(Instant::now());
        std::thread::sleep(pause.min(Duration::from_secs(1)));
    }
}

/// Checks every current member of cluster `id` once; true when any verdict changed.
fn check_round(
    hub: &MembershipHub,
    stats: &Stats,
    id: usize,
    name: &str,
    hc: &HealthCheck,
    tls: Option<&ClusterTls>,
) -> bool {
    let snap = hub.current();
    let Some(members) = snap.clusters.get(id) else {
        return false;
    };
    let cs = stats.clusters.get(id);
    // This thread is the only writer of the health_check.* counters; they live in slot 0.
    let bump = |s: ClusterStat| {
        if let Some(cs) = cs {
            cs.counters.inc(0, s as usize);
        }
    };
    let host = hc.host.as_deref().unwrap_or(name);
    let mut changed = false;
    for e in &members.endpoints {
        bump(ClusterStat::HealthCheckAttempt);
        let result = check(e.addr, host, hc, tls.map(|t| (t, e.hostname.as_str())));
        match result {
            Ok(_) => bump(ClusterStat::HealthCheckSuccess),
            Err(_) => bump(ClusterStat::HealthCheckFailure),
        }
        if e.health.record_check(result.is_ok(), hc) {
            changed = true;
            match result {
                Ok(_) => info!("cluster '{name}': endpoint {} is healthy again", e.addr),
                Err(why) => warn!(
                    "cluster '{name}': endpoint {} failed {} health check(s) in a row ({why:?}); marked unhealthy",
                    e.addr, hc.unhealthy_threshold
                ),
            }
        }
    }
    changed
}

/// Refreshes the `EJECTED_OUTLIER` bits and the `ejections_active` gauge of cluster `id`.
fn sweep(hub: &MembershipHub, stats: &Stats, id: usize) -> bool {
    let snap = hub.current();
    let Some(members) = snap.clusters.get(id) else {
        return false;
    };
    let now = outlier::now_ms();
    let mut active = 0u64;
    let mut changed = false;
    for e in &members.endpoints {
        let ejected = e.health.outlier.ejected_anywhere(now);
        active += u64::from(ejected);
        changed |= e.health.set_flag(EJECTED_OUTLIER, ejected);
    }
    if let Some(cs) = stats.clusters.get(id) {
        cs.counters
            .set(0, ClusterStat::OutlierEjectionsActive as usize, active);
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::upstream::endpoint_health::EndpointHealth;
    use std::net::TcpListener;

    fn hc() -> HealthCheck {
        HealthCheck {
            timeout: Duration::from_millis(500),
            interval: Duration::from_millis(100),
            interval_jitter: Duration::ZERO,
            unhealthy_threshold: 2,
            healthy_threshold: 3,
            path: "/healthz".into(),
            host: None,
            expected_statuses: vec![(200, 201)],
        }
    }

    #[test]
    fn thresholds_drive_the_flag() {
        let h = EndpointHealth::new(1);
        let c = hc();
        assert!(h.is_healthy());
        assert!(!h.record_check(false, &c));
        assert!(!h.record_check(true, &c), "a success breaks the run");
        assert!(!h.record_check(false, &c));
        assert!(h.record_check(false, &c));
        assert!(h.failed_active_hc() && !h.is_healthy());
        assert!(!h.record_check(true, &c));
        assert!(!h.record_check(true, &c));
        assert!(h.record_check(true, &c));
        assert!(h.is_healthy());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(status_of(b"HTTP/1.0 503\r\n"), Ok(Some(503)));
        assert_eq!(status_of(b"HTTP/1.1 20"), Ok(None));
        assert_eq!(status_of(b"HT"), Ok(None));
        assert_eq!(status_of(b"SSH-2.0"), Err(CheckFailure::Malformed));
        assert_eq!(status_of(b"HTTP/1.1 abc\r\n"), Err(CheckFailure::Malformed));
        assert_eq!(status_of(b"HTTP/2 200\r\n"), Err(CheckFailure::Malformed));
    }

    /// A one-shot origin answering `reply`; returns its address and the request it received.
    fn origin(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply).unwrap();
            String::from_utf8(req).unwrap()
        });
        (addr, t)
    }

    #[test]
    fn checks_over_the_wire() {
        let (addr, t) = origin(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(check(addr, "svc", &hc(), None), Ok(200));
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("host: svc\r\n"), "{req}");

        let (addr, t) = origin(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(
            check(addr, "svc", &hc(), None),
            Err(CheckFailure::Status(503))
        );
        t.join().unwrap();

        // Nothing listening: connection refused.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = l.local_addr().unwrap();
        drop(l);
        assert_eq!(check(dead, "svc", &hc(), None), Err(CheckFailure::Connect));
    }

    #[test]
    fn a_silent_origin_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = hc();
        c.timeout = Duration::from_millis(100);
        let started = Instant::now();
        assert_eq!(check(addr, "svc", &c, None), Err(CheckFailure::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
    }
}
