//! Blocking one-shot HTTP/1.1 client for control planes: the proxy's admin API (membership
//! changes), the upstream fleet's stop/start endpoint and readiness probes.
//!
//! Control calls are rare (a few per churn period) and happen off the load path, so a plain
//! `std::net::TcpStream` with `Connection: close` and read-to-EOF is the simplest correct
//! client: no pooling, no async runtime, and a hard timeout on every step so a hung control
//! plane shows up as a failed churn action rather than a stuck run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::url::parse_url;

/// Timeout for connect, write and read of one control call.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);
/// Response bytes kept (status line, headers, and the start of the body for error messages).
const MAX_RESPONSE: usize = 64 * 1024;

/// A control plane base URL, resolved once: `http://host:port` (a path prefix is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub authority: String,
    /// Path prefix without a trailing slash ("" for the root).
    pub prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let t = parse_url(url)?;
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", t.host))?;
        Ok(Endpoint {
            addr,
            authority: t.authority,
            prefix: t.path.trim_end_matches('/').to_string(),
        })
    }

    pub fn from_addr(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            authority: addr.to_string(),
            prefix: String::new(),
        }
    }

    /// `method prefix+path` with an optional JSON body. Returns (status, body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<(u16, String), String> {
        request(
            self.addr,
            &self.authority,
            method,
            &format!("{}{path}", self.prefix),
            json,
        )
    }
}

/// One request on a fresh connection. Errors are human-readable and name the peer.
pub fn request(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    let ctx = |e: std::io::Error| format!("{method} http://{authority}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT).map_err(ctx)?;
    s.set_read_timeout(Some(CONTROL_TIMEOUT)).map_err(ctx)?;
    s.set_write_timeout(Some(CONTROL_TIMEOUT)).map_err(ctx)?;
    let body = json.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if json.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).map_err(ctx)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE || complete(&buf) {
                    break;
                }
            }
            Err(e) => return Err(ctx(e)),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "{method} http://{authority}{path}: no HTTP response (got {:?})",
                short(&text)
            )
        })?;
    Ok((status, body.to_string()))
}

/// Whether `buf` holds a full response framed by Content-Length (so a server that keeps the
/// connection open despite `Connection: close` does not cost a timeout).
fn complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(buf) else {
        return false;
    };
    resp.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() >= n + len)
}

/// First line of a response or message, capped, for error messages.
pub fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn posts_json_and_reads_status_and_body() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut b).unwrap();
                got.extend_from_slice(&b[..n]);
            }
            // Keep the connection open: the client must stop at Content-Length.
            s.write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 4\r\n\r\nnope")
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            String::from_utf8(got).unwrap()
        });
        let ep = Endpoint::parse(&format!("http://{addr}/base/")).unwrap();
        let (code, body) = ep.call("POST", "/x", Some("{\"a\":1}")).unwrap();
        assert_eq!((code, body.as_str()), (409, "nope"));
        let req = t.join().unwrap();
        assert!(req.starts_with("POST /base/x HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Length: 7\r\n"), "{req}");
    }

    #[test]
    fn refused_is_an_error_naming_the_target() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Endpoint::from_addr(addr)
            .call("GET", "/", None)
            .unwrap_err();
        assert!(e.contains(&addr.to_string()), "{e}");
    }
}
