//! Access logs: Envoy format strings, formatted on the worker, written by one writer thread.
//!
//! A format string is parsed once at start into a list of pieces (literal text and commands such
//! as `%REQ(:METHOD)%`), so formatting a request is a walk over that list appending to the worker's
//! own buffer: no parsing, no allocation, no lock on the request path. Workers hand filled buffers
//! to the [`AccessLogSink`] writer thread over a channel (every housekeeping tick, or when a
//! buffer passes 64 KiB) and get emptied buffers back for reuse, so a slow disk never blocks a
//! worker. Each worker owns a fixed number of buffers ([`IN_FLIGHT_BUFFERS`] in flight): when the
//! writer falls that far behind, the worker drops its next buffer and counts the lines in
//! `access_log.dropped`, so memory stays bounded whatever the disk does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::http1::HeaderLookup;
use crate::logging::UtcTime;
use crate::proxy::flags::ResponseFlags;
use crate::stats::{ServerStat, Stats};

/// One `%START_TIME(...)%` strftime element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePiece {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// `%z`: always `+0000` (times are UTC).
    Zone,
    /// `%s`: seconds since the epoch.
    EpochSecs,
    /// `%3f`, `%6f`, `%9f`: that many digits of the fractional second.
    Frac(u8),
}

/// One parsed element of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `%START_TIME%` with Envoy's default `2026-11-23T10:07:00.123Z` rendering.
    StartTimeDefault,
    StartTime(Vec<TimePiece>),
    Req(HeaderCmd),
    Resp(HeaderCmd),
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemote,
    DownstreamRemoteNoPort,
    DownstreamLocal,
    RouteName,
    /// `%REQUEST_DURATION%`, `%RESPONSE_DURATION%`, `%RESPONSE_TX_DURATION%`: the exchange's
    /// phases, `-` when a phase did not happen (no upstream answered, the request never ended).
    RequestDuration,
    ResponseDuration,
    ResponseTxDuration,
    UpstreamServiceTime,
}

/// `%REQ(X?Y):N%`: header `X`, else `Y`, truncated to `N` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderCmd {
    name: String,
    alt: Option<String>,
    max_len: Option<usize>,
}

/// A parsed Envoy format string (`%START_TIME%`, `%REQ(X?Y):N%`, `%RESPONSE_CODE%`, ...).
pub struct Format {
    pieces: Vec<Piece>,
}

const ENVOY_DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

impl Format {
    /// Envoy's default format:
    /// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n`
    pub fn envoy_default() -> Format {
        match Format::parse(ENVOY_DEFAULT) {
            Ok(f) => f,
            // The default string is a constant covered by tests; this arm is unreachable.
            Err(_) => Format { pieces: Vec::new() },
        }
    }

    /// Parses a format string; an unknown or malformed command is an error naming it.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find('%') {
            lit.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(r) = after.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let (piece, consumed) = parse_command(after)?;
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(piece);
            rest = &after[consumed..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Format { pieces })
    }

    /// Appends the formatted line for `ctx` to `out`. Allocates nothing itself.
    pub fn write(&self, ctx: &LogContext<'_>, out: &mut Vec<u8>) {
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Piece::StartTimeDefault => {
                    let t = UtcTime::from_system(ctx.start_time);
                    write_date(out, &t, b'-');
                    out.push(b'T');
                    write_clock(out, &t);
                    out.push(b'.');
                    write_padded(out, u64::from(t.nanos / 1_000_000), 3);
                    out.push(b'Z');
                }
                Piece::StartTime(tp) => write_time(out, tp, ctx.start_time),
                Piece::Req(h) => write_header(out, ctx.request, h),
                Piece::Resp(h) => write_header(out, ctx.response, h),
                Piece::Protocol => out.extend_from_slice(ctx.protocol.as_bytes()),
                Piece::ResponseCode => write_u64(out, u64::from(ctx.response_code)),
                Piece::ResponseFlags => ctx.response_flags.write_to(out),
                Piece::BytesReceived => write_u64(out, ctx.bytes_received),
                Piece::BytesSent => write_u64(out, ctx.bytes_sent),
                Piece::Duration => write_millis(out, ctx.duration),
                Piece::UpstreamHost => match ctx.upstream_host {
                    Some(a) => write_addr(out, a, true),
                    None => out.push(b'-'),
                },
                Piece::UpstreamCluster => write_or_dash(out, ctx.upstream_cluster),
                Piece::DownstreamRemote => write_addr(out, ctx.downstream_remote, true),
                Piece::DownstreamRemoteNoPort => write_addr(out, ctx.downstream_remote, false),
                Piece::DownstreamLocal => write_addr(out, ctx.downstream_local, true),
                Piece::RouteName => write_or_dash(out, ctx.route_name),
                Piece::RequestDuration => write_opt_millis(out, ctx.request_duration),
                Piece::ResponseDuration => write_opt_millis(out, ctx.response_duration),
                Piece::ResponseTxDuration => write_opt_millis(
                    out,
                    ctx.response_duration
                        .map(|r| ctx.duration.saturating_sub(r)),
                ),
                Piece::UpstreamServiceTime => match ctx.upstream_service_time {
                    Some(d) => write_millis(out, d),
                    None => out.push(b'-'),
                },
            }
        }
    }
}

/// Parses one command starting just after its opening `%`; returns the piece and the number of
/// bytes consumed including the closing `%`.
fn parse_command(s: &str) -> Result<(Piece, usize), String> {
    let name_len = s
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    let name = &s[..name_len];
    let mut i = name_len;
    let mut arg = None;
    if s[i..].starts_with('(') {
        let close = s[i..]
            .find(')')
            .ok_or_else(|| format!("access log format: unterminated '(' in %{name}("))?;
        arg = Some(&s[i + 1..i + close]);
        i += close + 1;
    }
    let mut max_len = None;
    if s[i..].starts_with(':') {
        let digits = s[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = s[i + 1..i + 1 + digits]
            .parse()
            .map_err(|_| format!("access log format: bad length after %{name}:"))?;
        max_len = Some(n);
        i += 1 + digits;
    }
    if !s[i..].starts_with('%') {
        let shown: String = s.chars().take(name_len.max(1) + 8).collect();
        return Err(format!(
            "access log format: malformed command near '%{shown}' (expected a closing '%')"
        ));
    }
    i += 1;
    let no_arg = |p: Piece| -> Result<Piece, String> {
        if arg.is_some() || max_len.is_some() {
            Err(format!("access log format: %{name}% takes no arguments"))
        } else {
            Ok(p)
        }
    };
    let piece = match name {
        "START_TIME" => match arg {
            None => Piece::StartTimeDefault,
            Some(a) => Piece::StartTime(parse_time_format(a)?),
        },
        "REQ" | "RESP" => {
            let a = arg.ok_or_else(|| format!("access log format: %{name}% needs (HEADER)"))?;
            let (n, alt) = match a.split_once('?') {
                Some((n, alt)) => (n, Some(alt.to_ascii_lowercase())),
                None => (a, None),
            };
            if n.is_empty() || alt.as_deref() == Some("") {
                return Err(format!(
                    "access log format: empty header name in %{name}({a})%"
                ));
            }
            let cmd = HeaderCmd {
                name: n.to_ascii_lowercase(),
                alt,
                max_len,
            };
            if name == "REQ" {
                Piece::Req(cmd)
            } else {
                Piece::Resp(cmd)
            }
        }
        "PROTOCOL" => no_arg(Piece::Protocol)?,
        "RESPONSE_CODE" => no_arg(Piece::ResponseCode)?,
        "RESPONSE_FLAGS" => no_arg(Piece::ResponseFlags)?,
        "BYTES_RECEIVED" => no_arg(Piece::BytesReceived)?,
        "BYTES_SENT" => no_arg(Piece::BytesSent)?,
        "DURATION" => no_arg(Piece::Duration)?,
        "UPSTREAM_HOST" => no_arg(Piece::UpstreamHost)?,
        "UPSTREAM_CLUSTER" => no_arg(Piece::UpstreamCluster)?,
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Piece::DownstreamRemote)?,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => no_arg(Piece::DownstreamRemoteNoPort)?,
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Piece::DownstreamLocal)?,
        "ROUTE_NAME" => no_arg(Piece::RouteName)?,
        "REQUEST_DURATION" => no_arg(Piece::RequestDuration)?,
        "RESPONSE_DURATION" => no_arg(Piece::ResponseDuration)?,
        "RESPONSE_TX_DURATION" => no_arg(Piece::ResponseTxDuration)?,
        "UPSTREAM_SERVICE_TIME" => no_arg(Piece::UpstreamServiceTime)?,
        "" => return Err("access log format: missing command name after %".to_owned()),
        other => return Err(format!("access log format: unknown command %{other}%")),
    };
    Ok((piece, i))
}

fn parse_time_format(f: &str) -> Result<Vec<TimePiece>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let piece = match chars.next() {
            Some('%') => {
                lit.push('%');
                continue;
            }
            Some('Y') => TimePiece::Year,
            Some('m') => TimePiece::Month,
            Some('d') => TimePiece::Day,
            Some('H') => TimePiece::Hour,
            Some('M') => TimePiece::Minute,
            Some('S') => TimePiece::Second,
            Some('z') => TimePiece::Zone,
            Some('s') => TimePiece::EpochSecs,
            Some(d @ ('3' | '6' | '9')) => match chars.next() {
                Some('f') => TimePiece::Frac(d as u8 - b'0'),
                _ => return Err(format!("START_TIME format: unsupported %{d} in '{f}'")),
            },
            Some(o) => return Err(format!("START_TIME format: unsupported %{o} in '{f}'")),
            None => return Err(format!("START_TIME format: trailing '%' in '{f}'")),
        };
        if !lit.is_empty() {
            out.push(TimePiece::Literal(std::mem::take(&mut lit)));
        }
        out.push(piece);
    }
    if !lit.is_empty() {
        out.push(TimePiece::Literal(lit));
    }
    Ok(out)
}

fn write_time(out: &mut Vec<u8>, pieces: &[TimePiece], when: SystemTime) {
    let t = UtcTime::from_system(when);
    for p in pieces {
        match p {
            TimePiece::Literal(s) => out.extend_from_slice(s.as_bytes()),
            TimePiece::Year => write_year(out, t.year),
            TimePiece::Month => write_padded(out, u64::from(t.month), 2),
            TimePiece::Day => write_padded(out, u64::from(t.day), 2),
            TimePiece::Hour => write_padded(out, u64::from(t.hour), 2),
            TimePiece::Minute => write_padded(out, u64::from(t.minute), 2),
            TimePiece::Second => write_padded(out, u64::from(t.second), 2),
            TimePiece::Zone => out.extend_from_slice(b"+0000"),
            TimePiece::EpochSecs => {
                if t.unix_secs < 0 {
                    out.push(b'-');
                }
                write_u64(out, t.unix_secs.unsigned_abs());
            }
            TimePiece::Frac(digits) => {
                let div = 10u32.pow(9 - u32::from(*digits));
                write_padded(out, u64::from(t.nanos / div), usize::from(*digits));
            }
        }
    }
}

fn write_year(out: &mut Vec<u8>, y: i64) {
    if y < 0 {
        out.push(b'-');
    }
    write_padded(out, y.unsigned_abs(), 4);
}

fn write_date(out: &mut Vec<u8>, t: &UtcTime, sep: u8) {
    write_year(out, t.year);
    out.push(sep);
    write_padded(out, u64::from(t.month), 2);
    out.push(sep);
    write_padded(out, u64::from(t.day), 2);
}

fn write_clock(out: &mut Vec<u8>, t: &UtcTime) {
    write_padded(out, u64::from(t.hour), 2);
    out.push(b':');
    write_padded(out, u64::from(t.minute), 2);
    out.push(b':');
    write_padded(out, u64::from(t.second), 2);
}

/// Decimal `v`, left-padded with zeros to `width`, through a stack buffer.
fn write_padded(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = buf.len() - i;
    for _ in len..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    write_padded(out, v, 0);
}

fn write_opt_millis(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => write_millis(out, d),
        None => out.push(b'-'),
    }
}

/// Whole milliseconds, as Envoy's `%DURATION%` prints them.
fn write_millis(out: &mut Vec<u8>, d: Duration) {
    write_u64(out, d.as_millis() as u64);
}

fn write_or_dash(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// `1.2.3.4:80` or `[::1]:80`; without port, `1.2.3.4` or `::1` (Envoy's forms).
fn write_addr(out: &mut Vec<u8>, a: SocketAddr, with_port: bool) {
    // Display of IpAddr writes through fmt; into a Vec this cannot fail and does not allocate
    // beyond the Vec's own growth.
    match (a, with_port) {
        (SocketAddr::V4(v4), _) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(out, u64::from(*o));
            }
        }
        (SocketAddr::V6(v6), true) => {
            let _ = write!(out, "[{}]", v6.ip());
        }
        (SocketAddr::V6(v6), false) => {
            let _ = write!(out, "{}", v6.ip());
        }
    }
    if with_port {
        out.push(b':');
        write_u64(out, u64::from(a.port()));
    }
}

fn write_header(out: &mut Vec<u8>, h: &dyn HeaderLookup, cmd: &HeaderCmd) {
    let v = h
        .get(&cmd.name)
        .or_else(|| cmd.alt.as_deref().and_then(|alt| h.get(alt)));
    match v {
        Some(v) => {
            let v = match cmd.max_len {
                Some(n) if v.len() > n => &v[..n],
                _ => v,
            };
            out.extend_from_slice(v);
        }
        None => out.push(b'-'),
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
    /// Start to the last byte of the request received (`%REQUEST_DURATION%`).
    pub request_duration: Option<Duration>,
    /// Start to the first byte of the upstream's response (`%RESPONSE_DURATION%`); the rest of
    /// `duration` is `%RESPONSE_TX_DURATION%`.
    pub response_duration: Option<Duration>,
    pub upstream_service_time: Option<Duration>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: &'a str,
    pub downstream_remote: SocketAddr,
    pub downstream_local: SocketAddr,
    pub route_name: &'a str,
}

/// A worker buffer passes this size → it is handed to the writer without waiting for `flush`.
const FLUSH_AT: usize = 64 * 1024;

/// Buffers a worker may have with the writer thread (queued or being written) on top of its one
/// pending buffer per file. This is the queue's bound: with every one of them out, the writer is
/// at least this many buffers behind, and a worker's next full buffer is dropped and counted
/// (`access_log.dropped`) instead of growing memory. Four 64 KiB buffers cover about four seconds
/// of logging at 3,000 requests a second per worker.
pub const IN_FLIGHT_BUFFERS: usize = 4;

/// How long the writer sleeps when it finds nothing queued. It polls instead of parking in `recv`
/// so a worker's `send` never has to wake it: waking a parked receiver takes the channel's waker
/// lock, and workers take no locks. A line reaches the file at most this much later.
const WRITER_POLL: Duration = Duration::from_millis(10);

enum Msg {
    /// Bytes for file `index`; the emptied buffer goes back on `ret`.
    Data {
        index: usize,
        buf: Vec<u8>,
        ret: Sender<Vec<u8>>,
    },
    Shutdown,
}

/// The writer thread that owns the log files. Workers never block on a file.
pub struct AccessLogSink {
    tx: Sender<Msg>,
    files: usize,
    thread: Option<JoinHandle<()>>,
}

impl AccessLogSink {
    /// Opens (append, create) every file; errors name the path.
    pub fn start(paths: Vec<PathBuf>) -> std::io::Result<AccessLogSink> {
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot open access log {}: {e}", p.display()),
                    )
                })?;
            files.push(f);
        }
        // Unbounded as a type, bounded in use: each worker has at most `IN_FLIGHT_BUFFERS`
        // messages in it (see `WorkerAccessLog::send`).
        let (tx, rx) = channel();
        let count = files.len();
        let thread = std::thread::Builder::new()
            .name("ringway-accesslog".to_owned())
            .spawn(move || writer_loop(rx, files, paths))?;
        Ok(AccessLogSink {
            tx,
            files: count,
            thread: Some(thread),
        })
    }

    /// Worker `worker`'s handle (buffers locally, hands full buffers to the writer thread, counts
    /// what it has to drop in `stats`).
    pub fn worker(&self, stats: Arc<Stats>, worker: usize) -> WorkerAccessLog {
        WorkerAccessLog::new(self.tx.clone(), self.files, stats, worker)
    }

    /// Flushes everything and stops the writer thread (at shutdown).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Msg::Shutdown);
            let _ = t.join();
        }
    }
}

impl Drop for AccessLogSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_loop(rx: Receiver<Msg>, mut files: Vec<File>, paths: Vec<PathBuf>) {
    let mut failed = vec![false; files.len()];
    let mut write = |index: usize, buf: Vec<u8>, ret: Sender<Vec<u8>>| {
        if let Some(f) = files.get_mut(index) {
            if let Err(e) = f.write_all(&buf) {
                // Say it once per file; repeating it per buffer would flood stderr.
                if !failed[index] {
                    failed[index] = true;
                    crate::error!("access log {}: write failed: {e}", paths[index].display());
                }
            }
        }
        let mut buf = buf;
        buf.clear();
        // The worker may be gone; then the buffer is simply dropped.
        let _ = ret.send(buf);
    };
    loop {
        match rx.try_recv() {
            Ok(Msg::Data { index, buf, ret }) => write(index, buf, ret),
            Ok(Msg::Shutdown) => {
                // Everything sent before Shutdown is already queued ahead of it; take what
                // raced in alongside it too.
                while let Ok(Msg::Data { index, buf, ret }) = rx.try_recv() {
                    write(index, buf, ret);
                }
                break;
            }
            Err(TryRecvError::Empty) => std::thread::sleep(WRITER_POLL),
            Err(TryRecvError::Disconnected) => break,
        }
    }
    for f in &mut files {
        let _ = f.flush();
    }
}

pub struct WorkerAccessLog {
    tx: Sender<Msg>,
    /// One pending buffer per log file index.
    bufs: Vec<Vec<u8>>,
    /// Lines in each pending buffer (what is counted if the buffer has to be dropped).
    lines: Vec<u64>,
    /// Emptied buffers ready for reuse.
    spare: Vec<Vec<u8>>,
    ret_tx: Sender<Vec<u8>>,
    ret_rx: Receiver<Vec<u8>>,
    /// Buffers this worker owns wherever they are (pending, spare, queued, being written):
    /// never more than one per file plus `IN_FLIGHT_BUFFERS`.
    allocated: usize,
    stats: Arc<Stats>,
    worker: usize,
}

impl WorkerAccessLog {
    fn new(tx: Sender<Msg>, files: usize, stats: Arc<Stats>, worker: usize) -> WorkerAccessLog {
        let (ret_tx, ret_rx) = channel();
        WorkerAccessLog {
            tx,
            bufs: (0..files).map(|_| Vec::new()).collect(),
            lines: vec![0; files],
            spare: Vec::new(),
            ret_tx,
            ret_rx,
            allocated: files,
            stats,
            worker,
        }
    }

    /// Appends one formatted line for log file `file_index` (as passed to `start`).
    pub fn log(&mut self, file_index: usize, format: &Format, ctx: &LogContext<'_>) {
        let Some(buf) = self.bufs.get_mut(file_index) else {
            return;
        };
        format.write(ctx, buf);
        self.lines[file_index] += 1;
        if buf.len() >= FLUSH_AT {
            self.send(file_index);
        }
    }

    /// Hands buffered lines to the writer thread; workers call this about once a second and at exit.
    pub fn flush(&mut self) {
        for i in 0..self.bufs.len() {
            if !self.bufs[i].is_empty() {
                self.send(i);
            }
        }
    }

    /// Buffers this worker owns in all (the bound the tests check).
    pub fn allocated_buffers(&self) -> usize {
        self.allocated
    }

    fn send(&mut self, index: usize) {
        while let Ok(b) = self.ret_rx.try_recv() {
            self.spare.push(b);
        }
        let fresh = match self.spare.pop() {
            Some(b) => b,
            None if self.allocated < self.bufs.len() + IN_FLIGHT_BUFFERS => {
                self.allocated += 1;
                Vec::with_capacity(FLUSH_AT + 1024)
            }
            None => {
                // Every in-flight buffer is still with the writer: shed these lines rather than
                // queue more memory or wait for the disk.
                let dropped = std::mem::take(&mut self.lines[index]);
                self.stats
                    .server
                    .add(self.worker, ServerStat::AccessLogDropped, dropped);
                self.bufs[index].clear();
                return;
            }
        };
        let full = std::mem::replace(&mut self.bufs[index], fresh);
        let lines = std::mem::take(&mut self.lines[index]);
        let sent = self.tx.send(Msg::Data {
            index,
            buf: full,
            ret: self.ret_tx.clone(),
        });
        if sent.is_err() {
            // The writer is gone (shutdown): the lines are lost, and so is the buffer.
            self.allocated -= 1;
            self.stats
                .server
                .add(self.worker, ServerStat::AccessLogDropped, lines);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::UNIX_EPOCH;

    struct Headers(Vec<(&'static str, &'static str)>);

    impl HeaderLookup for Headers {
        fn get(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    fn req() -> Headers {
        Headers(vec![
            (":method", "GET"),
            (":path", "/api/v1/items?x=1"),
            (":authority", "example.com"),
            ("user-agent", "curl/8.5.0"),
            ("x-request-id", "abc-123"),
        ])
    }

    fn resp() -> Headers {
        Headers(vec![
            ("x-envoy-upstream-service-time", "7"),
            ("content-type", "text/plain"),
        ])
    }

    fn ctx<'a>(rq: &'a Headers, rs: &'a Headers) -> LogContext<'a> {
        let mut flags = ResponseFlags::default();
        flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        LogContext {
            start_time: UNIX_EPOCH + Duration::new(1_795_428_420, 123_456_789),
            request: rq,
            response: rs,
            protocol: "HTTP/1.1",
            response_code: 503,
            response_flags: flags,
            bytes_received: 12,
            bytes_sent: 345,
            duration: Duration::from_micros(8_999),
            request_duration: Some(Duration::from_micros(1_200)),
            response_duration: Some(Duration::from_micros(6_500)),
            upstream_service_time: Some(Duration::from_millis(7)),
            upstream_host: Some("10.0.0.2:8080".parse().unwrap()),
            upstream_cluster: "service1",
            downstream_remote: "192.168.1.9:51234".parse().unwrap(),
            downstream_local: "[::1]:10000".parse().unwrap(),
            route_name: "",
        }
    }

    fn render(f: &str) -> String {
        let (rq, rs) = (req(), resp());
        let mut out = Vec::new();
        Format::parse(f).unwrap().write(&ctx(&rq, &rs), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_format_line() {
        let (rq, rs) = (req(), resp());
        let mut out = Vec::new();
        Format::envoy_default().write(&ctx(&rq, &rs), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-11-23T10:07:00.123Z] \"GET /api/v1/items?x=1 HTTP/1.1\" 503 URX 12 345 8 7 \
             \"-\" \"curl/8.5.0\" \"abc-123\" \"example.com\" \"10.0.0.2:8080\"\n"
        );
    }

    #[test]
    fn parses_into_literals_and_commands() {
        let f = Format::parse("a %% b %PROTOCOL%:%REQ(X-A?x-b):3%!").unwrap();
        assert_eq!(
            f.pieces,
            vec![
                Piece::Literal("a % b ".into()),
                Piece::Protocol,
                Piece::Literal(":".into()),
                Piece::Req(HeaderCmd {
                    name: "x-a".into(),
                    alt: Some("x-b".into()),
                    max_len: Some(3)
                }),
                Piece::Literal("!".into()),
            ]
        );
        assert!(Format::parse("").unwrap().pieces.is_empty());
    }

    #[test]
    fn each_command() {
        assert_eq!(render("%RESPONSE_CODE%"), "503");
        assert_eq!(render("%RESPONSE_FLAGS%"), "URX");
        assert_eq!(render("%BYTES_RECEIVED%/%BYTES_SENT%"), "12/345");
        assert_eq!(render("%DURATION%"), "8");
        assert_eq!(render("%UPSTREAM_SERVICE_TIME%"), "7");
        assert_eq!(render("%UPSTREAM_HOST%"), "10.0.0.2:8080");
        assert_eq!(render("%UPSTREAM_CLUSTER%"), "service1");
        assert_eq!(render("%DOWNSTREAM_REMOTE_ADDRESS%"), "192.168.1.9:51234");
        assert_eq!(
            render("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            "192.168.1.9"
        );
        assert_eq!(render("%DOWNSTREAM_LOCAL_ADDRESS%"), "[::1]:10000");
        assert_eq!(render("%ROUTE_NAME%"), "-");
        assert_eq!(
            render("%REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION%"),
            "1 6 2"
        );
        assert_eq!(render("%PROTOCOL%"), "HTTP/1.1");
        assert_eq!(render("%REQ(:METHOD)% %REQ(:Path):4%"), "GET /api");
        assert_eq!(render("%REQ(X-MISSING)%"), "-");
        assert_eq!(render("%REQ(X-MISSING?User-Agent)%"), "curl/8.5.0");
        assert_eq!(render("%REQ(:AUTHORITY):100%"), "example.com");
        assert_eq!(
            render("%RESP(CONTENT-TYPE)% %RESP(X-NONE)%"),
            "text/plain -"
        );
        assert_eq!(render("%START_TIME%"), "2026-11-23T10:07:00.123Z");
        assert_eq!(
            render("%START_TIME(%Y-%m-%dT%H:%M:%S%z)%"),
            "2026-11-23T10:07:00+0000"
        );
        assert_eq!(
            render("%START_TIME(%s.%3f|%6f|%9f %%)%"),
            "1795428420.123|123456|123456789 %"
        );
    }

    #[test]
    fn missing_optional_values_are_dashes() {
        let (rq, rs) = (req(), Headers(Vec::new()));
        let mut c = ctx(&rq, &rs);
        c.upstream_host = None;
        c.upstream_service_time = None;
        c.upstream_cluster = "";
        c.response_flags = ResponseFlags::default();
        let mut out = Vec::new();
        Format::parse("%UPSTREAM_HOST% %UPSTREAM_SERVICE_TIME% %UPSTREAM_CLUSTER% %RESPONSE_FLAGS% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%")
            .unwrap()
            .write(&c, &mut out);
        assert_eq!(out, b"- - - - -");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Format::parse("x %NOT_A_THING% y").err().unwrap();
        assert!(e.contains("NOT_A_THING"), "{e}");
        assert!(Format::parse("%PROTOCOL").is_err());
        assert!(Format::parse("%REQ%").is_err());
        assert!(Format::parse("%REQ(:path%").is_err());
        assert!(Format::parse("%START_TIME(%Q)%").is_err());
        assert!(Format::parse("%DURATION(x)%").is_err());
        assert!(Format::parse("50%").is_err());
    }

    #[test]
    fn sink_writes_buffers_to_the_file() {
        let dir = std::env::temp_dir().join(format!("ringway-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.log");
        let b = dir.join("b.log");
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        let sink = AccessLogSink::start(vec![a.clone(), b.clone()]).unwrap();
        let fmt = Format::parse("%RESPONSE_CODE% %REQ(:PATH)%\n").unwrap();
        let (rq, rs) = (req(), resp());
        let c = ctx(&rq, &rs);
        let stats = Stats::new(&crate::admin::test_support::bootstrap(), 1);
        let mut w = sink.worker(stats.clone(), 0);
        w.log(0, &fmt, &c);
        w.log(0, &fmt, &c);
        w.log(7, &fmt, &c); // no such file: ignored
        w.flush();
        // Enough lines to pass 64 KiB and trigger a flush from log() itself.
        for _ in 0..4000 {
            w.log(1, &fmt, &c);
        }
        w.flush();
        sink.shutdown();
        let line = "503 /api/v1/items?x=1\n";
        assert_eq!(std::fs::read_to_string(&a).unwrap(), line.repeat(2));
        assert_eq!(std::fs::read_to_string(&b).unwrap(), line.repeat(4000));
        assert_eq!(stats.server.get(ServerStat::AccessLogDropped), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stalled_writer_bounds_buffers_and_counts_dropped_lines() {
        // A writer that never reads: the receiver is held, nothing drains it.
        let (tx, rx) = channel();
        let stats = Stats::new(&crate::admin::test_support::bootstrap(), 2);
        let mut w = WorkerAccessLog::new(tx, 1, stats.clone(), 1);
        let fmt = Format::parse("%RESPONSE_CODE% %REQ(:PATH)%\n").unwrap();
        let (rq, rs) = (req(), resp());
        let c = ctx(&rq, &rs);
        const LINES: u64 = 100_000; // 2.2 MB of log, about 34 buffers' worth
        for i in 0..LINES {
            w.log(0, &fmt, &c);
            if i % 1000 == 0 {
                w.flush();
            }
        }
        w.flush();
        // The queue holds at most IN_FLIGHT_BUFFERS buffers; the worker owns one more.
        let queued: Vec<Vec<u8>> = rx
            .try_iter()
            .filter_map(|m| match m {
                Msg::Data { buf, .. } => Some(buf),
                Msg::Shutdown => None,
            })
            .collect();
        assert_eq!(queued.len(), IN_FLIGHT_BUFFERS);
        assert_eq!(w.allocated_buffers(), 1 + IN_FLIGHT_BUFFERS);
        let held: usize = queued.iter().map(Vec::capacity).sum();
        assert!(held < (IN_FLIGHT_BUFFERS + 1) * (FLUSH_AT + 4096), "{held}");
        // Every line is either queued or counted as dropped, in this worker's slot.
        let queued_lines = queued
            .iter()
            .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
            .sum::<u64>();
        let dropped = stats.server.get(ServerStat::AccessLogDropped);
        assert!(dropped > LINES / 2, "dropped {dropped}");
        assert_eq!(queued_lines + dropped, LINES);
        assert_eq!(
            stats
                .server
                .counters
                .slot_value(1, ServerStat::AccessLogDropped as usize),
            dropped
        );
    }

    #[test]
    fn start_names_the_path_that_failed() {
        let e = AccessLogSink::start(vec![PathBuf::from("/nonexistent-dir/x/y.log")])
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent-dir/x/y.log"));
    }
}
