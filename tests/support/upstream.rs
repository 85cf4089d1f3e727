//! Our test upstream: an in-process HTTP/1.1 origin on 127.0.0.1:0, one std thread per connection,
//! whose behaviour is chosen by the request path:
//!
//! | path | response |
//! |---|---|
//! | `/echo` | the request body, streamed back; chunked if the request was chunked |
//! | `/sha256` | hex SHA-256 of the request body |
//! | `/bytes/N` | N bytes of `support::pattern`, with Content-Length |
//! | `/chunked/N` | the same N bytes, chunked in 16 KiB chunks |
//! | `/status/CODE` | status CODE |
//! | `/delay/MS` | sleeps MS milliseconds, then 200 |
//! | `/reject/CODE` | answers CODE with `connection: close` before reading the body, then closes |
//! | `/garbage` | a response that is not HTTP, then close |
//! | `/close` | closes the connection without answering |
//! | anything else | 200 with the upstream's id as the body |
//!
//! Every response carries `x-upstream-id`. The server counts connections and requests and keeps
//! every received request head, so a test can assert what reached the upstream (and that nothing
//! did). Switches: `fail_next(k)` makes the next k requests answer 503; `idle_close_after(t)`
//! closes a keep-alive connection that stays idle for t, to exercise the pool's reuse race.
//! Requests are parsed with httparse and our own chunked decoder, not the proxy's codec.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{chunked, hex, pattern_byte};

/// A request head as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (filled in once the body has been read).
    pub body_len: u64,
    /// Index of the connection (0-based, in accept order) the request arrived on.
    pub connection: u64,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_value(&self.headers, name)
    }

    pub fn header_count(&self, name: &str) -> usize {
        super::header_count(&self.headers, name)
    }
}

/// `fail_next` value meaning "every request from now on".
const ALWAYS: usize = usize::MAX;

struct State {
    id: String,
    connections: AtomicU64,
    requests: AtomicU64,
    log: Mutex<Vec<RecordedRequest>>,
    fail_next: AtomicUsize,
    /// 0 = keep idle connections open (until the 30 s safety timeout).
    idle_close_ms: AtomicU64,
    stop: AtomicBool,
}

pub struct TestUpstream {
    pub port: u16,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

/// How long a connection thread waits for bytes before giving up, so no thread outlives a test
/// by more than this even if the proxy leaks a connection.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);

impl TestUpstream {
    /// Starts an upstream whose id is `u<port>`.
    pub fn start() -> TestUpstream {
        Self::start_inner(None)
    }

    /// Starts an upstream with the given id.
    pub fn start_with_id(id: &str) -> TestUpstream {
        Self::start_inner(Some(id.to_string()))
    }

    /// Starts an upstream on a given port, e.g. to revive one that was dropped. Retries the bind
    /// for up to 5 s in case the old listener is still going away.
    pub fn start_on(port: u16) -> TestUpstream {
        Self::start_bound(None, port)
    }

    fn start_inner(id: Option<String>) -> TestUpstream {
        Self::start_bound(id, 0)
    }

    fn start_bound(id: Option<String>, want: u16) -> TestUpstream {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", want)) {
                Ok(l) => break l,
                Err(e) if want != 0 && std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("test upstream: bind 127.0.0.1:{want}: {e}"),
            }
        };
        let port = listener
            .local_addr()
            .expect("test upstream: local_addr")
            .port();
        let state = Arc::new(State {
            id: id.unwrap_or_else(|| format!("u{port}")),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            idle_close_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        let acceptor = std::thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let index = st.connections.fetch_add(1, Ordering::SeqCst);
                    let st2 = Arc::clone(&st);
                    let _ = std::thread::Builder::new()
                        .name(format!("upstream-{port}-c{index}"))
                        .spawn(move || {
                            // Errors end the connection; what the proxy did is judged by the test.
                            let _ = serve_connection(&st2, stream, index);
                        });
                }
            })
            .expect("spawn test upstream acceptor");
        TestUpstream {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests whose head was received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// A copy of every request head received so far.
    pub fn log(&self) -> Vec<RecordedRequest> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Requests received so far other than health checks (whose path is `hc_path`).
    pub fn requests_except(&self, hc_path: &str) -> usize {
        self.log().iter().filter(|r| r.path != hc_path).count()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.log().pop()
    }

    /// The next `k` requests answer 503.
    pub fn fail_next(&self, k: usize) {
        self.state.fail_next.store(k, Ordering::SeqCst);
    }

    /// Every request from now on answers 503.
    pub fn fail_always(&self) {
        self.state.fail_next.store(ALWAYS, Ordering::SeqCst);
    }

    /// Close keep-alive connections that stay idle for `t` (zero: never).
    pub fn idle_close_after(&self, t: Duration) {
        self.state
            .idle_close_ms
            .store(t.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

struct Head {
    method: String,
    path: String,
    version: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        super::header_value(&self.headers, name)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads one request head; `Ok(None)` on a clean close (or idle timeout) between requests.
fn read_head(st: &State, r: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let idle = st.idle_close_ms.load(Ordering::SeqCst);
    let wait = if idle > 0 {
        Duration::from_millis(idle)
    } else {
        SAFETY_TIMEOUT
    };
    r.get_ref().set_read_timeout(Some(wait))?;
    match r.fill_buf() {
        Ok([]) => return Ok(None),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    r.get_ref().set_read_timeout(Some(SAFETY_TIMEOUT))?;
    let mut buf = Vec::new();
    loop {
        let n = r.by_ref().take(64 * 1024).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof inside request head",
            ));
        }
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
        if buf.len() > 256 * 1024 {
            return Err(invalid("request head over 256 KiB".into()));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hdrs);
    match req.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => {}
        other => {
            return Err(invalid(format!(
                "bad request head {other:?}: {:?}",
                String::from_utf8_lossy(&buf)
            )))
        }
    }
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        version: req.version.unwrap_or(1),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    }))
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn framing(h: &Head) -> io::Result<Framing> {
    if let Some(te) = h.header("transfer-encoding") {
        if te.trim().eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        return Err(invalid(format!("unsupported transfer-encoding {te:?}")));
    }
    match h.header("content-length") {
        Some(cl) => cl
            .trim()
            .parse::<u64>()
            .map(Framing::Length)
            .map_err(|_| invalid(format!("bad content-length {cl:?}"))),
        None => Ok(Framing::None),
    }
}

/// Reads the request body, handing each piece to `f`; returns its length.
fn read_body(
    r: &mut BufReader<TcpStream>,
    fr: &Framing,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    match *fr {
        Framing::None => Ok(0),
        Framing::Chunked => chunked::read_chunked(r, f),
        Framing::Length(n) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                r.read_exact(&mut buf[..want])?;
                f(&buf[..want])?;
                left -= want as u64;
            }
            Ok(n)
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn record_body_len(st: &State, log_index: usize, body_len: u64) {
    if let Ok(mut log) = st.log.lock() {
        if let Some(rec) = log.get_mut(log_index) {
            rec.body_len = body_len;
        }
    }
}

fn serve_connection(st: &State, stream: TcpStream, conn_index: u64) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    loop {
        if st.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(head) = read_head(st, &mut r)? else {
            let _ = w.shutdown(Shutdown::Both);
            return Ok(());
        };
        st.requests.fetch_add(1, Ordering::SeqCst);
        let log_index = {
            let mut log = st.log.lock().map_err(|_| invalid("log poisoned".into()))?;
            log.push(RecordedRequest {
                method: head.method.clone(),
                path: head.path.clone(),
                version: head.version,
                headers: head.headers.clone(),
                body_len: 0,
                connection: conn_index,
            });
            log.len() - 1
        };
        let keep_alive = if head.version == 0 {
            head.has_token("connection", "keep-alive")
        } else {
            !head.has_token("connection", "close")
        };
        let fr = framing(&head)?;
        if head.has_token("expect", "100-continue") {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let is_head = head.method.eq_ignore_ascii_case("HEAD");
        let conn_hdr = if keep_alive { "keep-alive" } else { "close" };
        let ver = if head.version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };

        // Decide whether this one fails before touching the body, then read the body anyway so the
        // connection stays in sync for the next request.
        let fail = st
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| match k {
                0 => None,
                ALWAYS => Some(ALWAYS),
                k => Some(k - 1),
            })
            .is_ok();

        let path = head.path.split('?').next().unwrap_or("").to_string();
        if let Some(code) = path.strip_prefix("/reject/") {
            // An early answer: the body is never read, and closing with it unread resets the
            // connection, as an origin refusing an upload does.
            let code: u16 = code.parse().unwrap_or(413);
            let text = format!("{code}\n");
            let resp = format!(
                "{ver} {code} {}\r\nx-upstream-id: {}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
                reason(code),
                st.id,
                text.len()
            );
            w.write_all(resp.as_bytes())?;
            let _ = w.shutdown(Shutdown::Both);
            return Ok(());
        }
        let body_len: u64;
        if !fail && path == "/echo" {
            body_len = echo(&mut r, &mut w, &fr, &st.id, ver, conn_hdr, is_head)?;
        } else {
            let mut hasher = Sha256::new();
            body_len = read_body(&mut r, &fr, |d| {
                hasher.update(d);
                Ok(())
            })?;
            let digest = hex(&hasher.finalize());
            // Record the body before answering: a client that has its response may look at once.
            if let Ok(mut log) = st.log.lock() {
                if let Some(rec) = log.get_mut(log_index) {
                    rec.body_len = body_len;
                }
            }
            let (code, body_kind) = if fail {
                (503, Body::Text("fail\n".into()))
            } else {
                route(&path, digest, &st.id)
            };
            if let Body::Close = body_kind {
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            if let Body::Garbage = body_kind {
                w.write_all(b"THIS IS NOT HTTP\r\n\r\n")?;
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            // Record the body before answering, so a test that has its response sees it.
            record_body_len(st, log_index, body_len);
            write_response(&mut w, ver, code, &st.id, conn_hdr, is_head, body_kind)?;
        }
        record_body_len(st, log_index, body_len);
        if !keep_alive {
            let _ = w.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

enum Body {
    Text(String),
    Pattern(u64),
    PatternChunked(u64),
    Close,
    Garbage,
}

fn route(path: &str, digest: String, id: &str) -> (u16, Body) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let arg = parts.next().unwrap_or("");
    match first {
        "sha256" => (200, Body::Text(digest)),
        "bytes" => (200, Body::Pattern(arg.parse().unwrap_or(0))),
        "chunked" => (200, Body::PatternChunked(arg.parse().unwrap_or(0))),
        "status" => {
            let code: u16 = arg.parse().unwrap_or(500);
            (code, Body::Text(format!("{code}\n")))
        }
        "delay" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(0)));
            (200, Body::Text(format!("{id}\n")))
        }
        "close" => (0, Body::Close),
        "garbage" => (0, Body::Garbage),
        _ => (200, Body::Text(format!("{id}\n"))),
    }
}

fn write_response(
    w: &mut TcpStream,
    ver: &str,
    code: u16,
    id: &str,
    conn_hdr: &str,
    is_head: bool,
    body: Body,
) -> io::Result<()> {
    let bodyless = code == 204 || code == 304 || (100..200).contains(&code);
    let mut head = format!(
        "{ver} {code} {}\r\nx-upstream-id: {id}\r\nconnection: {conn_hdr}\r\n",
        reason(code)
    );
    match &body {
        Body::Text(t) if !bodyless => head.push_str(&format!(
            "content-type: text/plain\r\ncontent-length: {}\r\n",
            t.len()
        )),
        Body::Pattern(n) => head.push_str(&format!(
            "content-type: application/octet-stream\r\ncontent-length: {n}\r\n"
        )),
        Body::PatternChunked(_) => head
            .push_str("content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n"),
        _ => {}
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if is_head || bodyless {
        return Ok(());
    }
    match body {
        Body::Text(t) => w.write_all(t.as_bytes()),
        Body::Pattern(n) => write_pattern(w, n, false),
        Body::PatternChunked(n) => {
            write_pattern(w, n, true)?;
            chunked::write_last_chunk(w)
        }
        Body::Close | Body::Garbage => Ok(()),
    }
}

/// Writes `n` pattern bytes in 16 KiB pieces, each a chunk when `as_chunks`.
fn write_pattern(w: &mut TcpStream, n: u64, as_chunks: bool) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut off = 0u64;
    while off < n {
        let len = (n - off).min(buf.len() as u64) as usize;
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = pattern_byte(off as usize + i);
        }
        if as_chunks {
            chunked::write_chunk(w, &buf[..len])?;
        } else {
            w.write_all(&buf[..len])?;
        }
        off += len as u64;
    }
    Ok(())
}

/// `/echo`: streams the body back as it arrives, with the request's own framing.
fn echo(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    fr: &Framing,
    id: &str,
    ver: &str,
    conn_hdr: &str,
    is_head: bool,
) -> io::Result<u64> {
    let framing_hdr = match fr {
        Framing::Chunked => "transfer-encoding: chunked".to_string(),
        Framing::Length(n) => format!("content-length: {n}"),
        Framing::None => "content-length: 0".to_string(),
    };
    let head = format!(
        "{ver} 200 OK\r\nx-upstream-id: {id}\r\nconnection: {conn_hdr}\r\n{framing_hdr}\r\n\r\n"
    );
    w.write_all(head.as_bytes())?;
    let chunked_out = matches!(fr, Framing::Chunked);
    let mut out = w.try_clone()?;
    let n = read_body(r, fr, |d| {
        if is_head {
            Ok(())
        } else if chunked_out {
            chunked::write_chunk(&mut out, d)
        } else {
            out.write_all(d)
        }
    })?;
    if chunked_out && !is_head {
        chunked::write_last_chunk(w)?;
    }
    Ok(n)
}
