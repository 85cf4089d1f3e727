//! Dropping an exchange at any await point gives back everything it held.
//!
//! A client reset, a timeout or a `select!` drops the future that serves a connection wherever
//! it is suspended. These tests build a real worker from YAML inside a test runtime, serve one
//! real client connection per round, poll the connection's future exactly `k` times (letting
//! the peers move between polls), drop it, and check every count that gates admission or feeds
//! a gauge: the connection manager's `downstream_rq_active` and `downstream_cx_active`, the
//! worker's in-flight requests, each cluster's `upstream_rq_active`, `upstream_rq_pending_active`,
//! its breaker units, and that every open upstream connection is an idle pooled one. `k` runs
//! from 0 until the exchange finishes on its own, so every suspension point of the path is a
//! drop point in some round. The upstreams are real too: a scripted HTTP/1.1 server that pauses
//! between the head, the body and the answer, and, for HTTP/2 clusters, a second worker serving
//! h2c direct responses in the same runtime.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::proxy::router::Router;
use crate::proxy::worker::{DownstreamCx, Shared, Tuning, Worker, WorkerSpec};
use crate::stats::breakers::Breaker;
use crate::stats::{ClusterStat, HttpStat, Stats};
use crate::upstream::membership::MembershipHub;

/// Builds worker 0 of a one-worker process from `yaml` (nothing is bound: the test accepts).
pub(super) fn worker_from_yaml(yaml: &str) -> Rc<Worker> {
    let bootstrap = Arc::new(crate::config::load_str(yaml).unwrap().bootstrap);
    let stats = Stats::new(&bootstrap, 1);
    let hub = MembershipHub::new(&bootstrap, stats.clone(), 1);
    let mut tls = crate::tls::reload::ServerTlsBuilder::new(&bootstrap).unwrap();
    let shared = Arc::new(Shared {
        config: bootstrap.clone(),
        stats: stats.clone(),
        routers: Router::per_listener(&bootstrap),
        access_logs: bootstrap.listeners.iter().map(|_| Vec::new()).collect(),
        draining: Arc::new(AtomicBool::new(false)),
        tuning: Tuning {
            read_buffer_bytes: 16 * 1024,
            body_chunk_bytes: 64 * 1024,
            // Small, so a modest body streams past it (the non-replayable path).
            retry_buffer_bytes: 4 * 1024,
            max_idle_per_endpoint: 8,
            max_connections: None,
        },
        upstream_tls: bootstrap.clusters.iter().map(|_| None).collect(),
    });
    let spec = WorkerSpec {
        index: 0,
        shared,
        listeners: Vec::new(),
        membership: hub.subscribe(),
        histograms: stats
            .histograms
            .worker(bootstrap.clusters.len(), bootstrap.listeners.len()),
        access_log: None,
        tls: tls.subscribe(),
    };
    crate::proxy::worker_loop::build(spec).0
}

pub(super) fn bootstrap_yaml(routes: &str, clusters: &str) -> String {
    format!(
        "static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ['*']
              routes:
{routes}
  clusters:
{clusters}"
    )
}

fn cluster_yaml(name: &str, port: u16, extra: &str) -> String {
    format!(
        "  - name: {name}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
{extra}"
    )
}

/// An HTTP/1.1 upstream that takes its time: it reads the head and any body, pauses, sends
/// the response head, pauses, then the body. `/fail` answers 503 (so retries happen).
fn scripted_upstream() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve_scripted(conn));
        }
    });
    port
}

fn serve_scripted(mut s: StdStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut s, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 16 * 1024];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let fail = head.starts_with("get /fail") || head.starts_with("post /fail");
        buf.drain(..head_end + len);
        std::thread::sleep(Duration::from_millis(3));
        let status = if fail {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let sent = s
            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n").as_bytes())
            .and_then(|()| {
                std::thread::sleep(Duration::from_millis(3));
                s.write_all(b"0123456789")
            });
        if sent.is_err() {
            return;
        }
    }
}

fn read_until_head(s: &mut StdStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A client of one round: an HTTP/1.1 client thread, or an HTTP/2 client task in the runtime.
enum Client {
    Thread(JoinHandle<()>),
    Task(Rc<Cell<bool>>),
}

impl Client {
    fn finished(&self) -> bool {
        match self {
            Client::Thread(t) => t.is_finished(),
            Client::Task(done) => done.get(),
        }
    }
}

/// An HTTP/1.1 client: sends `head`, pauses, sends `body` in two parts, reads what comes until
/// the proxy closes or the answer is complete, then closes.
fn h1_client(addr: SocketAddr, head: String, body: Vec<u8>) -> Client {
    Client::Thread(std::thread::spawn(move || {
        let Ok(mut s) = StdStream::connect(addr) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(head.as_bytes());
        std::thread::sleep(Duration::from_millis(2));
        let (a, b) = body.split_at(body.len() / 2);
        let _ = s.write_all(a);
        std::thread::sleep(Duration::from_millis(2));
        let _ = s.write_all(b);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            // One response with a 10-byte body (ours or a local reply) is all a round asks.
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= i + 4 + len {
                    break;
                }
            }
        }
    }))
}

/// An HTTP/2 (h2c, prior knowledge) client task: one request on `path` with `body` sent in two
/// DATA frames, reading the response to its end. Marks itself done however it ends.
fn h2_client(addr: SocketAddr, path: &'static str, body: Vec<u8>) -> Client {
    let done = Rc::new(Cell::new(false));
    let mark = done.clone();
    monoio::spawn(async move {
        let _ = h2_exchange(addr, path, body).await;
        mark.set(true);
    });
    Client::Task(done)
}

async fn h2_exchange(addr: SocketAddr, path: &str, body: Vec<u8>) -> Option<()> {
    let tcp = monoio::net::TcpStream::connect(addr).await.ok()?;
    let bufs = std::rc::Rc::new(std::cell::RefCell::new(crate::bufpool::BufPool::new(
        16384, 4,
    )));
    let io = crate::http2::io::H2Io::client(crate::transport::Transport::Plain(tcp), bufs);
    let (send, conn) = h2::client::handshake(io).await.ok()?;
    monoio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.ok()?;
    let method = if body.is_empty() { "GET" } else { "POST" };
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://a{path}"))
        .body(())
        .ok()?;
    let (response, mut stream) = send.send_request(req, body.is_empty()).ok()?;
    if !body.is_empty() {
        let mut rest = bytes::Bytes::from(body);
        let first = rest.split_to(rest.len() / 2);
        stream.send_data(first, false).ok()?;
        monoio::time::sleep(Duration::from_millis(2)).await;
        stream.send_data(rest, true).ok()?;
    }
    let mut body = response.await.ok()?.into_body();
    while let Some(data) = body.data().await {
        let n = data.ok()?.len();
        let _ = body.flow_control().release_capacity(n);
    }
    Some(())
}

/// Waits (up to 2 s: the tasks of a dropped HTTP/2 connection's streams end on their next
/// poll) for everything that gates admission or feeds a gauge to be back where an idle worker
/// has it; panics naming what is not.
async fn assert_released(w: &Worker, round: &str) {
    let mut problem = None;
    for _ in 0..400 {
        problem = unreleased(w);
        if problem.is_none() {
            return;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{round}: {}", problem.unwrap_or_default());
}

/// The first count that is not back where an idle worker has it, if any.
fn unreleased(w: &Worker) -> Option<String> {
    let stats = w.stats();
    let hs = &stats.http[0];
    let worker_counts = [
        ("downstream_rq_active", hs.get(HttpStat::DownstreamRqActive)),
        ("downstream_cx_active", hs.get(HttpStat::DownstreamCxActive)),
        ("requests in flight", w.in_flight.get() as u64),
        ("open downstream connections", u64::from(w.cx_open.get())),
    ];
    if let Some((name, v)) = worker_counts.iter().find(|(_, v)| *v != 0) {
        return Some(format!("{name} = {v}"));
    }
    for cs in &stats.clusters {
        let name = &cs.name;
        let active = cs.get(ClusterStat::UpstreamCxActive);
        let idle = cs.get(ClusterStat::UpstreamCxIdle);
        let counts = [
            (
                "upstream_rq_active",
                cs.get(ClusterStat::UpstreamRqActive),
                0,
            ),
            (
                "upstream_rq_pending_active",
                cs.get(ClusterStat::UpstreamRqPendingActive),
                0,
            ),
            ("pending breaker", cs.breakers.held(0, Breaker::Pending), 0),
            (
                "requests breaker",
                cs.breakers.held(0, Breaker::Requests),
                0,
            ),
            ("retries breaker", cs.breakers.held(0, Breaker::Retries), 0),
            ("upstream_cx_active (idle pooled)", active, idle),
            (
                "max_connections units (open connections)",
                cs.breakers.held(0, Breaker::Connections),
                active,
            ),
        ];
        if let Some((what, v, want)) = counts.iter().find(|(_, v, want)| v != want) {
            return Some(format!("{name} {what} = {v}, expected {want}"));
        }
    }
    None
}

/// Polls `fut` once; `true` when it finished.
async fn poll_once<F: std::future::Future>(fut: &mut std::pin::Pin<Box<F>>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

/// Serves one client per round on `w`, dropping the connection after `k` polls for k = 0,
/// 1, ... until a round finishes on its own; checks the counts after every round. Returns
/// how many rounds were dropped mid-way.
async fn drop_at_every_poll(
    w: &Rc<Worker>,
    label: &str,
    start_client: impl Fn(SocketAddr) -> Client,
) -> usize {
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for k in 0..400 {
        let client = start_client(addr);
        let (tcp, peer) = listener.accept().await.unwrap();
        let admitted = DownstreamCx::admit(w, 0).unwrap();
        let mut serving = Box::pin(crate::proxy::connection::serve(w, 0, tcp, peer));
        let mut finished = false;
        for _ in 0..k {
            if poll_once(&mut serving).await {
                finished = true;
                break;
            }
            // Let the peers and the kernel move before the next poll.
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(serving);
        drop(admitted);
        // The runtime keeps turning while the client finishes: a dropped socket closes once
        // the ring has processed the cancellation of its pending operations.
        while !client.finished() {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Client::Thread(t) = client {
            let _ = t.join();
        }
        assert_released(w, &format!("{label} dropped after {k} polls")).await;
        if finished {
            return k;
        }
    }
    panic!("{label}: the exchange never finished within 400 polls");
}

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
}

#[test]
fn dropping_an_http1_exchange_anywhere_gives_everything_back() {
    let up = scripted_upstream();
    let routes = "              - match: {prefix: /fail}
                route: {cluster: plain, retry_policy: {retry_on: 5xx, num_retries: 2}}
              - match: {prefix: /}
                route: {cluster: plain}";
    let clusters = cluster_yaml("plain", up, "");
    let yaml = bootstrap_yaml(routes, &clusters);
    runtime().block_on(async {
        let w = worker_from_yaml(&yaml);
        let small = b"0123456789abcdef".to_vec();
        let large = vec![b'x'; 64 * 1024];
        let cases: [(String, &[u8]); 4] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n".into(), &[]),
            (
                format!(
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                    small.len()
                ),
                &small,
            ),
            (
                format!(
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                    large.len()
                ),
                &large,
            ),
            ("GET /fail HTTP/1.1\r\nHost: a\r\n\r\n".into(), &[]),
        ];
        for (head, body) in cases {
            let label = format!("{head:?}");
            let start = |addr| h1_client(addr, head.clone(), body.to_vec());
            let dropped = drop_at_every_poll(&w, &label, start).await;
            assert!(dropped > 2, "{label}: only {dropped} drop points");
        }
    });
}

/// An h2c upstream in the same runtime: a second worker whose only route answers directly.
fn spawn_h2c_upstream() -> u16 {
    let yaml = bootstrap_yaml(
        "              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: '0123456789'}}",
        &cluster_yaml("unused", 1, ""),
    )
    .replace(
        "stat_prefix: t",
        "stat_prefix: t\n          codec_type: HTTP2",
    );
    let w = worker_from_yaml(&yaml);
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    monoio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let w = w.clone();
            monoio::spawn(async move { crate::proxy::connection::serve(&w, 0, tcp, peer).await });
        }
    });
    port
}

#[test]
fn dropping_an_http1_to_http2_exchange_anywhere_gives_everything_back() {
    runtime().block_on(async {
        let up = spawn_h2c_upstream();
        let routes = "              - match: {prefix: /}
                route: {cluster: h2up}";
        let h2 = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
";
        let yaml = bootstrap_yaml(routes, &cluster_yaml("h2up", up, h2));
        let w = worker_from_yaml(&yaml);
        let large = vec![b'x'; 64 * 1024];
        let cases: [(String, &[u8]); 2] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n".into(), &[]),
            (
                format!(
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                    large.len()
                ),
                &large,
            ),
        ];
        for (head, body) in cases {
            let label = format!("{head:?}");
            let start = |addr| h1_client(addr, head.clone(), body.to_vec());
            let dropped = drop_at_every_poll(&w, &label, start).await;
            assert!(dropped > 2, "{label}: only {dropped} drop points");
        }
    });
}

#[test]
fn dropping_an_http2_connection_anywhere_gives_everything_back() {
    let up = scripted_upstream();
    runtime().block_on(async {
        let h2up = spawn_h2c_upstream();
        let routes = "              - match: {prefix: /h2}
                route: {cluster: h2up}
              - match: {prefix: /fail}
                route: {cluster: plain, retry_policy: {retry_on: 5xx, num_retries: 2}}
              - match: {prefix: /}
                route: {cluster: plain}";
        let h2 = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        '@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
";
        let clusters = cluster_yaml("plain", up, "") + &cluster_yaml("h2up", h2up, h2);
        let yaml = bootstrap_yaml(routes, &clusters);
        let w = worker_from_yaml(&yaml);
        let cases: [(&'static str, usize); 5] = [
            ("/", 0),
            ("/", 16),
            ("/", 64 * 1024),
            ("/fail", 0),
            ("/h2", 64 * 1024),
        ];
        for (path, len) in cases {
            let label = format!("h2 {path} with a {len}-byte body");
            let start = |addr| h2_client(addr, path, vec![b'x'; len]);
            let dropped = drop_at_every_poll(&w, &label, start).await;
            assert!(dropped > 2, "{label}: only {dropped} drop points");
        }
    });
}
