//! STUB (replaced by the admin/observability work): signatures are the contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::http1::HeaderLookup;
use crate::proxy::flags::ResponseFlags;

/// A parsed Envoy format string (`%START_TIME%`, `%REQ(X?Y):N%`, `%RESPONSE_CODE%`, ...).
pub struct Format {}

impl Format {
    /// Envoy's default format:
    /// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n`
    pub fn envoy_default() -> Format {
        unimplemented!()
    }
    pub fn parse(_s: &str) -> Result<Format, String> {
        unimplemented!()
    }
    pub fn write(&self, _ctx: &LogContext<'_>, _out: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// What one finished request offers to a format string.
pub struct LogContext<'a> {
    pub start_time: SystemTime,
    pub request: &'a dyn HeaderLookup,
    pub response: &'a dyn HeaderLookup,
    pub protocol: &'static str,
    pub response_code: u16,
    pub response_flags: ResponseFlags,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream_service_time: Option<Duration>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: &'a str,
    pub downstream_remote: SocketAddr,
    pub downstream_local: SocketAddr,
    pub route_name: &'a str,
}

/// The writer thread that owns the log files. Workers never block on a file.
pub struct AccessLogSink {}

impl AccessLogSink {
    /// Opens (append, create) every file; errors name the path.
    pub fn start(_paths: Vec<PathBuf>) -> std::io::Result<AccessLogSink> {
        unimplemented!()
    }
    /// A worker's handle (buffers locally, hands full buffers to the writer thread).
    pub fn worker(&self) -> WorkerAccessLog {
        unimplemented!()
    }
    /// Flushes everything and stops the writer thread (at shutdown).
    pub fn shutdown(self) {
        unimplemented!()
    }
}

pub struct WorkerAccessLog {}

impl WorkerAccessLog {
    /// Appends one formatted line for log file `file_index` (as passed to `start`).
    pub fn log(&mut self, _file_index: usize, _format: &Format, _ctx: &LogContext<'_>) {
        unimplemented!()
    }
    /// Hands buffered lines to the writer thread; workers call this about once a second and at exit.
    pub fn flush(&mut self) {
        unimplemented!()
    }
}
