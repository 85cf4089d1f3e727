//! A raw-byte HTTP/1 client: sends exactly the bytes a test gives it (malformed requests,
//! pipelined requests, requests split at any byte), reads whole responses with a deadline, and
//! reports whether the server closed the connection. Responses are parsed with httparse and our own
//! chunked decoder, never with the proxy's codec.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::chunked;

/// One parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_value(&self.headers, name)
    }

    pub fn header_count(&self, name: &str) -> usize {
        super::header_count(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection. Reads go through a buffer, so responses to pipelined requests are read one
/// after another without losing bytes.
pub struct RawConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Upper bound for each response read.
    pub timeout: Duration,
}

impl RawConn {
    /// A second handle on the socket, for writing from another thread while this one reads.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.writer.try_clone().expect("clone test socket")
    }

    pub fn connect(port: u16) -> io::Result<RawConn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        let writer = s.try_clone()?;
        Ok(RawConn {
            reader: BufReader::with_capacity(64 * 1024, s),
            writer,
            timeout: Duration::from_secs(10),
        })
    }

    /// Connects or panics with the port in the message.
    pub fn open(port: u16) -> RawConn {
        match RawConn::connect(port) {
            Ok(c) => c,
            Err(e) => panic!("connect to 127.0.0.1:{port}: {e}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Sends `bytes` in two writes split at `at`, pausing between them so that the server sees two
    /// separate reads. A failure of the second write is ignored: the server may rightly have
    /// answered and closed after the first part; the response read afterwards is what counts.
    pub fn send_split(&mut self, bytes: &[u8], at: usize, pause: Duration) -> io::Result<()> {
        let at = at.min(bytes.len());
        self.send(&bytes[..at])?;
        std::thread::sleep(pause);
        let _ = self.send(&bytes[at..]);
        Ok(())
    }

    /// Half-closes our side (no more requests).
    pub fn shutdown_write(&self) {
        let _ = self.writer.shutdown(Shutdown::Write);
    }

    fn arm(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response deadline passed",
            ));
        }
        self.reader.get_ref().set_read_timeout(Some(left))
    }

    /// Reads the next response, including interim (1xx) ones. `head_request` says the request was
    /// HEAD, whose response has no body whatever its headers say.
    pub fn read_response_any(&mut self, head_request: bool) -> io::Result<RawResponse> {
        let deadline = Instant::now() + self.timeout;
        let mut head = Vec::new();
        loop {
            self.arm(deadline)?;
            let n = (&mut self.reader)
                .take(16 * 1024)
                .read_until(b'\n', &mut head)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} bytes of response head: {:?}",
                        head.len(),
                        String::from_utf8_lossy(&head)
                    ),
                ));
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            if head.len() > 256 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head over 256 KiB",
                ));
            }
        }
        let mut hdrs = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut hdrs);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "partial response head",
                ))
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "bad response head ({e}): {:?}",
                        String::from_utf8_lossy(&head)
                    ),
                ))
            }
        }
        let status = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut out = RawResponse {
            status,
            version,
            headers,
            body: Vec::new(),
        };
        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok(out);
        }
        let chunked = out
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        self.arm(deadline)?;
        if chunked {
            let mut body = Vec::new();
            chunked::read_chunked(&mut self.reader, |d| {
                body.extend_from_slice(d);
                Ok(())
            })?;
            out.body = body;
        } else if let Some(cl) = out.header("content-length") {
            let n: usize = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            let mut body = vec![0u8; n];
            self.reader.read_exact(&mut body)?;
            out.body = body;
        } else {
            // Delimited by close.
            let mut body = Vec::new();
            match self.reader.read_to_end(&mut body) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => return Err(e),
            }
            out.body = body;
        }
        Ok(out)
    }

    /// Reads the next final response, skipping interim 1xx responses.
    pub fn read_response(&mut self) -> io::Result<RawResponse> {
        loop {
            let r = self.read_response_any(false)?;
            if !(100..200).contains(&r.status) {
                return Ok(r);
            }
        }
    }

    /// Reads the response to a HEAD request.
    pub fn read_head_response(&mut self) -> io::Result<RawResponse> {
        self.read_response_any(true)
    }

    /// Whether the server closes the connection within `within`: true on EOF or reset, false when
    /// the wait times out with the connection open. Unexpected extra bytes also give false (and are
    /// left in the buffer for a later read to report).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(within));
        match self.reader.fill_buf() {
            Ok(b) => b.is_empty(),
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// One GET with `connection: close` on a fresh connection; panics on I/O failure with context.
pub fn http_get(port: u16, path: &str) -> RawResponse {
    let mut c = RawConn::open(port);
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    c.send(req.as_bytes())
        .unwrap_or_else(|e| panic!("send GET {path} to port {port}: {e}"));
    c.read_response()
        .unwrap_or_else(|e| panic!("read response to GET {path} from port {port}: {e}"))
}

/// One request with `method` on a fresh connection (`connection: close`).
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> io::Result<RawResponse> {
    let mut c = RawConn::connect(port)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.send(&req)?;
    c.read_response()
}
