//! The upstream fleet (`ringway-loadgen upstream`): fixed HTTP/1.1 keep-alive 200 responses on
//! many ports from one process, each port individually stoppable and startable, plus a tiny
//! HTTP control endpoint (`POST /stop/<port>`, `POST /start/<port>`, `GET /status`).
//!
//! Plain threads (one per listener, one per connection) rather than an async runtime: the fleet
//! is a test fixture whose job is to be obviously correct and to die convincingly. Stopping a
//! port closes its listener and shuts down every open connection on it at once, like a process
//! that crashed: in-flight requests see the connection drop, new connects are refused. The
//! per-port connection registry is the only shared state and is touched on accept, close and
//! stop, never per request. A restarted port binds the same port number again (std sets
//! `SO_REUSEADDR`, so connections left in TIME_WAIT do not block it).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::churn::FleetControl;

/// Largest request head the fleet reads; anything bigger closes the connection.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The fixed response for `body_bytes` of body.
pub fn response(body_bytes: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .into_bytes();
    r.resize(r.len() + body_bytes, b'x');
    r
}

/// One port's live listener.
struct Live {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    acceptor: JoinHandle<()>,
}

struct Port {
    live: Option<Live>,
    requests: Arc<AtomicU64>,
}

struct Inner {
    ip: std::net::IpAddr,
    response: Arc<Vec<u8>>,
    delay: Duration,
    ports: Mutex<BTreeMap<u16, Port>>,
    next_conn: AtomicU64,
}

/// A running fleet. Cloning shares it.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

/// Lock a mutex even if a connection thread panicked while holding it: the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fleet {
    /// Serve on 127.0.0.1 at `ports` (0 picks a free port; see `ports()` for the result).
    pub fn start(ports: &[u16], body_bytes: usize, delay: Duration) -> Result<Fleet, String> {
        let fleet = Fleet {
            inner: Arc::new(Inner {
                ip: [127, 0, 0, 1].into(),
                response: Arc::new(response(body_bytes)),
                delay,
                ports: Mutex::new(BTreeMap::new()),
                next_conn: AtomicU64::new(0),
            }),
        };
        for &p in ports {
            fleet.start_port(p)?;
        }
        Ok(fleet)
    }

    /// Every port of the fleet (up or down), in order.
    pub fn ports(&self) -> Vec<u16> {
        lock(&self.inner.ports).keys().copied().collect()
    }

    #[cfg(test)]
    pub fn is_up(&self, port: u16) -> bool {
        lock(&self.inner.ports)
            .get(&port)
            .is_some_and(|p| p.live.is_some())
    }

    /// Requests answered on `port` so far.
    #[cfg(test)]
    pub fn requests(&self, port: u16) -> u64 {
        lock(&self.inner.ports)
            .get(&port)
            .map_or(0, |p| p.requests.load(Ordering::Relaxed))
    }

    /// Bind and serve `port` (0 = any free port); returns the bound port. Starting a port that
    /// is up is an error.
    pub fn start_port(&self, port: u16) -> Result<u16, String> {
        let mut ports = lock(&self.inner.ports);
        if port != 0 && ports.get(&port).is_some_and(|p| p.live.is_some()) {
            return Err(format!("port {port} is already up"));
        }
        let listener = TcpListener::bind((self.inner.ip, port))
            .map_err(|e| format!("cannot listen on {}:{port}: {e}", self.inner.ip))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        let entry = ports.entry(bound).or_insert_with(|| Port {
            live: None,
            requests: Arc::new(AtomicU64::new(0)),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let ctx = ConnCtx {
            response: Arc::clone(&self.inner.response),
            delay: self.inner.delay,
            requests: Arc::clone(&entry.requests),
        };
        let inner = Arc::clone(&self.inner);
        let (stop2, conns2) = (Arc::clone(&stop), Arc::clone(&conns));
        let acceptor = std::thread::Builder::new()
            .name(format!("fleet-{bound}"))
            .spawn(move || accept_loop(listener, stop2, conns2, ctx, inner))
            .map_err(|e| format!("cannot spawn acceptor: {e}"))?;
        entry.live = Some(Live {
            stop,
            conns,
            acceptor,
        });
        Ok(bound)
    }

    /// Close `port`'s listener and every connection on it, abruptly.
    pub fn stop_port(&self, port: u16) -> Result<(), String> {
        let live = {
            let mut ports = lock(&self.inner.ports);
            let p = ports
                .get_mut(&port)
                .ok_or_else(|| format!("port {port} is not part of the fleet"))?;
            p.live
                .take()
                .ok_or_else(|| format!("port {port} is already down"))?
        };
        live.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(self.inner.ip, port),
            Duration::from_secs(1),
        );
        let _ = live.acceptor.join();
        for (_, s) in lock(&live.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        Ok(())
    }

    /// `{"ports":[{"port":9101,"up":true,"requests":12}, ...]}`
    pub fn status_json(&self) -> serde_json::Value {
        let ports: Vec<serde_json::Value> = lock(&self.inner.ports)
            .iter()
            .map(|(port, p)| {
                serde_json::json!({
                    "port": port,
                    "up": p.live.is_some(),
                    "requests": p.requests.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::json!({ "ports": ports })
    }

    /// Stop every port (used when a demo ends).
    pub fn shutdown(&self) {
        for p in self.ports() {
            let _ = self.stop_port(p);
        }
    }
}

impl FleetControl for Fleet {
    fn stop(&self, port: u16) -> Result<String, String> {
        self.stop_port(port).map(|()| "in-process stop".into())
    }
    fn start(&self, port: u16) -> Result<String, String> {
        self.start_port(port).map(|_| "in-process start".into())
    }
}

#[derive(Clone)]
struct ConnCtx {
    response: Arc<Vec<u8>>,
    delay: Duration,
    requests: Arc<AtomicU64>,
}

fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    ctx: ConnCtx,
    inner: Arc<Inner>,
) {
    for s in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(s) = s else { continue };
        let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let Ok(handle) = s.try_clone() else { continue };
        lock(&conns).insert(id, handle);
        let (ctx, registry) = (ctx.clone(), Arc::clone(&conns));
        let spawned = std::thread::Builder::new()
            .name("fleet-conn".into())
            .spawn(move || {
                serve_conn(s, &ctx);
                lock(&registry).remove(&id);
            });
        if spawned.is_err() {
            // Out of threads: the clone in the registry is dropped and the peer sees a close.
            lock(&conns).remove(&id);
        }
    }
}

/// Answer every request on `s` with the fixed response until the peer closes or asks to.
fn serve_conn(mut s: TcpStream, ctx: &ConnCtx) {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // Parse every complete request already buffered before reading more.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let (head_len, body_len, close) = match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut body = 0usize;
                    let mut close = req.version == Some(0);
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            match std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                            {
                                Some(v) => body = v,
                                None => return,
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            // The fleet serves benchmarks of bodiless requests; refuse rather
                            // than misframe.
                            let _ = s.write_all(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            return;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    (n, body, close)
                }
                Ok(httparse::Status::Partial) if buf.len() <= MAX_REQUEST_HEAD => break,
                _ => return,
            };
            if buf.len() < head_len + body_len {
                break;
            }
            buf.drain(..head_len + body_len);
            if !ctx.delay.is_zero() {
                std::thread::sleep(ctx.delay);
            }
            // Counted before the write so a client that saw the response sees the count too.
            ctx.requests.fetch_add(1, Ordering::Relaxed);
            if s.write_all(&ctx.response).is_err() {
                return;
            }
            if close {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serve the control endpoint on `listener` until the process exits.
pub fn serve_control(fleet: Fleet, listener: TcpListener) {
    for s in listener.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        let (method, path) = loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break (String::new(), String::new()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    break (
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("").to_string(),
                    )
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => {}
                _ => break (String::new(), String::new()),
            }
        };
        let (code, body) = control(&fleet, &method, &path);
        let reason = match code {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Conflict",
        };
        let resp = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes());
    }
}

/// Route one control request: (status, body).
pub fn control(fleet: &Fleet, method: &str, path: &str) -> (u16, String) {
    let err =
        |code: u16, msg: String| (code, serde_json::json!({ "error": msg }).to_string() + "\n");
    if path == "/status" || path == "/" {
        return (200, fleet.status_json().to_string() + "\n");
    }
    let (verb, port) = match path.trim_start_matches('/').split_once('/') {
        Some((v @ ("stop" | "start"), p)) => match p.parse::<u16>() {
            Ok(p) if p != 0 => (v, p),
            _ => return err(404, format!("bad port {p:?}")),
        },
        _ => {
            return err(
                404,
                "use POST /stop/<port>, POST /start/<port> or GET /status".into(),
            )
        }
    };
    if method != "POST" {
        return err(405, format!("{verb} needs POST"));
    }
    if !fleet.ports().contains(&port) {
        return err(404, format!("port {port} is not part of the fleet"));
    }
    let r = if verb == "stop" {
        fleet.stop_port(port)
    } else {
        fleet.start_port(port).map(|_| ())
    };
    match r {
        Ok(()) => (200, serde_json::json!({ verb: port }).to_string() + "\n"),
        Err(e) => err(409, e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(port: u16, s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())?;
        let want = response(8).len();
        let mut got = vec![0u8; want];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn serves_keep_alive_and_stops_and_starts_abruptly() {
        let fleet = Fleet::start(&[0, 0], 8, Duration::ZERO).unwrap();
        let ports = fleet.ports();
        assert_eq!(ports.len(), 2);
        let p = ports[0];
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..3 {
            assert_eq!(get(p, &mut s).unwrap(), response(8));
        }
        assert_eq!(fleet.requests(p), 3);
        // Stop: the open connection is closed under us and new connects are refused.
        let (code, _) = control(&fleet, "POST", &format!("/stop/{p}"));
        assert_eq!(code, 200);
        assert!(!fleet.is_up(p));
        let mut one = [0u8; 1];
        assert!(matches!(s.read(&mut one), Ok(0) | Err(_)));
        assert!(TcpStream::connect(("127.0.0.1", p)).is_err());
        assert_eq!(control(&fleet, "POST", &format!("/stop/{p}")).0, 409);
        // The other port is unaffected.
        let mut s2 = TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
        assert_eq!(get(ports[1], &mut s2).unwrap(), response(8));
        // Start again on the same port number.
        assert_eq!(control(&fleet, "POST", &format!("/start/{p}")).0, 200);
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        assert_eq!(get(p, &mut s).unwrap(), response(8));
        let status: serde_json::Value =
            serde_json::from_str(&control(&fleet, "GET", "/status").1).unwrap();
        assert_eq!(status["ports"][0]["up"], true);
        assert_eq!(status["ports"][0]["requests"], 4);
        assert_eq!(control(&fleet, "GET", &format!("/stop/{p}")).0, 405);
        assert_eq!(control(&fleet, "POST", "/stop/1").0, 404);
        assert_eq!(control(&fleet, "POST", "/reboot/1").0, 404);
        fleet.shutdown();
        assert!(!fleet.is_up(ports[1]));
    }

    #[test]
    fn pipelined_requests_with_bodies_are_framed() {
        let fleet = Fleet::start(&[0], 0, Duration::ZERO).unwrap();
        let p = fleet.ports()[0];
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let mut two = response(0);
        two.extend_from_slice(&response(0));
        assert_eq!(all, two);
        fleet.shutdown();
    }
}
