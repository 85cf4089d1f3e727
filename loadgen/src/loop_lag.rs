//! The proxy's event-loop lag beside the client's latency (`--loop-stats ADMIN_URL`).
//!
//! While the run is measured, a thread scrapes the proxy's
//! `/stats/prometheus?filter=dispatcher.poll_delay_us` (Ringway with `enable_dispatcher_stats`,
//! or Envoy) once per timeline interval. The histogram is cumulative, so each interval's lag is
//! the difference of two scrapes, bucket by bucket, summed over the workers; what is kept per
//! interval is the bucket bound under which 99% of the loop's timer wake-ups fell and the bound
//! of the latest one. Bounds, not exact values: Prometheus buckets are all a scrape offers, and
//! they say "a worker was 10-25 ms late" well enough to match a spike in the latency chart with
//! a worker that did not come round.
//!
//! Scraping is a control-plane call on its own thread (the same blocking client as the churn
//! driver's), never on the load path; a failed scrape leaves a gap and is counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::Endpoint;

/// The metric scraped: Envoy's (and Ringway's) worker poll-delay histogram, in microseconds.
const METRIC: &str = "envoy_listener_manager_dispatcher_poll_delay_us_bucket";

/// One interval's loop lag, in milliseconds (bucket upper bounds; `f64::INFINITY` past the last).
#[derive(Debug, Clone, PartialEq)]
pub struct LagPoint {
    /// Interval end, seconds since the measured window's start.
    pub t: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Timer wake-ups observed in the interval (over all workers).
    pub samples: u64,
}

/// What the scraper saw over the run.
#[derive(Debug, Default, Clone)]
pub struct LoopLag {
    pub points: Vec<LagPoint>,
    pub failed_scrapes: u64,
}

/// Cumulative bucket counts by upper bound (µs), summed over every series of the metric.
type Buckets = BTreeMap<u64, u64>;

/// Parses the bucket lines of [`METRIC`]; `+Inf` is `u64::MAX`.
pub fn parse_buckets(text: &str) -> Buckets {
    let mut b = Buckets::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let Some(le_at) = rest.find("le=\"") else {
            continue;
        };
        let le_text = &rest[le_at + 4..];
        let Some(end) = le_text.find('"') else {
            continue;
        };
        let le = match &le_text[..end] {
            "+Inf" => u64::MAX,
            v => match v.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => f.ceil() as u64,
                _ => continue,
            },
        };
        let Some(count) = rest
            .rsplit(' ')
            .next()
            .and_then(|c| c.trim().parse::<f64>().ok())
        else {
            continue;
        };
        *b.entry(le).or_default() += count as u64;
    }
    b
}

/// The lag between two scrapes: (p99 bound, max bound, samples), in µs; `None` when no
/// wake-up happened in between.
pub fn lag_between(before: &Buckets, after: &Buckets) -> Option<(u64, u64, u64)> {
    let delta = |le: &u64, n: &u64| n.saturating_sub(before.get(le).copied().unwrap_or(0));
    let total = after.get(&u64::MAX).map(|n| delta(&u64::MAX, n))?;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    let p99 = after
        .iter()
        .find(|(le, n)| delta(le, n) >= want)
        .map(|(le, _)| *le)?;
    let max = after
        .iter()
        .find(|(le, n)| delta(le, n) >= total)
        .map(|(le, _)| *le)?;
    Some((p99, max, total))
}

fn us_to_ms(us: u64) -> f64 {
    if us == u64::MAX {
        f64::INFINITY
    } else {
        us as f64 / 1000.0
    }
}

/// A running scraper; [`Scraper::finish`] stops it and returns what it saw.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<LoopLag>,
}

impl Scraper {
    /// Scrapes `admin` every `interval` from `origin` (the measured window's start) to `end`.
    pub fn start(
        admin: Endpoint,
        origin: Instant,
        end: Instant,
        interval: Duration,
    ) -> Result<Scraper, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("loop-stats".into())
            .spawn(move || scrape_loop(&admin, origin, end, interval, &flag))
            .map_err(|e| format!("cannot spawn the loop-stats thread: {e}"))?;
        Ok(Scraper { stop, handle })
    }

    pub fn finish(self) -> LoopLag {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn scrape(admin: &Endpoint) -> Option<Buckets> {
    match admin.call(
        "GET",
        "/stats/prometheus?filter=dispatcher.poll_delay_us",
        None,
    ) {
        Ok((200, body)) => Some(parse_buckets(&body)),
        _ => None,
    }
}

fn scrape_loop(
    admin: &Endpoint,
    origin: Instant,
    end: Instant,
    interval: Duration,
    stop: &AtomicBool,
) -> LoopLag {
    let mut lag = LoopLag::default();
    let sleep_until = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
    sleep_until(origin);
    let mut before = scrape(admin);
    let mut k = 1u32;
    while !stop.load(Ordering::Relaxed) {
        let at = origin + interval * k;
        if at > end + interval {
            break;
        }
        sleep_until(at);
        let now = scrape(admin);
        match (&before, &now) {
            (Some(b), Some(a)) => {
                if let Some((p99, max, n)) = lag_between(b, a) {
                    lag.points.push(LagPoint {
                        t: (at - origin).as_secs_f64(),
                        p99_ms: us_to_ms(p99),
                        max_ms: us_to_ms(max),
                        samples: n,
                    });
                }
            }
            _ => lag.failed_scrapes += 1,
        }
        if now.is_some() {
            before = now;
        }
        k += 1;
    }
    lag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape_text(counts: &[(&str, u64)], worker1_extra: u64) -> String {
        let mut t =
            String::from("# TYPE envoy_listener_manager_dispatcher_poll_delay_us histogram\n");
        for (le, n) in counts {
            t.push_str(&format!(
                "{METRIC}{{envoy_worker_id=\"0\",le=\"{le}\"}} {n}\n{METRIC}{{envoy_worker_id=\"1\",le=\"{le}\"}} {}\n",
                n + worker1_extra
            ));
        }
        t.push_str(
            "envoy_listener_manager_dispatcher_poll_delay_us_count{envoy_worker_id=\"0\"} 9\n",
        );
        t
    }

    #[test]
    fn buckets_are_summed_over_workers() {
        let b = parse_buckets(&scrape_text(&[("500", 3), ("1000", 5), ("+Inf", 6)], 1));
        assert_eq!(b.get(&500), Some(&7));
        assert_eq!(b.get(&1000), Some(&11));
        assert_eq!(b.get(&u64::MAX), Some(&13));
        assert_eq!(b.len(), 3, "only bucket lines count");
    }

    #[test]
    fn an_interval_lag_is_the_difference_of_two_scrapes() {
        let before = parse_buckets(&scrape_text(
            &[("500", 100), ("1000", 100), ("25000", 100), ("+Inf", 100)],
            0,
        ));
        // 200 new wake-ups per worker: 198 under 0.5 ms, one 0.5-1 ms, one 10-25 ms.
        let after = parse_buckets(&scrape_text(
            &[("500", 298), ("1000", 299), ("25000", 300), ("+Inf", 300)],
            0,
        ));
        assert_eq!(lag_between(&before, &after), Some((500, 25000, 400)));
        assert_eq!(lag_between(&after, &after), None, "no wake-up, no point");
    }

    #[test]
    fn a_stall_past_the_last_bound_is_infinite() {
        let before = parse_buckets(&scrape_text(&[("1000", 10), ("+Inf", 10)], 0));
        let after = parse_buckets(&scrape_text(&[("1000", 10), ("+Inf", 12)], 0));
        let (p99, max, n) = lag_between(&before, &after).unwrap_or_default();
        assert_eq!(
            (us_to_ms(p99), us_to_ms(max), n),
            (f64::INFINITY, f64::INFINITY, 4)
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let t = format!(
            "{METRIC}{{le=\"x\"}} 1\n{METRIC}{{le=\"5\"}} nope\n{METRIC} 3\n{METRIC}{{le=\"5\"}} 2\n"
        );
        assert_eq!(parse_buckets(&t), Buckets::from([(5, 2)]));
    }
}
