//! When each request of one connection is due, as an offset from the run's start `t0`.
//!
//! This is the heart of the open-loop model: the schedule is fixed before the run and never
//! looks at responses, so a slow server cannot slow the offered load down (no coordinated
//! omission). The module is pure (no clocks, no I/O) so due times can be tested exactly.
//!
//! The total rate is split evenly over all connections. With the uniform schedule, connection
//! `g` of `C` starts at phase `g / rate` and then ticks every `C / rate`, so the merged stream of
//! all connections is evenly spaced at `1 / rate`. With `--poisson`, each connection is an
//! independent Poisson process of rate `rate / C` (gaps `-ln(U) / (rate / C)`); the sum of
//! independent Poisson processes is a Poisson process of the total rate.

use std::time::Duration;

/// Arrival process of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced requests.
    Uniform,
    /// Exponentially distributed gaps (memoryless arrivals, as from many independent clients).
    Poisson,
}

/// Due times of one connection's requests, in order. Offsets are kept in f64 nanoseconds so a
/// rate that does not divide a second exactly does not drift over millions of requests.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    /// Mean gap between two requests of this connection, in nanoseconds.
    gap_ns: f64,
    /// Offset of the next request, in nanoseconds from t0.
    next_ns: f64,
    /// Index of the next request (used by the uniform schedule to avoid summing rounding error).
    index: u64,
    phase_ns: f64,
    rng: SplitMix64,
}

impl Schedule {
    /// Schedule for connection `conn_index` of `connections`, sharing `total_rate` req/s.
    /// `seed` makes Poisson runs reproducible; each connection derives its own stream from it.
    pub fn new(
        arrivals: Arrivals,
        total_rate: f64,
        connections: usize,
        conn_index: usize,
        seed: u64,
    ) -> Schedule {
        let connections = connections.max(1) as f64;
        let total_rate = if total_rate > 0.0 { total_rate } else { 1.0 };
        let gap_ns = 1e9 * connections / total_rate;
        let mut rng =
            SplitMix64::new(seed ^ (conn_index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let phase_ns = match arrivals {
            // Stagger connections so the merged stream is evenly spaced.
            Arrivals::Uniform => 1e9 * conn_index as f64 / total_rate,
            // The first arrival of a Poisson process is itself one exponential gap away.
            Arrivals::Poisson => exp_gap(&mut rng, gap_ns),
        };
        Schedule {
            arrivals,
            gap_ns,
            next_ns: phase_ns,
            index: 0,
            phase_ns,
            rng,
        }
    }

    /// Offset from t0 at which the next request is due; advances the schedule.
    pub fn next_due(&mut self) -> Duration {
        let due = self.next_ns;
        self.index += 1;
        self.next_ns = match self.arrivals {
            Arrivals::Uniform => self.phase_ns + self.index as f64 * self.gap_ns,
            Arrivals::Poisson => self.next_ns + exp_gap(&mut self.rng, self.gap_ns),
        };
        Duration::from_nanos(due as u64)
    }

    /// Offset of the next request without advancing.
    pub fn peek(&self) -> Duration {
        Duration::from_nanos(self.next_ns as u64)
    }
}

/// One exponential gap with mean `mean_ns`: `-ln(U) * mean`, U uniform in (0, 1].
fn exp_gap(rng: &mut SplitMix64, mean_ns: f64) -> f64 {
    -rng.next_open01().ln() * mean_ns
}

/// SplitMix64: tiny, fast, statistically fine for arrival times, and dependency-free so the
/// schedule stays reproducible across crate upgrades.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so `ln` is always finite.
    pub fn next_open01(&mut self) -> f64 {
        // 53 random mantissa bits, shifted by one so the range is [1, 2^53] / 2^53.
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uniform_single_connection_ticks_at_one_over_rate() {
        let mut s = Schedule::new(Arrivals::Uniform, 1000.0, 1, 0, 1);
        let due: Vec<u64> = (0..4).map(|_| s.next_due().as_micros() as u64).collect();
        assert_eq!(due, vec![0, 1000, 2000, 3000]);
    }

    #[test]
    fn uniform_connections_interleave_into_even_stream() {
        // 4 connections at 1000 req/s total: each ticks every 4 ms, staggered by 1 ms.
        let mut all = Vec::new();
        for c in 0..4 {
            let mut s = Schedule::new(Arrivals::Uniform, 1000.0, 4, c, 1);
            for _ in 0..3 {
                all.push(s.next_due().as_micros() as u64);
            }
        }
        all.sort_unstable();
        let expected: Vec<u64> = (0..12).map(|i| i * 1000).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn uniform_does_not_drift_with_inexact_gaps() {
        // 3 req/s: the gap is 333_333_333.33 ns; request 3_000_000 must be due at 1_000_000 s.
        let mut s = Schedule::new(Arrivals::Uniform, 3.0, 1, 0, 1);
        for _ in 0..3_000_000 {
            s.next_due();
        }
        let d = s.peek().as_secs_f64();
        assert!((d - 1_000_000.0).abs() < 1e-3, "drifted to {d}");
    }

    #[test]
    fn poisson_mean_gap_matches_rate_and_is_reproducible() {
        let n = 200_000;
        let mut a = Schedule::new(Arrivals::Poisson, 10_000.0, 10, 3, 42);
        let mut b = Schedule::new(Arrivals::Poisson, 10_000.0, 10, 3, 42);
        let mut prev = Duration::ZERO;
        let mut last = Duration::ZERO;
        for _ in 0..n {
            let d = a.next_due();
            assert_eq!(d, b.next_due());
            assert!(d >= prev, "due times must be non-decreasing");
            prev = d;
            last = d;
        }
        // Per-connection rate 1000/s: mean gap 1 ms; the sample mean of 200k gaps is within 1%.
        let mean_ms = last.as_secs_f64() * 1000.0 / n as f64;
        assert!((mean_ms - 1.0).abs() < 0.01, "mean gap {mean_ms} ms");
    }

    #[test]
    fn poisson_streams_differ_per_connection() {
        let mut a = Schedule::new(Arrivals::Poisson, 1000.0, 2, 0, 7);
        let mut b = Schedule::new(Arrivals::Poisson, 1000.0, 2, 1, 7);
        let va: Vec<Duration> = (0..5).map(|_| a.next_due()).collect();
        let vb: Vec<Duration> = (0..5).map(|_| b.next_due()).collect();
        assert_ne!(va, vb);
    }

    #[test]
    fn open01_never_zero() {
        let mut r = SplitMix64::new(0);
        for _ in 0..100_000 {
            let u = r.next_open01();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}
