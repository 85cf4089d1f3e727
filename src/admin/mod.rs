//! The admin listener: Envoy's admin endpoints on their own thread, away from the workers.
//!
//! Operators, health probes and Prometheus scrapers talk to this port a few times a second at
//! most, so it runs a small blocking HTTP/1.1 server (`http.rs`) on std threads instead of a
//! worker runtime: nothing here can delay a proxied request. The `ringway-admin` thread accepts;
//! each connection is served on its own short-lived thread, so one slow client cannot hold up
//! `/ready` or `/stats` for everyone else. At most [`MAX_CONNECTIONS`] are served at once (more are
//! answered 503 by the accept thread and closed), and each must deliver its request within
//! `http::REQUEST_DEADLINE`, so the admin side's threads and memory are bounded. Handlers (`handlers.rs`) only read
//! what workers publish (summed stat slots, merged histograms, the membership snapshot) and flip
//! the [`Lifecycle`](crate::server::Lifecycle) flags; renderers live in `render.rs` (`/stats` in
//! text, JSON and Prometheus) and `clusters.rs` (`/clusters`). Requests are written to the
//! configured `admin.access_log` files in Envoy's default format, as Envoy does.

mod clusters;
mod handlers;
pub mod http;
mod membership;
mod render;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{Format, LogContext};
use crate::proxy::flags::ResponseFlags;
use crate::server::ServerState;

pub use handlers::ENDPOINTS;

/// Admin connections served at once. Scrapers and probes open one or two at a time; sixteen leaves
/// room for several of them next to a few stuck clients.
pub const MAX_CONNECTIONS: usize = 16;

/// Binds the admin listener (before returning, so a bind error stops start-up) and serves it on
/// its own thread until the process exits.
pub fn spawn(
    addr: SocketAddr,
    state: Arc<ServerState>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("admin: cannot bind {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let paths = state
        .config
        .admin
        .as_ref()
        .map(|a| a.access_log_paths.clone())
        .unwrap_or_default();
    let log = Arc::new(Mutex::new(AdminLog::open(paths)?));
    let handle = std::thread::Builder::new()
        .name("ringway-admin".to_owned())
        .spawn(move || serve(listener, state, log))?;
    crate::info!("admin listening on {local}");
    Ok((local, handle))
}

/// `admin.access_log` files. Admin traffic is a few requests a second, so lines are written
/// straight from the admin thread rather than through the workers' writer thread.
struct AdminLog {
    files: Vec<(PathBuf, File)>,
    format: Format,
    line: Vec<u8>,
}

impl AdminLog {
    fn open(paths: Vec<PathBuf>) -> std::io::Result<AdminLog> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&p)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("admin: cannot open access log {}: {e}", p.display()),
                    )
                })?;
            files.push((p, f));
        }
        Ok(AdminLog {
            files,
            format: Format::envoy_default(),
            line: Vec::new(),
        })
    }

    fn write(&mut self, ctx: &LogContext<'_>) {
        if self.files.is_empty() {
            return;
        }
        self.line.clear();
        self.format.write(ctx, &mut self.line);
        for (p, f) in &mut self.files {
            if let Err(e) = f.write_all(&self.line) {
                crate::debug!("admin access log {}: {e}", p.display());
            }
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] admin connection slots; given back on `Drop`, however the
/// connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn serve(listener: TcpListener, state: Arc<ServerState>, log: Arc<Mutex<AdminLog>>) {
    let active = Arc::new(AtomicUsize::new(0));
    // At the fd limit accept fails 20 times a second: say so once a second, with the count.
    let mut last_report: Option<Instant> = None;
    let mut suppressed = 0u64;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let Some(slot) = Slot::take(&active) else {
                    refuse(stream);
                    continue;
                };
                let (state, log) = (state.clone(), log.clone());
                let spawned = std::thread::Builder::new()
                    .name("ringway-admin-cx".to_owned())
                    .spawn(move || {
                        let _slot = slot;
                        serve_connection(stream, &state, &log);
                    });
                // On failure the closure is dropped: the stream closes and the slot is freed.
                if let Err(e) = spawned {
                    crate::warn!("admin: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Usually EMFILE or ECONNABORTED: back off briefly instead of spinning.
                let now = Instant::now();
                if last_report.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    crate::warn!(
                        "admin accept failed: {e} ({suppressed} more failure(s) not logged since the last report)"
                    );
                    last_report = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Every slot is busy: answer 503 from the accept thread without waiting on the client (one
/// non-blocking write into a fresh socket's empty send buffer) and close.
fn refuse(mut stream: TcpStream) {
    crate::debug!("admin: {MAX_CONNECTIONS} connections busy, refusing one");
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=UTF-8\r\ncontent-length: 27\r\nconnection: close\r\n\r\ntoo many admin connections\n",
    );
}

fn serve_connection(mut stream: TcpStream, state: &ServerState, log: &Mutex<AdminLog>) {
    let _ = stream.set_write_timeout(Some(http::IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let (start_time, started) = (SystemTime::now(), Instant::now());
    // Taken now: once the peer has closed, getpeername fails with ENOTCONN.
    let addrs = (stream.peer_addr(), stream.local_addr());
    let read = http::read_request(&mut http::DeadlineReader::new(
        &stream,
        started + http::REQUEST_DEADLINE,
    ));
    let (resp, after, req) = match read {
        Ok(req) => {
            crate::debug!("admin {} {}", req.method, req.path);
            let (resp, after) = handlers::handle(state, &req);
            (resp, after, Some(req))
        }
        Err(http::ReadError::Bad(why)) => (
            http::Response::text(400, format!("bad request: {why}\n")),
            handlers::After::Nothing,
            None,
        ),
        Err(http::ReadError::TooLarge(code)) => (
            http::Response::text(code, "request too large\n"),
            handlers::After::Nothing,
            None,
        ),
        Err(http::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            crate::debug!("admin request not complete within the deadline: {e}");
            (
                http::Response::text(408, "request not complete within the deadline\n"),
                handlers::After::Nothing,
                None,
            )
        }
        Err(http::ReadError::Io(e)) => {
            crate::debug!("admin request read failed: {e}");
            return;
        }
        Err(http::ReadError::Closed) => return,
    };
    let head_only = req.as_ref().is_some_and(|r| r.method == "HEAD");
    if let Err(e) = http::write_response(&mut stream, &resp, head_only) {
        crate::debug!("admin response write failed: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if let (Some(req), (Ok(remote), Ok(local))) = (&req, addrs) {
        let mut log = match log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        log.write(&LogContext {
            start_time,
            request: req,
            response: &resp,
            protocol: "HTTP/1.1",
            response_code: resp.status,
            response_flags: ResponseFlags::default(),
            // Envoy counts body bytes for %BYTES_RECEIVED% and %BYTES_SENT%.
            bytes_received: req.body.len() as u64,
            bytes_sent: if head_only { 0 } else { resp.body.len() as u64 },
            duration: started.elapsed(),
            // The admin reads the whole request before answering; no upstream.
            request_duration: None,
            response_duration: None,
            upstream_service_time: None,
            upstream_host: None,
            upstream_cluster: "",
            downstream_remote: remote,
            downstream_local: local,
            route_name: "",
        });
    }
    if after == handlers::After::Shutdown {
        crate::info!("shutdown requested via /quitquitquit");
        state.lifecycle.request_shutdown();
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A small configuration for the renderer and end-to-end tests.
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::render::ServerGauges;
    use crate::config::*;

    pub fn bootstrap() -> Bootstrap {
        let hcm = HttpConnectionManager {
            stat_prefix: "ingress_http".into(),
            codec_type: CodecType::Auto,
            route_config: RouteConfig {
                name: "local_route".into(),
                virtual_hosts: Vec::new(),
                headers: HeaderMutations::default(),
            },
            access_logs: Vec::new(),
            request_headers_timeout: Duration::from_secs(30),
            stream_idle_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(3600),
            request_timeout: Duration::ZERO,
            drain_timeout: Duration::from_secs(5),
            max_stream_duration: Duration::ZERO,
            max_request_headers_kb: 60,
            max_headers_count: 100,
            use_remote_address: true,
            generate_request_id: true,
            server_name: "ringway".into(),
            upgrade_types: Vec::new(),
            http2: Http2Options::default(),
            accept_http_10: false,
            default_host_for_http_10: None,
        };
        let endpoint = |port: u16| EndpointSpec {
            host: "127.0.0.1".into(),
            port,
            addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        };
        Bootstrap {
            admin: None,
            listeners: vec![Listener {
                name: "listener_0".into(),
                address: "0.0.0.0:10000".parse().unwrap(),
                backlog: 128,
                per_connection_buffer_limit_bytes: 1 << 20,
                connection_limit: None,
                hcm,
                tls: None,
            }],
            clusters: vec![Cluster {
                name: "service1".into(),
                discovery: DiscoveryType::Static,
                connect_timeout: Duration::from_secs(5),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![endpoint(8081), endpoint(8082)],
                dns_refresh_rate: Duration::from_secs(5),
                dns_lookup_family: DnsLookupFamily::Auto,
                idle_timeout: Duration::from_secs(3600),
                max_requests_per_connection: None,
                circuit_breakers: CircuitBreakers::default(),
                per_connection_buffer_limit_bytes: 1 << 20,
                eds_path: None,
                eds_service_name: None,
                health_checks: None,
                outlier: None,
                protocol: UpstreamProtocol::Http1,
                tls: None,
            }],
            global_downstream_max_connections: None,
            dispatcher_stats: false,
        }
    }

    pub fn server_gauges() -> ServerGauges {
        ServerGauges {
            live: true,
            state: 0,
            uptime_secs: 12,
            concurrency: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::logging::{self, Level};
    use crate::server::{Lifecycle, ServerInfo};
    use crate::stats::{ClusterStat, Stats};
    use crate::upstream::membership::MembershipHub;
    use std::io::{Read, Write};

    fn state() -> Arc<ServerState> {
        state_with(test_support::bootstrap())
    }

    fn state_with(cfg: crate::config::Bootstrap) -> Arc<ServerState> {
        let stats = Stats::new(&cfg, 2);
        let membership = MembershipHub::new(&cfg, stats.clone(), 2);
        Arc::new(ServerState {
            info: ServerInfo {
                version: crate::server::VERSION,
                concurrency: 2,
                io_driver: "io_uring",
                command_line: vec!["ringway".into(), "-c".into(), "envoy.yaml".into()],
                options: vec![("config-path", "envoy.yaml".into())],
            },
            config: Arc::new(cfg),
            raw_config: serde_json::json!({"static_resources": {"clusters": []}}),
            stats,
            lifecycle: Lifecycle::new(std::thread::current()),
            membership,
        })
    }

    /// One request over a fresh connection; returns (status, body).
    fn call(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "{method} {target} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        (status, body.to_owned())
    }

    #[test]
    fn bind_error_is_returned() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = spawn(taken.local_addr().unwrap(), state()).err().unwrap();
        assert!(e.to_string().contains("admin: cannot bind"), "{e}");
    }

    #[test]
    fn end_to_end() {
        let st = state();
        st.stats.clusters[0].add(1, ClusterStat::UpstreamRqTotal, 30);
        let (addr, _thread) = spawn("127.0.0.1:0".parse().unwrap(), st.clone()).unwrap();

        assert_eq!(call(addr, "GET", "/ready"), (200, "LIVE\n".into()));

        let (code, body) = call(addr, "GET", "/server_info");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["state"], "LIVE");
        assert_eq!(v["concurrency"], 2);
        assert_eq!(v["command_line_options"]["config-path"], "envoy.yaml");
        assert_eq!(v["command_line_options"]["io_driver"], "io_uring");
        assert!(v["uptime_current_epoch"].as_str().unwrap().ends_with('s'));

        let (code, body) = call(addr, "GET", "/stats?filter=upstream_rq_total");
        assert_eq!(code, 200);
        assert_eq!(body, "cluster.service1.upstream_rq_total: 30\n");

        let (code, body) = call(addr, "GET", "/stats?format=json&filter=server.live");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["stats"][0],
            serde_json::json!({"name": "server.live", "value": 1})
        );

        let (code, body) = call(addr, "GET", "/stats/prometheus");
        assert_eq!(code, 200);
        assert!(
            body.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"service1\"} 30\n")
        );

        let (code, body) = call(addr, "GET", "/clusters");
        assert_eq!(code, 200);
        assert!(body.contains("service1::127.0.0.1:8082::health_flags::healthy\n"));
        let (_, body) = call(addr, "GET", "/clusters?format=json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["cluster_statuses"][0]["name"], "service1");

        let (_, body) = call(addr, "GET", "/config_dump");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["configs"][0]["@type"],
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"
        );
        assert_eq!(v["configs"][0]["bootstrap"], st.raw_config);

        let (code, body) = call(addr, "GET", "/nope");
        assert_eq!(code, 404);
        assert!(body.contains("/stats/prometheus: "));
        let (code, body) = call(addr, "GET", "/");
        assert_eq!(code, 200);
        assert!(body.contains("/quitquitquit: "));

        // Mutating endpoints need POST.
        let (code, body) = call(addr, "GET", "/quitquitquit");
        assert_eq!(code, 405);
        assert!(body.contains("POST required"));
        assert!(!st.lifecycle.shutdown_requested());

        assert_eq!(
            call(addr, "POST", "/healthcheck/fail"),
            (200, "OK\n".into())
        );
        assert!(st.lifecycle.health_failed());
        assert_eq!(call(addr, "POST", "/healthcheck/ok"), (200, "OK\n".into()));
        assert!(!st.lifecycle.health_failed());

        {
            let _g = logging::TEST_LEVEL_LOCK
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let before = logging::level();
            let (code, body) = call(addr, "POST", "/logging?level=debug");
            assert_eq!(
                (code, body.as_str()),
                (200, "active loggers:\n  ringway: debug\n")
            );
            assert_eq!(logging::level(), Level::Debug);
            let (code, body) = call(addr, "POST", "/logging?level=loud");
            assert_eq!(code, 400);
            assert!(body.contains("trace, debug, info, warning, error, critical, off"));
            assert_eq!(logging::level(), Level::Debug);
            logging::set_level(before);
        }

        for refused in ["/drain_listeners?graceful", "/drain_listeners?later=1"] {
            let (code, body) = call(addr, "POST", refused);
            assert_eq!(code, 400, "{refused}: {body}");
            assert_eq!(call(addr, "GET", "/ready"), (200, "LIVE\n".into()));
        }
        assert!(call(addr, "POST", "/drain_listeners?graceful")
            .1
            .contains("not supported"));
        assert_eq!(
            call(addr, "POST", "/drain_listeners?inboundonly"),
            (200, "OK\n".into())
        );
        assert_eq!(call(addr, "GET", "/ready"), (503, "DRAINING\n".into()));
        let (_, body) = call(addr, "GET", "/stats?filter=server.state");
        assert_eq!(body, "server.state: 1\n");

        assert_eq!(call(addr, "POST", "/quitquitquit"), (200, "OK\n".into()));
        // The flag is set right after the response is written; give the admin thread a moment.
        for _ in 0..100 {
            if st.lifecycle.shutdown_requested() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(st.lifecycle.shutdown_requested());
    }

    #[test]
    fn admin_requests_go_to_the_admin_access_log() {
        let path = std::env::temp_dir().join(format!("ringway-admin-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut cfg = test_support::bootstrap();
        cfg.admin = Some(crate::config::Admin {
            address: "127.0.0.1:0".parse().unwrap(),
            access_log_paths: vec![path.clone()],
        });
        let (addr, _t) = spawn("127.0.0.1:0".parse().unwrap(), state_with(cfg)).unwrap();
        assert_eq!(call(addr, "GET", "/ready?x=1"), (200, "LIVE\n".into()));
        let mut content = String::new();
        for _ in 0..100 {
            content = std::fs::read_to_string(&path).unwrap_or_default();
            if !content.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&path);
        assert!(content.starts_with('['), "{content}");
        assert!(
            content.contains("] \"GET /ready?x=1 HTTP/1.1\" 200 - 0 5 "),
            "{content}"
        );
        assert!(
            content.ends_with(" - \"-\" \"-\" \"-\" \"admin\" \"-\"\n"),
            "{content}"
        );
    }

    #[test]
    fn connections_over_the_cap_get_503_and_slots_come_back() {
        let (addr, _t) = spawn("127.0.0.1:0".parse().unwrap(), state()).unwrap();
        // Fill every slot with a client that sends half a request and waits.
        let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /ready HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        // The accept thread hands them to their threads in order; the next one is refused.
        let mut refused = String::new();
        for _ in 0..100 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /ready HTTP/1.1\r\n\r\n").unwrap();
            refused.clear();
            let _ = s.read_to_string(&mut refused);
            if refused.starts_with("HTTP/1.1 503 ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && refused.ends_with("\r\n\r\ntoo many admin connections\n"),
            "{refused}"
        );
        // Finishing the idle requests frees their slots.
        for s in &mut idle {
            s.write_all(b"\r\n").unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
        }
        let mut ok = (0, String::new());
        for _ in 0..100 {
            ok = call(addr, "GET", "/ready");
            if ok.0 == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ok, (200, "LIVE\n".into()));
    }

    #[test]
    fn malformed_request_gets_400() {
        let (addr, _t) = spawn("127.0.0.1:0".parse().unwrap(), state()).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 400 "), "{raw}");
    }
}
