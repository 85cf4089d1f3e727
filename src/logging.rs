//! Process log: one global level and Envoy-shaped lines on stderr.
//!
//! The level lives in one `AtomicU8` so the `enabled` check that guards every log macro is a single
//! relaxed load; `/logging?level=...` on the admin thread flips it at run time. A line is formatted
//! into a thread-local buffer and written with one `write` call, so lines from different threads
//! never interleave mid-line. Timestamps are UTC, computed here from `SystemTime` (civil-date
//! arithmetic, no time crate), and shared with the access log's `%START_TIME%`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Writes one line to stderr: `[2026-11-23 10:07:00.123][1234][info][main] message`.
pub fn write(l: Level, module: &str, args: std::fmt::Arguments<'_>) {
    let now = SystemTime::now();
    let emit = |buf: &mut Vec<u8>, thread: &str| {
        buf.clear();
        format_line(buf, now, thread, l, module, args);
        // One write_all on unbuffered stderr: a line reaches the kernel in one write call.
        let _ = std::io::stderr().write_all(buf);
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
