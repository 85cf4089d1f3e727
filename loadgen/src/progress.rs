//! The live progress line: once a second, one overwritten stderr line with elapsed time, requests
//! sent / completed / failed, the achieved rate and the last second's p99.
//!
//! Why its own counters instead of the report's recorders: those are per-connection and
//! per-thread `RefCell`s merged only at the end, and reading them live would need a lock on the
//! send path. Instead every worker thread owns one `Live` (relaxed atomic adds on memory no other
//! thread writes: no lock, no contention) and the printer thread only reads. Latencies go into a
//! coarse log-linear histogram (8 sub-buckets per power of two, ~12% precision) of cumulative
//! counts; the printer diffs two snapshots a second apart to get the last second's p99. Everything
//! here counts warmup requests too, since the line is about what is happening now.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sub-buckets per power of two (as a shift).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: values up to 2^40 µs (~12 days) in the last one.
const BUCKETS: usize = ((40 - SUB_BITS as usize) + 1) * SUB as usize + SUB as usize;

/// One worker thread's live counters.
#[derive(Debug)]
pub struct Live {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    latency: Box<[AtomicU64]>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Histogram bucket of a latency in µs.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    (((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize).min(BUCKETS - 1)
}

/// Upper bound (µs) of the values in bucket `i`.
fn bucket_top(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB - 1 + u64::from(SUB_BITS);
    let sub = i % SUB;
    ((SUB + sub + 1) << (exp - u64::from(SUB_BITS))) - 1
}

impl Live {
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A response arrived (any status) after `us` µs; `ok` is false for non-2xx.
    pub fn response(&self, us: u64, ok: bool) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failure(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A sum over all threads at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub sent: u64,
    pub completed: u64,
    pub errors: u64,
    pub latency: Vec<u64>,
}

impl Snapshot {
    pub fn take(lives: &[Arc<Live>]) -> Snapshot {
        let mut s = Snapshot {
            latency: vec![0; BUCKETS],
            ..Snapshot::default()
        };
        for l in lives {
            s.sent += l.sent.load(Ordering::Relaxed);
            s.completed += l.completed.load(Ordering::Relaxed);
            s.errors += l.errors.load(Ordering::Relaxed);
            for (acc, b) in s.latency.iter_mut().zip(l.latency.iter()) {
                *acc += b.load(Ordering::Relaxed);
            }
        }
        s
    }
}

/// p99 (ms) of the responses between `prev` and `now`; `None` when there were none.
pub fn p99_between(prev: &Snapshot, now: &Snapshot) -> Option<f64> {
    let delta: Vec<u64> = now
        .latency
        .iter()
        .zip(prev.latency.iter().chain(std::iter::repeat(&0)))
        .map(|(n, p)| n.saturating_sub(*p))
        .collect();
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    // Smallest bucket at which at least 99% of the samples are counted.
    let want = total - total / 100;
    let mut seen = 0;
    for (i, n) in delta.iter().enumerate() {
        seen += n;
        if seen >= want.max(1) {
            return Some(bucket_top(i) as f64 / 1000.0);
        }
    }
    None
}

/// The progress line (without the leading `\r`).
pub fn format_line(
    elapsed: Duration,
    total: Duration,
    warmup: bool,
    now: &Snapshot,
    rate: f64,
    p99_ms: Option<f64>,
) -> String {
    let p99 = match p99_ms {
        Some(ms) => format!("{ms:.2} ms"),
        None => "-".to_string(),
    };
    format!(
        "{:>5.1}/{:.0}s{} sent {} done {} errors {} rate {:.0}/s p99(1s) {}",
        elapsed.as_secs_f64(),
        total.as_secs_f64(),
        if warmup { " (warmup)" } else { "" },
        now.sent,
        now.completed,
        now.errors,
        rate,
        p99
    )
}

/// Print the line every second from `t0` until `stop`; clears the line at the end.
pub fn print_until(
    lives: Vec<Arc<Live>>,
    t0: Instant,
    measure_from: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
) {
    let total = end.saturating_duration_since(t0);
    let mut prev = Snapshot::take(&lives);
    let mut prev_at = Instant::now();
    let mut width = 0;
    let mut next = t0 + Duration::from_secs(1);
    let mut err = std::io::stderr();
    loop {
        // Short naps so the end of the run is noticed quickly.
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                let _ = write!(err, "\r{:width$}\r", "");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        next += Duration::from_secs(1);
        let now = Snapshot::take(&lives);
        let at = Instant::now();
        let secs = at.duration_since(prev_at).as_secs_f64().max(1e-3);
        let rate = now.completed.saturating_sub(prev.completed) as f64 / secs;
        let line = format_line(
            at.saturating_duration_since(t0).min(total),
            total,
            at < measure_from,
            &now,
            rate,
            p99_between(&prev, &now),
        );
        // Pad over a longer previous line.
        let pad = width.saturating_sub(line.len());
        width = line.len();
        let _ = write!(err, "\r{line}{:pad$}", "");
        let _ = err.flush();
        prev = now;
        prev_at = at;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for us in [
            0u64, 1, 7, 8, 9, 15, 16, 17, 100, 999, 1000, 123_456, 10_000_000,
        ] {
            let b = bucket(us);
            assert!(bucket_top(b) >= us, "{us} -> {b} top {}", bucket_top(b));
            if b > 0 {
                assert!(bucket_top(b - 1) < us, "{us} -> {b}");
            }
            // ~12% precision.
            assert!(bucket_top(b) as f64 <= us as f64 * 1.13 + 1.0, "{us}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn last_second_p99_and_line() {
        let live = Arc::new(Live::default());
        let lives = vec![Arc::clone(&live)];
        for _ in 0..1000 {
            live.sent();
            live.response(50_000, true); // 50 ms, from an earlier second
        }
        let prev = Snapshot::take(&lives);
        for i in 0..100 {
            live.sent();
            // 98 fast, 2 slow (non-2xx) responses: p99 is the slow one.
            live.response(if i < 98 { 1_000 } else { 200_000 }, i < 98);
        }
        live.sent();
        live.failure();
        let now = Snapshot::take(&lives);
        let p99 = p99_between(&prev, &now).unwrap();
        assert!((200.0..230.0).contains(&p99), "{p99}");
        assert_eq!(p99_between(&now, &now), None);
        let line = format_line(
            Duration::from_millis(3_200),
            Duration::from_secs(12),
            false,
            &now,
            100.0,
            Some(1.5),
        );
        assert_eq!(
            line,
            "  3.2/12s sent 1101 done 1100 errors 3 rate 100/s p99(1s) 1.50 ms"
        );
        let line = format_line(
            Duration::from_secs(1),
            Duration::from_secs(12),
            true,
            &Snapshot::default(),
            0.0,
            None,
        );
        assert_eq!(
            line,
            "  1.0/12s (warmup) sent 0 done 0 errors 0 rate 0/s p99(1s) -"
        );
    }
}
