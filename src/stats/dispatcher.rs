//! Event-loop health, as Envoy's dispatcher stats and watchdog define it: how long a worker's
//! loop takes to come round, how late it wakes for a timer, and when it stopped coming round
//! at all.
//!
//! A worker's tail latency is mostly time a request waited for its loop to finish something
//! else, so the loop's own figures are what explains a slow percentile. monoio has no hook per
//! loop iteration, so each worker runs a small probe task ([`LoopProbe`], driven by
//! `proxy::worker_loop`) that sleeps [`PROBE_PERIOD`] at a time:
//!
//! - `poll_delay_us`: how much later than its deadline the probe's timer was handled. monoio's
//!   timer wheel rounds each deadline up to its millisecond tick; the probe's deadlines keep one
//!   phase against that tick, so the rounding is the same constant for every sample and the
//!   smallest delay seen estimates it. What is recorded is the delay above that floor.
//! - `loop_duration_us`: after each wake the probe yields once and measures until it runs again:
//!   one pass of the loop over every task that was ready meanwhile. A sample every period, not
//!   every iteration, so recording costs nothing on the request path.
//!
//! Both are recorded only with `enable_dispatcher_stats` (Envoy's switch). The probe always
//! touches the worker's heartbeat, which a watchdog thread ([`spawn_watchdog`]) reads: a worker
//! not seen for [`MISS_TIMEOUT`] counts a `watchdog_miss`, for [`MEGAMISS_TIMEOUT`] a
//! `watchdog_mega_miss` (once each per stall, as Envoy's watchdog counts them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each worker's probe wakes.
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);
/// Envoy's default `worker_watchdog.miss_timeout`.
pub const MISS_TIMEOUT: Duration = Duration::from_millis(200);
/// Envoy's default `worker_watchdog.megamiss_timeout`.
pub const MEGAMISS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the watchdog thread looks at the heartbeats.
const WATCHDOG_STEP: Duration = Duration::from_millis(25);

/// A heartbeat value: the worker has not started its loop yet.
const NOT_STARTED: u64 = 0;
/// A heartbeat value: the worker's loop has ended (it is not stalled, it is gone).
const STOPPED: u64 = u64::MAX;

/// The heartbeats and watchdog counters of every worker (read by `/stats`).
pub struct LoopHealth {
    epoch: Instant,
    /// Per worker: microseconds since `epoch` (plus one) of the probe's last run.
    heartbeat: Vec<AtomicU64>,
    miss: Vec<AtomicU64>,
    mega_miss: Vec<AtomicU64>,
}

impl LoopHealth {
    pub fn new(workers: usize, epoch: Instant) -> LoopHealth {
        let zeros = || (0..workers).map(|_| AtomicU64::new(0)).collect();
        LoopHealth {
            epoch,
            heartbeat: (0..workers).map(|_| AtomicU64::new(NOT_STARTED)).collect(),
            miss: zeros(),
            mega_miss: zeros(),
        }
    }

    /// The worker's loop ran its probe at `now`.
    pub fn touch(&self, worker: usize, now: Instant) {
        if let Some(h) = self.heartbeat.get(worker) {
            let us = now.saturating_duration_since(self.epoch).as_micros() as u64;
            h.store(us.saturating_add(1).min(STOPPED - 1), Ordering::Relaxed);
        }
    }

    /// The worker's loop has ended; the watchdog stops judging it.
    pub fn stop(&self, worker: usize) {
        if let Some(h) = self.heartbeat.get(worker) {
            h.store(STOPPED, Ordering::Relaxed);
        }
    }

    pub fn misses(&self, worker: usize) -> u64 {
        self.miss
            .get(worker)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn mega_misses(&self, worker: usize) -> u64 {
        self.mega_miss
            .get(worker)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn workers(&self) -> usize {
        self.heartbeat.len()
    }

    /// Judges every worker at `now`, counting new misses; `stalls` is the watchdog's memory of
    /// which stalls it already counted.
    fn step(&self, now: Instant, stalls: &mut [Stall]) {
        for (i, stall) in stalls.iter_mut().enumerate() {
            let beat = self.heartbeat[i].load(Ordering::Relaxed);
            let silent = match beat {
                NOT_STARTED | STOPPED => None,
                us => Some(
                    now.saturating_duration_since(self.epoch)
                        .saturating_sub(Duration::from_micros(us - 1)),
                ),
            };
            let verdict = judge(silent, stall);
            if verdict.miss {
                self.miss[i].fetch_add(1, Ordering::Relaxed);
            }
            if verdict.mega_miss {
                self.mega_miss[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the watchdog already counted of a worker's current stall.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    miss_counted: bool,
    mega_counted: bool,
}

/// Which counters a step adds to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub miss: bool,
    pub mega_miss: bool,
}

/// One watchdog step for one worker, silent for `silent` (`None`: not running). Each stall
/// counts one miss once it passes [`MISS_TIMEOUT`] and one mega miss once it passes
/// [`MEGAMISS_TIMEOUT`]; a heartbeat inside the timeout ends the stall.
pub fn judge(silent: Option<Duration>, stall: &mut Stall) -> Verdict {
    let Some(silent) = silent.filter(|s| *s > MISS_TIMEOUT) else {
        *stall = Stall::default();
        return Verdict::default();
    };
    let mut v = Verdict::default();
    if !stall.miss_counted {
        stall.miss_counted = true;
        v.miss = true;
    }
    if silent > MEGAMISS_TIMEOUT && !stall.mega_counted {
        stall.mega_counted = true;
        v.mega_miss = true;
    }
    v
}

/// Starts the watchdog thread; it runs until `stop` is set.
pub fn spawn_watchdog(
    health: Arc<LoopHealth>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringway-watchdog".into())
        .spawn(move || {
            let mut stalls = vec![Stall::default(); health.workers()];
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WATCHDOG_STEP);
                health.step(Instant::now(), &mut stalls);
            }
        })
}

/// A worker probe's arithmetic: the deadlines it sleeps to and what each wake measured.
#[derive(Debug)]
pub struct LoopProbe {
    next: Instant,
    /// Smallest raw delay seen: the timer wheel's rounding for this probe's phase.
    floor: Option<Duration>,
}

impl LoopProbe {
    pub fn new(now: Instant) -> LoopProbe {
        LoopProbe {
            next: now + PROBE_PERIOD,
            floor: None,
        }
    }

    /// The instant to sleep until.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// The probe woke at `woke`: returns the poll delay (above the timer's rounding) and moves
    /// the deadline on. Deadlines stay on the probe's grid (same phase against the timer's
    /// tick); periods missed during a stall are skipped, not made up in a burst.
    pub fn woke(&mut self, woke: Instant) -> Duration {
        let raw = woke.saturating_duration_since(self.next);
        let floor = *self.floor.get_or_insert(raw);
        let floor = floor.min(raw);
        self.floor = Some(floor);
        let periods = raw.as_nanos() / PROBE_PERIOD.as_nanos() + 1;
        self.next += PROBE_PERIOD * u32::try_from(periods).unwrap_or(u32::MAX);
        raw - floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_running_worker_is_never_judged() {
        let mut s = Stall::default();
        assert_eq!(judge(None, &mut s), Verdict::default());
        assert_eq!(judge(Some(10 * MS), &mut s), Verdict::default());
        assert_eq!(judge(Some(MISS_TIMEOUT), &mut s), Verdict::default());
    }

    #[test]
    fn a_stall_counts_one_miss_then_one_mega_miss() {
        let mut s = Stall::default();
        let over = MISS_TIMEOUT + MS;
        assert_eq!(
            judge(Some(over), &mut s),
            Verdict {
                miss: true,
                mega_miss: false
            }
        );
        assert_eq!(judge(Some(over + 100 * MS), &mut s), Verdict::default());
        assert_eq!(
            judge(Some(MEGAMISS_TIMEOUT + MS), &mut s),
            Verdict {
                miss: false,
                mega_miss: true
            }
        );
        assert_eq!(
            judge(Some(5 * MEGAMISS_TIMEOUT), &mut s),
            Verdict::default()
        );
    }

    #[test]
    fn a_heartbeat_ends_the_stall() {
        let mut s = Stall::default();
        assert!(judge(Some(MISS_TIMEOUT + MS), &mut s).miss);
        judge(Some(MS), &mut s);
        assert!(judge(Some(MISS_TIMEOUT + MS), &mut s).miss);
        // A stopped worker ends it too.
        judge(None, &mut s);
        assert_eq!(s, Stall::default());
    }

    #[test]
    fn one_long_silence_counts_both_at_once() {
        let mut s = Stall::default();
        assert_eq!(
            judge(Some(2 * MEGAMISS_TIMEOUT), &mut s),
            Verdict {
                miss: true,
                mega_miss: true
            }
        );
    }

    #[test]
    fn steps_read_heartbeats() {
        let epoch = Instant::now();
        let h = LoopHealth::new(3, epoch);
        let now = epoch + 10 * MEGAMISS_TIMEOUT;
        h.touch(0, now - 50 * MS); // fresh
        h.touch(1, now - 300 * MS); // stalled past the miss timeout
        h.stop(2); // gone
        let mut stalls = vec![Stall::default(); 3];
        h.step(now, &mut stalls);
        h.step(now + 10 * MS, &mut stalls);
        assert_eq!([h.misses(0), h.misses(1), h.misses(2)], [0, 1, 0]);
        h.step(now + MEGAMISS_TIMEOUT, &mut stalls);
        assert_eq!(h.mega_misses(1), 1);
        assert_eq!(h.mega_misses(0), 1, "worker 0 stopped touching too");
    }

    #[test]
    fn probe_delay_is_measured_above_the_timer_rounding() {
        let start = Instant::now();
        let mut p = LoopProbe::new(start);
        // The timer wakes 0.6 ms after each deadline (its tick rounding), once 5 ms later.
        let d1 = p.deadline();
        assert_eq!(p.woke(d1 + Duration::from_micros(600)), Duration::ZERO);
        let d2 = p.deadline();
        assert_eq!(d2, d1 + PROBE_PERIOD);
        assert_eq!(
            p.woke(d2 + Duration::from_micros(5600)),
            Duration::from_millis(5)
        );
        // A stall over several periods skips them instead of firing them in a burst.
        let d3 = p.deadline();
        p.woke(d3 + 35 * MS);
        assert_eq!(p.deadline(), d3 + 4 * PROBE_PERIOD);
    }
}
