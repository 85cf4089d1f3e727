//! Time-resolved results: latency and outcome counts bucketed by each request's *scheduled*
//! time, from which the per-second series and the steady-state vs churn-phase split are built
//! after the run.
//!
//! Why buckets instead of per-request samples or live classification: churn events happen on
//! another thread at times the connections cannot know without sharing state, and the hot path
//! takes no locks. So every thread fills its own `Timeline` (one bucket per `width`, created
//! lazily once per bucket, never per request), threads are merged at the end, and the split is
//! computed against the recorded event times. Buckets use 2-significant-digit histograms (1%
//! precision, ~20 KB each); the run-wide histogram in `report` keeps 3 digits for the headline
//! percentiles. Bucket widths are chosen from 100 ms, 200 ms, 500 ms, 1 s, 2 s, ... so that at most
//! `MAX_BUCKETS` exist and per-second points align with bucket edges.
//!
//! Churn phase definition (documented in the README of bench/ and in `--help`): a request is in
//! the churn phase when its scheduled time falls in a bucket that overlaps `[event, event +
//! window)` for any churn event; every other measured request is steady state. With 100 ms
//! buckets (runs up to a minute) the churn phase is therefore the window rounded out to whole
//! 100 ms buckets.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::units::MAX_LATENCY_US;

/// Upper bound on buckets per run (memory: ~20 KB per non-empty bucket per thread).
pub const MAX_BUCKETS: u64 = 600;
/// Significant digits of bucket histograms.
const BUCKET_DIGITS: u8 = 2;

/// New histogram for a bucket or a merged phase.
pub fn bucket_histogram() -> Histogram<u64> {
    // Constant, valid bounds: cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, BUCKET_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// What the requests scheduled in one bucket did.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Latencies (µs) of completed requests, any status.
    pub hist: Histogram<u64>,
    /// Responses received (any status).
    pub completed: u64,
    /// Failed requests: connect/reset/timeout/protocol errors and non-2xx responses.
    pub errors: u64,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            hist: bucket_histogram(),
            completed: 0,
            errors: 0,
        }
    }

    fn merge(&mut self, o: &Bucket) {
        // Same bounds on both sides: add cannot fail; fall back to saturating records anyway.
        if self.hist.add(&o.hist).is_err() {
            for v in o.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.completed += o.completed;
        self.errors += o.errors;
    }
}

/// Buckets over the measured window, indexed by scheduled time since the window's start.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub width: Duration,
    buckets: Vec<Option<Bucket>>,
}

/// One point of the per-interval series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Interval start, seconds since the measured window began.
    pub t: f64,
    pub completed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Steady-state vs churn-phase aggregate.
#[derive(Debug, Clone)]
pub struct Phase {
    pub hist: Histogram<u64>,
    pub completed: u64,
    pub errors: u64,
    /// Seconds of the run this phase covers (whole buckets).
    pub seconds: f64,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            hist: bucket_histogram(),
            completed: 0,
            errors: 0,
            seconds: 0.0,
        }
    }

    /// Latency at quantile `q` in ms (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub fn max_ms(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}

/// Bucket width for a measured window of `duration`: the smallest of 100 ms, 200 ms, 500 ms,
/// 1 s, 2 s, 5 s, 10 s, ... giving at most `MAX_BUCKETS` buckets.
pub fn width_for(duration: Duration) -> Duration {
    let mut unit = 100u64; // ms
    loop {
        for m in [1u64, 2, 5] {
            let w = unit * m;
            if duration.as_millis() as u64 <= w * MAX_BUCKETS {
                return Duration::from_millis(w);
            }
        }
        unit = unit.saturating_mul(10);
    }
}

impl Timeline {
    pub fn new(duration: Duration) -> Timeline {
        let width = width_for(duration);
        let n = duration.as_nanos().div_ceil(width.as_nanos()).max(1) as usize;
        Timeline {
            width,
            buckets: vec![None; n],
        }
    }

    fn index(&self, offset: Duration) -> usize {
        let i = (offset.as_nanos() / self.width.as_nanos()) as usize;
        i.min(self.buckets.len().saturating_sub(1))
    }

    fn bucket(&mut self, offset: Duration) -> &mut Bucket {
        let i = self.index(offset);
        self.buckets[i].get_or_insert_with(Bucket::new)
    }

    /// A response for the request scheduled `offset` after the window start. `ok` is false for
    /// a non-2xx status.
    pub fn record_response(&mut self, offset: Duration, latency_us: u64, ok: bool) {
        let b = self.bucket(offset);
        b.hist
            .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
        b.completed += 1;
        if !ok {
            b.errors += 1;
        }
    }

    /// A request scheduled `offset` after the window start that got no response.
    pub fn record_failure(&mut self, offset: Duration) {
        self.bucket(offset).errors += 1;
    }

    /// Add another thread's timeline (same duration, hence same width and length).
    pub fn merge(&mut self, o: &Timeline) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), None);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&o.buckets) {
            if let Some(t) = theirs {
                mine.get_or_insert_with(Bucket::new).merge(t);
            }
        }
    }

    /// Interval of the series: one second, or the bucket width when buckets are wider.
    pub fn interval(&self) -> Duration {
        self.width.max(Duration::from_secs(1))
    }

    /// Per-interval series (see `interval`), one point per interval including empty ones.
    pub fn series(&self) -> Vec<Point> {
        let per = (self.interval().as_nanos() / self.width.as_nanos()).max(1) as usize;
        self.buckets
            .chunks(per)
            .enumerate()
            .map(|(i, chunk)| {
                let mut acc = Bucket::new();
                for b in chunk.iter().flatten() {
                    acc.merge(b);
                }
                let q = |q: f64| {
                    if acc.hist.is_empty() {
                        0.0
                    } else {
                        acc.hist.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                Point {
                    t: i as f64 * self.interval().as_secs_f64(),
                    completed: acc.completed,
                    errors: acc.errors,
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                    max_ms: acc.hist.max() as f64 / 1000.0,
                }
            })
            .collect()
    }

    /// Split into (steady, churn): a bucket is churn phase when it overlaps
    /// `[e, e + window)` for some event offset `e` (see the module docs).
    pub fn split(&self, events: &[Duration], window: Duration) -> (Phase, Phase) {
        let (mut steady, mut churn) = (Phase::new(), Phase::new());
        let w = self.width.as_nanos();
        for (i, b) in self.buckets.iter().enumerate() {
            let (start, end) = (i as u128 * w, (i as u128 + 1) * w);
            let in_churn = events.iter().any(|e| {
                let (es, ee) = (e.as_nanos(), e.as_nanos() + window.as_nanos());
                start < ee && es < end
            });
            let phase = if in_churn { &mut churn } else { &mut steady };
            phase.seconds += self.width.as_secs_f64();
            if let Some(b) = b {
                if phase.hist.add(&b.hist).is_err() {
                    for v in b.hist.iter_recorded() {
                        phase
                            .hist
                            .saturating_record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
                phase.completed += b.completed;
                phase.errors += b.errors;
            }
        }
        (steady, churn)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn widths_keep_bucket_count_bounded_and_align_with_seconds() {
        assert_eq!(width_for(Duration::from_secs(10)), ms(100));
        assert_eq!(width_for(Duration::from_secs(60)), ms(100));
        assert_eq!(width_for(Duration::from_secs(61)), ms(200));
        assert_eq!(width_for(Duration::from_secs(300)), ms(500));
        assert_eq!(
            width_for(Duration::from_secs(3600)),
            Duration::from_secs(10)
        );
        for secs in [1, 59, 600, 7200, 86_400] {
            let w = width_for(Duration::from_secs(secs));
            let per_s = 1000 % w.as_millis() == 0 || w.as_millis() % 1000 == 0;
            assert!(per_s, "{w:?} does not align with seconds");
            assert!(secs * 1000 / w.as_millis() as u64 <= MAX_BUCKETS);
        }
    }

    #[test]
    fn series_has_one_point_per_second_with_counts_and_quantiles() {
        let mut t = Timeline::new(Duration::from_secs(3));
        // Second 0: 100 requests at 1 ms. Second 1: empty. Second 2: 99 at 2 ms, one at 300 ms,
        // plus one failure and one 503.
        for i in 0..100 {
            t.record_response(ms(i * 10), 1000, true);
        }
        for i in 0..99 {
            t.record_response(ms(2000 + i * 10), 2000, true);
        }
        t.record_response(ms(2999), 300_000, true);
        t.record_failure(ms(2500));
        t.record_response(ms(2600), 500, false);
        let s = t.series();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].completed, s[0].errors), (100, 0));
        assert!((s[0].p50_ms - 1.0).abs() < 0.02 && (s[0].max_ms - 1.0).abs() < 0.02);
        assert_eq!((s[1].completed, s[1].errors, s[1].max_ms), (0, 0, 0.0));
        assert_eq!((s[2].completed, s[2].errors), (101, 2));
        assert!((s[2].p50_ms - 2.0).abs() < 0.05, "{:?}", s[2]);
        assert!((s[2].max_ms - 300.0).abs() < 3.0, "{:?}", s[2]);
        assert_eq!(s[2].t, 2.0);
    }

    #[test]
    fn split_puts_requests_after_each_event_in_the_churn_phase() {
        // 10 s, 100 ms buckets, one request every 10 ms at 1 ms; requests in the 500 ms after
        // events at 2.0 s and 6.05 s take 50 ms instead.
        let events = [ms(2000), ms(6050)];
        let window = ms(500);
        let mut t = Timeline::new(Duration::from_secs(10));
        for i in 0..1000u64 {
            let at = ms(i * 10);
            let slow = events.iter().any(|e| at >= *e && at < *e + window);
            t.record_response(at, if slow { 50_000 } else { 1000 }, true);
        }
        t.record_failure(ms(2100));
        t.record_failure(ms(9000));
        let (steady, churn) = t.split(&events, window);
        // Event 1 covers buckets 20..25 (5), event 2 covers 60..66 (6, it starts mid-bucket).
        assert!((churn.seconds - 1.1).abs() < 1e-9, "{}", churn.seconds);
        assert!((steady.seconds - 8.9).abs() < 1e-9, "{}", steady.seconds);
        assert_eq!(churn.completed, 110);
        assert_eq!(steady.completed, 890);
        assert_eq!((steady.errors, churn.errors), (1, 1));
        // All slow requests are in the churn phase; the steady tail never sees them.
        assert!((steady.max_ms() - 1.0).abs() < 0.02, "{}", steady.max_ms());
        assert!((churn.quantile_ms(0.5) - 50.0).abs() < 0.6);
        // Churn phase holds 100 slow requests and 10 fast ones (the first half of 6.0-6.1 s).
        assert!((churn.quantile_ms(0.05) - 1.0).abs() < 0.02);
        let (s2, c2) = t.split(&[], window);
        assert_eq!((s2.completed, c2.completed), (1000, 0));
    }

    #[test]
    fn merge_adds_threads() {
        let mut a = Timeline::new(Duration::from_secs(2));
        let mut b = Timeline::new(Duration::from_secs(2));
        a.record_response(ms(10), 1000, true);
        b.record_response(ms(20), 3000, true);
        b.record_failure(ms(1500));
        a.merge(&b);
        let s = a.series();
        assert_eq!((s[0].completed, s[1].errors), (2, 1));
        assert!((s[0].max_ms - 3.0).abs() < 0.05);
        // Offsets past the window (late closed-loop completions) land in the last bucket.
        a.record_failure(Duration::from_secs(99));
        assert_eq!(a.series()[1].errors, 2);
    }
}
