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

use crate::churn::{Action, Event};
use crate::svg;
use crate::timeline::{Phase, Timeline};
pub use crate::units::{new_histogram, MAX_LATENCY_US};

/// Churn phase length after each churn action (see `timeline` for the exact definition).
pub const DEFAULT_CHURN_WINDOW: Duration = Duration::from_secs(1);
/// Status codes always present in the JSON error breakdown, zero or not, so runs compare
/// column by column.
const ALWAYS_REPORTED_STATUS: [u16; 4] = [500, 502, 503, 504];

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
    /// "http/1.1", "h2c", "http/1.1+tls" or "h2+tls".
    pub protocol: String,
    /// (full, resumed) TLS handshakes over the whole run (warmup included); `None` without TLS.
    pub tls_handshakes: Option<(u64, u64)>,
    /// "open" or "closed".
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub driver: String,
    pub rec: Recorder,
    /// Results by scheduled time (series and phase split).
    pub timeline: Timeline,
    /// Churn actions, in order (empty without churn).
    pub churn: Vec<Event>,
    /// Churn phase length after each action.
    pub churn_window: Duration,
    /// The proxy's loop lag per interval (`--loop-stats`).
    pub loop_lag: Option<crate::loop_lag::LoopLag>,
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
        let _ = writeln!(s, "target: {} ({})", self.url, self.protocol);
        if let Some((full, resumed)) = self.tls_handshakes {
            let _ = writeln!(s, "tls handshakes: {full} full, {resumed} resumed");
        }
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
        self.churn_text(&mut s);
        self.loop_lag_text(&mut s);
        s
    }

    /// Steady-state vs churn-phase aggregates (churn = buckets overlapping an action's window).
    pub fn phases(&self) -> (Phase, Phase) {
        let at: Vec<Duration> = self.churn.iter().map(|e| e.at).collect();
        self.timeline.split(&at, self.churn_window)
    }

    /// Churn actions that failed.
    pub fn churn_failures(&self) -> usize {
        self.churn.iter().filter(|e| !e.ok).count()
    }

    /// Per-interval table, churn log and phase split.
    fn churn_text(&self, s: &mut String) {
        let interval = self.timeline.interval().as_secs_f64();
        let _ = writeln!(
            s,
            "\nper {interval}s (by scheduled time):\n{:>7} {:>9} {:>7} {:>9} {:>9} {:>9}",
            "t s", "completed", "errors", "p50 ms", "p99 ms", "max ms"
        );
        for p in self.timeline.series() {
            let mark = if self
                .churn
                .iter()
                .any(|e| (p.t..p.t + interval).contains(&e.at.as_secs_f64()))
            {
                "  *churn"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:>7.1} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.3}{mark}",
                p.t, p.completed, p.errors, p.p50_ms, p.p99_ms, p.max_ms
            );
        }
        if self.churn.is_empty() {
            return;
        }
        let _ = writeln!(s, "\nchurn actions ({}):", self.churn.len());
        for e in &self.churn {
            let _ = writeln!(
                s,
                "  {:>8.3}s  {:<6} {:<21} {}{}",
                e.at.as_secs_f64(),
                e.action.as_str(),
                e.endpoint.to_string(),
                if e.ok { "ok " } else { "FAILED " },
                e.detail
            );
        }
        let (steady, churn) = self.phases();
        let _ = writeln!(
            s,
            "\nphase split (churn phase = requests scheduled within {:.1}s after an action, whole {} ms buckets):",
            self.churn_window.as_secs_f64(),
            self.timeline.width.as_millis()
        );
        let _ = writeln!(
            s,
            "  {:<7} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "phase", "secs", "completed", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (name, p) in [("steady", &steady), ("churn", &churn)] {
            let _ = writeln!(
                s,
                "  {:<7} {:>7.1} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name,
                p.seconds,
                p.completed,
                p.errors,
                p.quantile_ms(0.5),
                p.quantile_ms(0.99),
                p.quantile_ms(0.999),
                p.max_ms()
            );
        }
        let failed = self.churn_failures();
        if failed > 0 {
            let _ = writeln!(
                s,
                "\n!!! {failed} of {} churn actions FAILED: the endpoints were not churned as planned, \
                 so the churn-phase numbers above do not measure churn. See the FAILED lines.",
                self.churn.len()
            );
        }
    }

    /// The proxy's loop lag (`--loop-stats`): its worst intervals, so a latency spike can be
    /// matched with a worker that was late.
    fn loop_lag_text(&self, s: &mut String) {
        let Some(lag) = &self.loop_lag else {
            return;
        };
        let fmt = |v: f64| {
            if v.is_finite() {
                format!("<={v}")
            } else {
                "over the last bucket".to_string()
            }
        };
        let _ = writeln!(
            s,
            "
proxy loop lag (poll_delay_us, per {:.1}s interval, bucket bounds in ms): {} intervals, {} failed scrapes",
            self.timeline.interval().as_secs_f64(),
            lag.points.len(),
            lag.failed_scrapes
        );
        let mut worst: Vec<&crate::loop_lag::LagPoint> = lag.points.iter().collect();
        worst.sort_by(|a, b| {
            b.max_ms
                .total_cmp(&a.max_ms)
                .then(b.p99_ms.total_cmp(&a.p99_ms))
        });
        for p in worst.iter().take(5) {
            let _ = writeln!(
                s,
                "  t={:>6.1}s  p99 {:>10}  max {:>10}  ({} wake-ups)",
                p.t,
                fmt(p.p99_ms),
                fmt(p.max_ms),
                p.samples
            );
        }
    }

    /// Write the `--report` chart: HTML with an embedded SVG for `.html`/`.htm`, SVG otherwise.
    pub fn write_report(&self, path: &std::path::Path) -> Result<(), String> {
        let marks: Vec<svg::Mark> = self
            .churn
            .iter()
            .map(|e| svg::Mark {
                t: e.at.as_secs_f64(),
                label: format!(
                    "{:.3}s {} {}{}",
                    e.at.as_secs_f64(),
                    e.action.as_str(),
                    e.endpoint,
                    if e.ok {
                        String::new()
                    } else {
                        format!(" FAILED: {}", e.detail)
                    }
                ),
                down: matches!(e.action, Action::Remove | Action::Stop),
                failed: !e.ok,
            })
            .collect();
        let rate = match self.target_rate {
            Some(r) => format!("{r:.0} req/s open loop"),
            None => "closed loop".into(),
        };
        let title = format!(
            "{} - {rate}, {} churn actions ({} failed), {} errors",
            self.url,
            self.churn.len(),
            self.churn_failures(),
            self.rec.errors.total()
        );
        let chart = svg::chart(
            &title,
            &self.timeline.series(),
            self.timeline.interval().as_secs_f64(),
            self.duration.as_secs_f64(),
            &marks,
            self.loop_lag.as_ref().map_or(&[][..], |l| &l.points),
        );
        let is_html = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let text = if is_html {
            svg::html(&title, &chart, &self.to_text())
        } else {
            chart
        };
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.rec;
        let mut lat = serde_json::Map::new();
        for (label, q) in PERCENTILES {
            lat.insert(label.to_string(), json!(round3(self.percentile_ms(q))));
        }
        lat.insert("max".into(), json!(round3(self.max_ms())));
        lat.insert("mean".into(), json!(round3(r.latency.mean() / 1000.0)));
        let mut status: serde_json::Map<String, serde_json::Value> = ALWAYS_REPORTED_STATUS
            .iter()
            .map(|k| (k.to_string(), json!(0)))
            .collect();
        for (k, v) in &r.errors.status {
            status.insert(k.to_string(), json!(v));
        }
        let (s4, s5) = r
            .errors
            .status
            .iter()
            .fold((0u64, 0u64), |(a, b), (k, v)| match k {
                400..=499 => (a + v, b),
                500..=599 => (a, b + v),
                _ => (a, b),
            });
        let series: Vec<serde_json::Value> = self
            .timeline
            .series()
            .iter()
            .map(|p| {
                json!({
                    "t_s": p.t, "completed": p.completed, "errors": p.errors,
                    "p50_ms": round3(p.p50_ms), "p99_ms": round3(p.p99_ms), "max_ms": round3(p.max_ms),
                })
            })
            .collect();
        let events: Vec<serde_json::Value> = self
            .churn
            .iter()
            .map(|e| {
                json!({
                    "t_s": round3(e.at.as_secs_f64()), "action": e.action.as_str(),
                    "endpoint": e.endpoint.to_string(), "ok": e.ok, "detail": e.detail,
                })
            })
            .collect();
        let (steady, churn) = self.phases();
        let phase = |p: &Phase| {
            json!({
                "seconds": round3(p.seconds), "completed": p.completed, "errors": p.errors,
                "p50_ms": round3(p.quantile_ms(0.5)), "p90_ms": round3(p.quantile_ms(0.9)),
                "p99_ms": round3(p.quantile_ms(0.99)), "p99_9_ms": round3(p.quantile_ms(0.999)),
                "max_ms": round3(p.max_ms()),
            })
        };
        json!({
            "url": self.url,
            "protocol": self.protocol,
            "tls_handshakes": self.tls_handshakes.map(|(full, resumed)| json!({"full": full, "resumed": resumed})),
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
                "status_4xx": s4,
                "status_5xx": s5,
                "status": status,
            },
            "series_interval_s": self.timeline.interval().as_secs_f64(),
            "series": series,
            "churn": {
                "window_s": self.churn_window.as_secs_f64(),
                "bucket_ms": self.timeline.width.as_millis() as u64,
                "definition": "a request is in the churn phase when its scheduled time falls in a bucket overlapping [action, action + window) for any churn action",
                "actions": self.churn.len(),
                "failed_actions": self.churn_failures(),
                "events": events,
            },
            "phases": { "steady": phase(&steady), "churn": phase(&churn) },
            "loop_lag": self.loop_lag.as_ref().map(|l| json!({
                "metric": "poll_delay_us (bucket upper bounds, ms; null past the last bucket)",
                "failed_scrapes": l.failed_scrapes,
                "points": l.points.iter().map(|p| json!({
                    "t": p.t,
                    "p99_ms": p.p99_ms.is_finite().then_some(p.p99_ms),
                    "max_ms": p.max_ms.is_finite().then_some(p.max_ms),
                    "samples": p.samples,
                })).collect::<Vec<_>>(),
            })),
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
            protocol: "http/1.1".into(),
            tls_handshakes: None,
            mode: "open",
            target_rate: Some(100.0),
            connections: 1,
            threads: 1,
            duration: Duration::from_secs(10),
            driver: "test".into(),
            rec,
            timeline: Timeline::new(Duration::from_secs(10)),
            churn: Vec::new(),
            churn_window: DEFAULT_CHURN_WINDOW,
            loop_lag: None,
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
