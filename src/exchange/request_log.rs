//! What one request's access-log line and stats need, whatever the codecs: filled in as the
//! exchange goes (status, flags, bytes, upstream host, timings) and written out once at its end.
//!
//! A leaf of the request path: both downstream codecs, the forwarders and the tunnel fill the
//! same [`RequestLog`], so it lives in none of them.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::LogContext;
use crate::http1::{HeadView, HeaderLookup, HeaderSpan};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::worker::Worker;

/// What one request's access-log line and stats need, filled in as the request goes.
pub struct RequestLog<'r> {
    pub start: Instant,
    pub start_time: SystemTime,
    pub status: u16,
    pub flags: ResponseFlags,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_host: Option<SocketAddr>,
    pub cluster: Option<usize>,
    pub upstream_service_time: Option<Duration>,
    /// Borrowed from the route configuration (no copy per request).
    pub route_name: &'r str,
    /// Response head as sent (for %RESP(X)%), offsets into `response_head`.
    pub response_head: Vec<u8>,
    pub response_headers: Vec<HeaderSpan>,
    /// The x-request-id we generated (empty when the client sent one or none was generated).
    pub generated_request_id: Vec<u8>,
    /// When the whole request had arrived and when the response head went out (from the
    /// exchange's `Activity`), for `%REQUEST_DURATION%` and `%RESPONSE_DURATION%`.
    pub request_complete_at: Option<Instant>,
    pub response_started_at: Option<Instant>,
}

/// The request as the upstream saw it, for the access log: the client's head plus what the
/// proxy added (a generated x-request-id), as Envoy's %REQ(X)% shows mutated request headers.
pub struct LoggedRequest<'a> {
    pub view: &'a dyn HeaderLookup,
    pub generated_request_id: &'a [u8],
}

impl HeaderLookup for LoggedRequest<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        if name == "x-request-id" && !self.generated_request_id.is_empty() {
            return Some(self.generated_request_id);
        }
        self.view.get(name)
    }
}

impl RequestLog<'_> {
    /// A log for a request that starts now.
    pub fn start_now() -> Self {
        RequestLog {
            start: Instant::now(),
            start_time: SystemTime::now(),
            status: 0,
            flags: ResponseFlags::default(),
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            cluster: None,
            upstream_service_time: None,
            route_name: "",
            response_head: Vec::new(),
            response_headers: Vec::new(),
            generated_request_id: Vec::new(),
            request_complete_at: None,
            response_started_at: None,
        }
    }

    /// Takes the exchange's phase times (request complete, response started: the watchdog's
    /// `Activity::phases`) for the log.
    pub fn phases_from(&mut self, (request, response): (Option<Instant>, Option<Instant>)) {
        self.request_complete_at = self.request_complete_at.or(request);
        self.response_started_at = self.response_started_at.or(response);
    }
}

/// The connection-level facts an access-log line needs, whatever the codec.
pub struct LoggedConnection {
    pub listener: usize,
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Writes one access-log line per configured log of the listener for a finished request
/// (`request` as the client sent it; the generated request id is added here).
pub fn log_request(
    w: &Worker,
    conn: &LoggedConnection,
    request: &dyn HeaderLookup,
    log: &RequestLog<'_>,
    elapsed: Duration,
) {
    let formats = match w.shared.access_logs.get(conn.listener) {
        Some(f) if !f.is_empty() => f,
        _ => return,
    };
    let mut sink = w.access_log.borrow_mut();
    let Some(sink) = sink.as_mut() else {
        return;
    };
    let request_view = LoggedRequest {
        view: request,
        generated_request_id: &log.generated_request_id,
    };
    let response_view = HeadView {
        buf: &log.response_head,
        headers: &log.response_headers,
        method: b"",
        path: b"",
        authority: None,
        scheme: b"",
    };
    let cluster_name = log
        .cluster
        .and_then(|i| w.shared.config.clusters.get(i))
        .map_or("", |c| c.name.as_str());
    let ctx = LogContext {
        start_time: log.start_time,
        request: &request_view as &dyn HeaderLookup,
        response: &response_view as &dyn HeaderLookup,
        protocol: conn.protocol,
        response_code: log.status,
        response_flags: log.flags,
        bytes_received: log.bytes_received,
        bytes_sent: log.bytes_sent,
        duration: elapsed,
        request_duration: log
            .request_complete_at
            .map(|t| t.saturating_duration_since(log.start)),
        // Envoy's: start to the upstream's first byte, so only when an upstream answered.
        response_duration: log
            .response_started_at
            .filter(|_| log.upstream_host.is_some())
            .map(|t| t.saturating_duration_since(log.start)),
        upstream_service_time: log.upstream_service_time,
        upstream_host: log.upstream_host,
        upstream_cluster: cluster_name,
        downstream_remote: conn.peer,
        downstream_local: conn.local,
        route_name: log.route_name,
    };
    for (file, format) in formats {
        sink.log(*file, format, &ctx);
    }
}
