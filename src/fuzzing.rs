//! Fuzz entry points for the parsers outside the HTTP/1 codec (whose own live in
//! `http1::fuzzing`): the configuration walk, EDS files, access-log formats, the HTTP/2 frame
//! guard and the admin request reader. The targets in `fuzz/` only call these, so the invariants
//! are compiled, linted and smoke-tested with the library. Each function must never panic on any
//! input unless one of the invariants it asserts is broken.

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{Format, LogContext};
use crate::admin::http::{read_request, ReadError};
use crate::http1::HeaderLookup;
use crate::http2::guard::FrameGuard;
use crate::proxy::flags::ResponseFlags;

/// The validation `--mode validate` runs: a rejected file reports at least one error and every
/// error names where it is (a field path or `(document)`), and the walk is deterministic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::load_str(text) {
        Ok(loaded) => assert!(crate::config::load_str(text).is_ok_and(|again| {
            again.raw == loaded.raw
                && again.bootstrap.listeners.len() == loaded.bootstrap.listeners.len()
        })),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a rejected config must say why");
            for e in &errors.0 {
                assert!(!e.path.is_empty(), "error without a path: {}", e.message);
            }
            let again = crate::config::load_str(text).err().map(|e| e.0);
            assert_eq!(again, Some(errors.0), "validation is not deterministic");
        }
    }
}

/// EDS `DiscoveryResponse` files, for a cluster name picked by the first byte: accepted members
/// are unique and errors name a field.
pub fn eds(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let service = ["svc", "a", ""][usize::from(selector % 3)];
    match crate::control::eds::parse(text, service) {
        Ok(update) => {
            for (i, (_, addr)) in update.endpoints.iter().enumerate() {
                assert!(
                    !update.endpoints[..i].iter().any(|(_, a)| a == addr),
                    "duplicate member {addr}"
                );
            }
        }
        Err(e) => assert!(e.contains(": "), "error without a field path: {e}"),
    }
}

/// Headers for formatting: every name has a value, long enough for `:N` truncation to bite and
/// with multi-byte characters so a cut can land inside one.
struct AnyHeaders;

impl HeaderLookup for AnyHeaders {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name.len() % 3 {
            0 => None,
            1 => Some("välue-ü-€-\u{1F600}-0123456789".as_bytes()),
            _ => Some(b""),
        }
    }
}

/// Access-log format strings: parsing never panics, and a parsed format renders a request.
pub fn access_log_format(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(format) = Format::parse(text) else {
        return;
    };
    let addr = |s: &str| s.parse::<SocketAddr>().ok();
    let (Some(remote), Some(local)) = (addr("192.0.2.1:51234"), addr("[::1]:10000")) else {
        return;
    };
    let ctx = LogContext {
        start_time: SystemTime::UNIX_EPOCH + Duration::new(1_795_428_420, 123_456_789),
        request: &AnyHeaders,
        response: &AnyHeaders,
        protocol: "HTTP/1.1",
        response_code: 200,
        response_flags: ResponseFlags(u32::MAX),
        bytes_received: u64::MAX,
        bytes_sent: 0,
        duration: Duration::from_secs(u64::MAX / 2),
        request_duration: Some(Duration::from_secs(u64::MAX / 4)),
        response_duration: Some(Duration::MAX),
        upstream_service_time: None,
        upstream_host: Some(remote),
        upstream_cluster: "c",
        downstream_remote: remote,
        downstream_local: local,
        route_name: "",
    };
    let mut first = Vec::new();
    format.write(&ctx, &mut first);
    let mut second = Vec::new();
    format.write(&ctx, &mut second);
    assert_eq!(first, second, "rendering is not deterministic");
}

fn guard_run(data: &[u8], preface: bool, step: usize, now: Instant) -> (Option<u32>, usize) {
    let mut g = FrameGuard::new(preface);
    let mut fed = 0;
    for chunk in data.chunks(step) {
        fed += chunk.len();
        if g.observe(chunk, now).is_some() {
            break;
        }
    }
    (g.tripped().map(|a| a as u32), fed)
}

/// The HTTP/2 frame guard: its verdict does not depend on how the byte stream is split into
/// reads, and once tripped it stays tripped.
pub fn frame_guard(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let preface = selector & 1 == 1;
    let now = Instant::now();
    let whole = guard_run(data, preface, data.len().max(1), now);
    let split = guard_run(data, preface, usize::from(selector >> 1) % 13 + 1, now);
    assert_eq!(whole.0, split.0, "verdict depends on the split");
    if let Some(abuse) = whole.0 {
        let mut g = FrameGuard::new(preface);
        g.observe(data, now);
        assert_eq!(
            g.observe(b"\0\0\0\x04\0\0\0\0\0", now).map(|a| a as u32),
            Some(abuse)
        );
    }
}

/// A reader that hands out at most `step` bytes per read, like a slow client.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn outcome(r: Result<crate::admin::http::Request, ReadError>) -> String {
    format!("{r:?}")
}

/// The admin request reader: the request read does not depend on how the bytes arrive, and an
/// accepted body has exactly its `Content-Length`.
pub fn admin_request(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let whole = read_request(&mut Cursor::new(data));
    if let Ok(req) = &whole {
        let declared = req
            .headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
        assert_eq!(req.body.len(), declared.unwrap_or(0), "body length");
        assert!(!req.method.is_empty(), "a request without a method");
    }
    let mut slow = Trickle {
        data,
        step: usize::from(selector) % 17 + 1,
    };
    assert_eq!(
        outcome(whole),
        outcome(read_request(&mut slow)),
        "the request depends on how it arrives"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift so the smoke run is reproducible.
    fn noise(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    const ROUNDS: usize = 30;

    #[test]
    fn smoke_on_seeds_and_mutations() {
        let seeds: [&[u8]; 6] = [
            b"static_resources: {listeners: [{name: l, address: {socket_address: {address: 127.0.0.1, port_value: 0}}}]}\nadmin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n",
            b"\x00version_info: '1'\nresources:\n- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: svc\n  endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]}]\n",
            b"[%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ %s)%] %REQ(X-A?:PATH):3% %RESP(Y):1% %RESPONSE_FLAGS% %DURATION%\n",
            b"\x07PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x00\x01",
            b"\x05POST /logging?level=debug&a%20b=c+d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdef",
            b"\x02GET /stats HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for input in seeds {
            let mut buf = input.to_vec();
            for _ in 0..ROUNDS {
                config(&buf);
                eds(&buf);
                access_log_format(&buf);
                frame_guard(&buf);
                admin_request(&buf);
                let at = (noise(&mut seed) as usize) % buf.len().max(1);
                if let Some(b) = buf.get_mut(at) {
                    *b = (noise(&mut seed) & 0xff) as u8;
                }
            }
        }
    }

    #[test]
    fn frame_guard_trips_the_same_way_whatever_the_split() {
        // 101 empty DATA frames on stream 1: the empty-frame rule trips.
        let mut flood = vec![0u8];
        for _ in 0..=crate::http2::guard::MAX_CONSECUTIVE_EMPTY {
            flood.extend_from_slice(b"\0\0\0\0\0\0\0\0\x01");
        }
        let now = Instant::now();
        assert!(guard_run(&flood[1..], false, 1000, now).0.is_some());
        for selector in [0u8, 2, 20, 254] {
            flood[0] = selector;
            frame_guard(&flood);
        }
    }

    #[test]
    fn admin_request_reads_the_same_when_trickled() {
        let req = b"\x00GET /ready?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
        admin_request(req);
        let parsed = read_request(&mut Cursor::new(&req[1..]));
        assert!(matches!(parsed, Ok(r) if r.body == b"ok" && r.path == "/ready"));
    }
}
