//! Process log: one global level and Envoy-shaped lines on stderr.
//!
//! The level lives in one `AtomicU8` so the `enabled` check that guards every log macro is a single
//! relaxed load; `/logging?level=...` on the admin thread flips it at run time. A line is formatted
//! into a thread-local buffer and written with one `write` call, so lines from different threads
//! never interleave mid-line. Timestamps are UTC, computed here from `SystemTime` (civil-date
//! arithmetic, no time crate), and shared with the access log's `%START_TIME%`.
//!
//! Workers must not block, and stderr can (a full pipe, a slow terminal, a stalled log shipper).
//! So a thread that calls [`write_through_queue`] (every worker does, at start) hands its lines to
//! the `ringway-log` writer thread through a bounded queue ([`LOG_QUEUE_LINES`]) with `try_send`.
//! When the queue is full the line is dropped and counted on that thread; its next line that gets
//! through carries a notice with the count. The writer polls rather than parking in `recv`, so
//! enqueuing never has to wake it (waking a parked receiver takes the channel's waker lock). Other
//! threads (main, admin, control) may block and keep writing stderr directly, in order.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

impl Level {
    /// Every level, lowest first (for `/logging` and its error message).
    pub const ALL: [Level; 7] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Critical,
        Level::Off,
    ];

    /// Envoy's level names (`warning`, and `warn` as an alias), case-insensitive.
    pub fn parse(s: &str) -> Option<Level> {
        let s = s.trim();
        Some(match () {
            _ if s.eq_ignore_ascii_case("trace") => Level::Trace,
            _ if s.eq_ignore_ascii_case("debug") => Level::Debug,
            _ if s.eq_ignore_ascii_case("info") => Level::Info,
            _ if s.eq_ignore_ascii_case("warning") || s.eq_ignore_ascii_case("warn") => Level::Warn,
            _ if s.eq_ignore_ascii_case("error") => Level::Error,
            _ if s.eq_ignore_ascii_case("critical") => Level::Critical,
            _ if s.eq_ignore_ascii_case("off") => Level::Off,
            _ => return None,
        })
    }

    /// Envoy's name for the level, as printed in log lines and by `/logging`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Off => "off",
        }
    }

    fn from_u8(v: u8) -> Level {
        Level::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Level::Off)
    }
}

/// Serialises tests (here and in `admin`) that change the global level.
#[cfg(test)]
pub(crate) static TEST_LEVEL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Envoy's default level is info.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    Level::from_u8(LEVEL.load(Ordering::Relaxed))
}

#[inline]
pub fn enabled(l: Level) -> bool {
    l != Level::Off && l as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// A UTC instant split into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// Whole seconds since the Unix epoch (negative before 1970).
    pub unix_secs: i64,
}

impl UtcTime {
    pub fn from_system(t: SystemTime) -> UtcTime {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                // Before the epoch: floor the seconds so the sub-second part stays positive.
                let d = e.duration();
                let s = -(d.as_secs() as i64);
                match d.subsec_nanos() {
                    0 => (s, 0),
                    n => (s - 1, 1_000_000_000 - n),
                }
            }
        };
        UtcTime::from_unix(secs, nanos)
    }

    pub fn from_unix(secs: i64, nanos: u32) -> UtcTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            nanos,
            unix_secs: secs,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`: eras of 400 years starting on March 1st, so the leap day
/// is the last day of the computed year).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

thread_local! {
    /// The line buffer and this thread's printable id, built once per thread.
    static LINE: RefCell<(Vec<u8>, String)> = RefCell::new((Vec::with_capacity(256), thread_label()));
}

fn thread_label() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(n) => n.to_owned(),
        None => {
            // `ThreadId`'s number is only reachable through Debug (`ThreadId(7)`) on stable.
            let dbg = format!("{:?}", t.id());
            dbg.trim_start_matches("ThreadId(")
                .trim_end_matches(')')
                .to_owned()
        }
    }
}

/// Appends `[2026-11-23 10:07:00.123][thread][level][module] message\n` to `out`.
fn format_line(
    out: &mut Vec<u8>,
    now: SystemTime,
    thread: &str,
    l: Level,
    module: &str,
    args: std::fmt::Arguments<'_>,
) {
    let t = UtcTime::from_system(now);
    let _ = write!(
        out,
        "[{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}][{}][{}][{}] ",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.nanos / 1_000_000,
        thread,
        l.name(),
        module
    );
    let _ = out.write_fmt(args);
    out.push(b'\n');
}

/// Lines the worker-to-writer queue holds. At about 150 bytes a line this is at most ~600 KiB, and
/// it absorbs a burst of four thousand lines while stderr is slow.
pub const LOG_QUEUE_LINES: usize = 4096;

/// How long the writer sleeps when the queue is empty (a queued line waits at most this long).
const WRITER_POLL: Duration = Duration::from_millis(10);

enum Msg {
    Line(Vec<u8>),
    /// Everything queued before this has been written; acknowledge on the channel.
    Flush(SyncSender<()>),
}

/// The sending half of the bounded line queue, with what a thread needs to shed load.
struct LineQueue {
    tx: SyncSender<Msg>,
}

impl LineQueue {
    /// Queues `line` without blocking. A full queue drops it and counts it in `dropped`; the next
    /// line that fits is preceded by a notice saying how many were lost.
    fn offer(&self, line: &[u8], dropped: &Cell<u64>, thread: &str) -> bool {
        let lost = dropped.get();
        let mut out = Vec::with_capacity(line.len() + if lost > 0 { 160 } else { 0 });
        if lost > 0 {
            format_line(
                &mut out,
                SystemTime::now(),
                thread,
                Level::Warn,
                module_path!(),
                format_args!("{lost} log line(s) dropped: stderr is slower than this thread logs"),
            );
        }
        out.extend_from_slice(line);
        match self.tx.try_send(Msg::Line(out)) {
            Ok(()) => {
                dropped.set(0);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                dropped.set(lost + 1);
                false
            }
        }
    }
}

static QUEUE: OnceLock<LineQueue> = OnceLock::new();

thread_local! {
    /// This thread logs through the queue (a worker).
    static QUEUED: Cell<bool> = const { Cell::new(false) };
    /// Lines this thread dropped since its last line got through.
    static DROPPED: Cell<u64> = const { Cell::new(0) };
}

/// Starts the writer thread (once; later calls do nothing). Until it runs, every thread writes
/// stderr directly.
pub fn start_writer() -> std::io::Result<()> {
    if QUEUE.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = sync_channel(LOG_QUEUE_LINES);
    std::thread::Builder::new()
        .name("ringway-log".to_owned())
        .spawn(move || writer_loop(rx))?;
    let _ = QUEUE.set(LineQueue { tx });
    Ok(())
}

fn writer_loop(rx: Receiver<Msg>) {
    let mut err = std::io::stderr();
    loop {
        match rx.try_recv() {
            Ok(Msg::Line(l)) => {
                let _ = err.write_all(&l);
            }
            Ok(Msg::Flush(ack)) => {
                let _ = ack.try_send(());
            }
            Err(TryRecvError::Empty) => std::thread::sleep(WRITER_POLL),
            Err(TryRecvError::Disconnected) => return,
        }
    }
}

/// Makes this thread's log lines go through the writer's queue (workers call it at start).
pub fn write_through_queue() {
    QUEUED.with(|q| q.set(true));
}

/// Waits (up to `timeout`) until every line queued so far is written; main calls it at exit.
pub fn flush(timeout: Duration) {
    let Some(q) = QUEUE.get() else { return };
    let (ack_tx, ack_rx) = sync_channel(1);
    let deadline = std::time::Instant::now() + timeout;
    let mut msg = Msg::Flush(ack_tx);
    // Only main calls this, and main may wait; still never past the deadline.
    loop {
        match q.tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = ack_rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// Writes one line to stderr: `[2026-11-23 10:07:00.123][1234][info][main] message`; from a
/// worker, through the writer's queue.
pub fn write(l: Level, module: &str, args: std::fmt::Arguments<'_>) {
    let now = SystemTime::now();
    let queue = QUEUED
        .try_with(Cell::get)
        .unwrap_or(false)
        .then(|| QUEUE.get())
        .flatten();
    let emit = |buf: &mut Vec<u8>, thread: &str| {
        buf.clear();
        format_line(buf, now, thread, l, module, args);
        match queue {
            Some(q) => {
                // At thread teardown the counter may be gone: offer without it.
                if DROPPED.try_with(|d| q.offer(buf, d, thread)).is_err() {
                    q.offer(buf, &Cell::new(0), thread);
                }
            }
            // One write_all on unbuffered stderr: a line reaches the kernel in one write call.
            None => {
                let _ = std::io::stderr().write_all(buf);
            }
        }
    };
    let done = LINE
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut g) => {
                let (buf, thread) = &mut *g;
                emit(buf, thread);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if !done {
        // Re-entrant logging (a Display impl that logs) or thread teardown: use a one-off buffer.
        emit(&mut Vec::new(), &thread_label());
    }
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($lvl) {
            $crate::logging::write($lvl, module_path!(), format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Debug, $($arg)*) }; }
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Trace, $($arg)*) }; }

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_envoy_level_names() {
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("CRITICAL"), Some(Level::Critical));
        assert_eq!(Level::parse("off"), Some(Level::Off));
        assert_eq!(Level::parse("verbose"), None);
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
            assert_eq!(Level::from_u8(l as u8), l);
        }
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 (400-year leap day) is day 11016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2100 is not a leap year.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        let t = UtcTime::from_unix(1_795_428_420, 123_000_000);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 23, 10, 7, 0)
        );
    }

    #[test]
    fn line_has_envoy_shape() {
        let mut out = Vec::new();
        let when = UNIX_EPOCH + Duration::new(1_795_428_420, 123_456_789);
        format_line(
            &mut out,
            when,
            "main",
            Level::Warn,
            "ringway::admin",
            format_args!("x={}", 5),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[2026-11-23 10:07:00.123][main][warning][ringway::admin] x=5\n"
        );
    }

    #[test]
    fn full_queue_drops_without_blocking_and_reports_the_count() {
        // A queue nobody drains: offering must never block, only drop and count.
        let (tx, rx) = sync_channel(4);
        let q = LineQueue { tx };
        let dropped = Cell::new(0);
        let sent = (0..10)
            .filter(|i| q.offer(format!("line {i}\n").as_bytes(), &dropped, "w0"))
            .count();
        assert_eq!(sent, 4);
        assert_eq!(dropped.get(), 6);
        let lines: Vec<Vec<u8>> = rx
            .try_iter()
            .filter_map(|m| match m {
                Msg::Line(l) => Some(l),
                Msg::Flush(_) => None,
            })
            .collect();
        assert_eq!(lines.len(), 4);
        // Room again: the next line carries the notice, and the count starts over.
        assert!(q.offer(b"after\n", &dropped, "w0"));
        assert_eq!(dropped.get(), 0);
        let Ok(Msg::Line(l)) = rx.try_recv() else {
            panic!("nothing queued")
        };
        let text = String::from_utf8(l).unwrap();
        assert!(
            text.contains("[w0][warning][ringway::logging] 6 log line(s) dropped"),
            "{text}"
        );
        assert!(text.ends_with("\nafter\n"), "{text}");
    }

    #[test]
    fn enabled_follows_the_global_level() {
        // The only test touching the global: restore it so other tests' logging is unaffected.
        let _g = TEST_LEVEL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let before = level();
        set_level(Level::Error);
        assert!(!enabled(Level::Warn));
        assert!(enabled(Level::Critical));
        set_level(Level::Off);
        assert!(!enabled(Level::Critical));
        assert!(!enabled(Level::Off));
        set_level(before);
    }
}
