//! Shared scaffolding for the integration tests: the `Ringway` process handle, our in-process test
//! upstream, a real nginx upstream, a raw-byte HTTP client, a config builder and strict parsers for
//! what the admin and access log print.
//!
//! Every test binary compiles this module with `mod support;` and uses only part of it, hence the
//! `dead_code` allowance. Nothing here uses fixed ports: tests run in parallel, so every listener is
//! either bound to port 0 or given a port from `free_port()`.

#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod chunked;
pub mod config;
pub mod fleet;
pub mod formats;
pub mod nginx;
pub mod nginx_h2;
pub mod py;
pub mod raw;
pub mod ringway;
pub mod upstream;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use config::{ConfigBuilder, Route};
pub use nginx::Nginx;
pub use nginx_h2::NginxH2;
pub use py::PyProcess;
pub use raw::{http_get, RawConn, RawResponse};
pub use ringway::Ringway;
pub use upstream::{RecordedRequest, TestUpstream};

/// A port that was free a moment ago. Binding 127.0.0.1:0 and dropping the listener lets the kernel
/// choose; the small race with another process grabbing it is accepted (ephemeral ports are picked
/// from a large range, so two tests receiving the same one is very unlikely).
///
/// The kernel may hand the same ephemeral port to two consecutive probes (the first is released
/// at once), so ports already given out by this test binary are never given out again.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
        let port = l
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Runs curl with `-sS --max-time 30` plus `args`. Panics with a clear message when curl is
/// missing: the tests need it, and `tests/run` installs it.
pub fn curl(args: &[&str]) -> Output {
    curl_with_stdin(args, None)
}

/// Like `curl`, feeding `stdin` to curl's standard input from a separate thread (for `-T -`).
pub fn curl_with_stdin(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30"]).args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            panic!("cannot run curl ({e}); install it (tests/run does: apt-get install -y curl)")
        }
    };
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("curl stdin was piped");
        std::thread::spawn(move || {
            // curl may stop reading early on an error; its own stderr then says why.
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().expect("wait for curl");
    if let Some(f) = feeder {
        let _ = f.join();
    }
    out
}

/// Runs curl and asserts it succeeded; returns stdout as text.
pub fn curl_ok(args: &[&str]) -> String {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deterministic test data: byte i is `i % 251` (a prime, so the pattern does not line up with
/// power-of-two buffer or chunk sizes and a misplaced chunk changes the digest).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(pattern_byte).collect()
}

#[inline]
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A directory under the system temp dir, removed on drop unless the test is failing (then it is
/// kept and its path printed, so configs and logs can be inspected).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ringway-test-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create test temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept test files in {})", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// First value of header `name` (case-insensitive) in a parsed header list.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How many times header `name` (case-insensitive) occurs in a parsed header list.
pub fn header_count(headers: &[(String, String)], name: &str) -> usize {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}
