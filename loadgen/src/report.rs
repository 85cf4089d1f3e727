//! Run results: per-connection recorders (merged per thread, then per run), the summary
//! (rates, latency percentiles, errors by kind) and its terminal and JSON renderings.
//!
//! Recorders are plain owned values, one per connection task, merged once at the end: no locks
//! or shared cells on the hot path. Latencies are recorded in microseconds into an
//! HdrHistogram covering 1 µs .. 60 s at 3 significant digits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// Highest latency the histogram tracks; larger values are clamped to it (and show as max).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// New latency histogram (µs, 1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, 3 digits): this cannot fail, and no
    // input reaches it.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// Errors by kind. Status errors keep their code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    pub connect: u64,
    /// Connection reset or closed by the peer while a request was outstanding.
    pub reset: u64,
    pub timeout: u64,
    /// Malformed response (framing the generator cannot trust).
    pub protocol: u64,
    /// Non-2xx responses by status code.
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.protocol + self.status.values().sum::<u64>()
    }

    fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.protocol += o.protocol;
        for (k, v) in &o.status {
            *self.status.entry(*k).or_default() += v;
        }
    }
}

/// What one connection (or a merge of several) observed in the measured window.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    /// How late the generator itself sent requests whose connection was idle (timer wake-up
    /// slack, an overloaded generator thread). Not part of latency; a health indicator.
    pub send_lag: Histogram<u64>,
    pub sent: u64,
    pub completed: u64,
    /// Requests due in the window that were never sent (run ended while they waited).
    pub unsent: u64,
    pub errors: Errors,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            latency: new_histogram(),
            send_lag: new_histogram(),
            sent: 0,
            completed: 0,
            unsent: 0,
            errors: Errors::default(),
        }
    }

    pub fn record_latency(&mut self, d: Duration) {
        self.latency.saturating_record(us(d));
    }

    pub fn record_send_lag(&mut self, d: Duration) {
        self.send_lag.saturating_record(us(d));
    }

    pub fn merge(&mut self, o: &Recorder) {
        // Both histograms share bounds, so add cannot fail; saturate instead of dropping data.
        if self.latency.add(&o.latency).is_err() {
            for v in o.latency.iter_recorded() {
                self.latency
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        if self.send_lag.add(&o.send_lag).is_err() {
            for v in o.send_lag.iter_recorded() {
                self.send_lag
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sent += o.sent;
        self.completed += o.completed;
        self.unsent += o.unsent;
        self.errors.merge(&o.errors);
    }
}

fn us(d: Duration) -> u64 {
    (d.as_micros().min(u128::from(MAX_LATENCY_US)) as u64).max(1)
}

/// Percentiles reported, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// The run's summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub url: String,
    /// "open" or "closed".
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub driver: String,
    pub rec: Recorder,
}

impl Summary {
    pub fn achieved_rate(&self) -> f64 {
        self.rec.completed as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q` in milliseconds (0 when nothing was recorded).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        ms(self.rec.latency.value_at_quantile(q))
    }

    pub fn max_ms(&self) -> f64 {
        ms(self.rec.latency.max())
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let r = &self.rec;
        let rate = match self.target_rate {
            Some(t) => format!("{t:.0} req/s target"),
            None => "max throughput".to_string(),
        };
        let _ = writeln!(
            s,
            "{} loop, {rate}, {} connections, {} threads, {:.1}s measured, driver {}",
            self.mode,
            self.connections,
            self.threads,
            self.duration.as_secs_f64(),
            self.driver
        );
        let _ = writeln!(s, "target: {}", self.url);
        let _ = writeln!(
            s,
            "requests: sent {}  completed {}  unsent {}  achieved {:.1} req/s",
            r.sent,
            r.completed,
            r.unsent,
            self.achieved_rate()
        );
        let _ = write!(s, "latency ms:");
        for (label, q) in PERCENTILES {
            let _ = write!(s, "  {label} {:.3}", self.percentile_ms(q));
        }
        let _ = writeln!(s, "  max {:.3}", self.max_ms());
        let e = &r.errors;
        let _ = write!(
            s,
            "errors: {}  (connect {}  reset/closed {}  timeout {}  protocol {}",
            e.total(),
            e.connect,
            e.reset,
            e.timeout,
            e.protocol
        );
        for (code, n) in &e.status {
            let _ = write!(s, "  status {code}: {n}");
        }
        let _ = writeln!(s, ")");
        if !r.send_lag.is_empty() {
            let _ = writeln!(
                s,
                "generator send lag ms: p99 {:.3}  max {:.3}",
                ms(r.send_lag.value_at_quantile(0.99)),
                ms(r.send_lag.max())
            );
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.rec;
        let mut lat = serde_json::Map::new();
        for (label, q) in PERCENTILES {
            lat.insert(label.to_string(), json!(round3(self.percentile_ms(q))));
        }
        lat.insert("max".into(), json!(round3(self.max_ms())));
        lat.insert("mean".into(), json!(round3(r.latency.mean() / 1000.0)));
        let status: serde_json::Map<String, serde_json::Value> = r
            .errors
            .status
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "url": self.url,
            "mode": self.mode,
            "target_rate": self.target_rate,
            "connections": self.connections,
            "threads": self.threads,
            "duration_s": self.duration.as_secs_f64(),
            "driver": self.driver,
            "sent": r.sent,
            "completed": r.completed,
            "unsent": r.unsent,
            "achieved_rate": round3(self.achieved_rate()),
            "latency_ms": lat,
            "send_lag_ms": {
                "p99": round3(ms(r.send_lag.value_at_quantile(0.99))),
                "max": round3(ms(r.send_lag.max())),
            },
            "errors": {
                "total": r.errors.total(),
                "connect": r.errors.connect,
                "reset": r.errors.reset,
                "timeout": r.errors.timeout,
                "protocol": r.errors.protocol,
                "status": status,
            },
        })
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn summary(rec: Recorder) -> Summary {
        Summary {
            url: "http://x/".into(),
            mode: "open",
            target_rate: Some(100.0),
            connections: 1,
            threads: 1,
            duration: Duration::from_secs(10),
            driver: "test".into(),
            rec,
        }
    }

    #[test]
    fn percentiles_of_known_uniform_input() {
        // 1..=10_000 µs: the q-quantile is q * 10 ms, within HdrHistogram's 3-digit precision.
        let mut r = Recorder::new();
        for v in 1..=10_000u64 {
            r.record_latency(Duration::from_micros(v));
        }
        r.completed = 10_000;
        let s = summary(r);
        for (q, want) in [
            (0.5, 5.0),
            (0.9, 9.0),
            (0.99, 9.9),
            (0.999, 9.99),
            (0.9999, 9.999),
        ] {
            let got = s.percentile_ms(q);
            assert!(
                (got - want).abs() <= want * 0.001 + 0.001,
                "q={q}: {got} vs {want}"
            );
        }
        assert!((s.max_ms() - 10.0).abs() < 0.01);
        assert!((s.achieved_rate() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn one_outlier_in_a_thousand_moves_p999_not_p99() {
        let mut r = Recorder::new();
        for _ in 0..999 {
            r.record_latency(Duration::from_micros(100));
        }
        r.record_latency(Duration::from_millis(500));
        let s = summary(r);
        assert!((s.percentile_ms(0.99) - 0.1).abs() < 0.001);
        assert!((s.percentile_ms(0.9999) - 500.0).abs() < 1.0);
        assert!((s.max_ms() - 500.0).abs() < 1.0);
    }

    #[test]
    fn merge_adds_counts_and_errors_and_clamps_huge_values() {
        let mut a = Recorder::new();
        a.sent = 3;
        a.errors.status.insert(503, 2);
        a.record_latency(Duration::from_secs(3600));
        let mut b = Recorder::new();
        b.sent = 4;
        b.errors.timeout = 1;
        b.errors.status.insert(503, 1);
        b.errors.status.insert(404, 1);
        b.record_latency(Duration::from_nanos(10));
        a.merge(&b);
        assert_eq!(a.sent, 7);
        assert_eq!(a.errors.total(), 5);
        assert_eq!(a.errors.status.get(&503), Some(&3));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.latency.min(), 1);
        assert!(a.latency.max() >= MAX_LATENCY_US * 999 / 1000);
        let j = summary(a).to_json();
        assert_eq!(j["errors"]["status"]["503"], 3);
        assert_eq!(j["sent"], 7);
    }
}
