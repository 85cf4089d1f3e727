//! Outlier detection (Envoy's consecutive-5xx detector), decided per worker.
//!
//! Shared nothing: each worker counts, for every endpoint it talks to, the failures in a row it has
//! seen itself (5xx answers, connect failures, resets, timeouts: Envoy's non-split mode, where
//! local-origin errors count as 5xx), and ejects that endpoint *for its own load balancer*. Another
//! worker that has seen the same endpoint fail ejects it on its own evidence. The state lives in
//! the endpoint (which is shared between snapshots while it stays a member) as one cache-line
//! padded slot per worker, written only by that worker with `Relaxed` stores, exactly like the
//! stats shards; nothing is locked and no counter has two writers.
//!
//! Rules (Envoy's, with the differences noted):
//! - `consecutive_5xx` failures in a row reach a detection; it is enforced with probability
//!   `enforcing_consecutive_5xx` percent. Any success resets the run.
//! - An ejection lasts `base_ejection_time × n` (n = this worker's ejection count for the endpoint,
//!   including this one), capped at `max_ejection_time`. Envoy also decays n while the endpoint
//!   behaves; Ringway keeps it for the endpoint's lifetime as a member.
//! - Ejection is allowed while the endpoints this worker has ejected in the cluster number fewer
//!   than `max(1, max_ejection_percent × members / 100)`, and never for a single-member cluster.
//!   So one endpoint can always be ejected from a cluster of two or more (Envoy needs
//!   `always_eject_one_host` for that; its strict percentage would never eject one of three hosts
//!   at the default 10%).
//! - Expiry is lazy: the worker's balancer sees the deadline pass and the endpoint is eligible
//!   again. The health-check thread sweeps the slots every tick only to refresh the
//!   `ejections_active` gauge and the `/clusters` flag.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::OutlierDetection;

/// One worker's view of one endpoint; only that worker writes it.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    /// Failures in a row seen by this worker.
    consecutive: AtomicU32,
    /// Ejections by this worker so far (the ejection-time multiplier).
    ejections: AtomicU32,
    /// `now_ms()` at which the current ejection ends; 0 = not ejected.
    ejected_until: AtomicU64,
}

/// Per-worker outlier state of one endpoint.
pub struct OutlierSlots {
    slots: Box<[Slot]>,
}

/// What a failure report led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the threshold (or no outlier detection).
    Counted,
    /// Threshold reached and the endpoint was ejected on this worker.
    Ejected,
    /// Threshold reached but `max_ejection_percent` forbade the ejection.
    Overflow,
    /// Threshold reached but the enforcement roll said no.
    NotEnforced,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call, plus one so that 0 can mean "not ejected".
pub fn now_ms() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

impl OutlierSlots {
    pub fn new(workers: usize) -> Self {
        OutlierSlots {
            slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// True while `worker` has this endpoint ejected. Clears an expired ejection (the caller is
    /// `worker` itself, the slot's only writer). Reads the clock only when an ejection is set.
    #[inline]
    pub fn is_ejected(&self, worker: usize) -> bool {
        let Some(s) = self.slots.get(worker) else {
            return false;
        };
        let until = s.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        s.ejected_until.store(0, Ordering::Relaxed);
        false
    }

    /// True when some worker has an unexpired ejection (read by the sweeping thread).
    pub fn ejected_anywhere(&self, now: u64) -> bool {
        self.slots
            .iter()
            .any(|s| now < s.ejected_until.load(Ordering::Relaxed))
    }

    /// A good response from this endpoint on `worker`: the failure run ends.
    #[inline]
    pub fn record_success(&self, worker: usize) {
        if let Some(s) = self.slots.get(worker) {
            // Skip the store in the common case so the line stays clean.
            if s.consecutive.load(Ordering::Relaxed) != 0 {
                s.consecutive.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failure; true when the run reached `threshold` (and restarts it).
    fn count_failure(&self, worker: usize, threshold: u32) -> bool {
        let Some(s) = self.slots.get(worker) else {
            return false;
        };
        let n = s.consecutive.load(Ordering::Relaxed).saturating_add(1);
        if n >= threshold {
            s.consecutive.store(0, Ordering::Relaxed);
            true
        } else {
            s.consecutive.store(n, Ordering::Relaxed);
            false
        }
    }

    fn eject(&self, worker: usize, od: &OutlierDetection, now: u64) {
        if let Some(s) = self.slots.get(worker) {
            let n = s.ejections.load(Ordering::Relaxed).saturating_add(1);
            s.ejections.store(n, Ordering::Relaxed);
            s.ejected_until
                .store(now.saturating_add(ejection_ms(od, n)), Ordering::Relaxed);
        }
    }
}

/// `base_ejection_time × n`, capped at `max_ejection_time`, in milliseconds (at least 1).
pub fn ejection_ms(od: &OutlierDetection, n: u32) -> u64 {
    let d = od
        .base_ejection_time
        .saturating_mul(n.max(1))
        .min(od.max_ejection_time.max(od.base_ejection_time));
    (d.as_millis() as u64).max(1)
}

/// How many endpoints one worker may have ejected at once in a cluster of `members`.
pub fn max_ejected(od: &OutlierDetection, members: usize) -> usize {
    if members <= 1 {
        return 0;
    }
    (members * od.max_ejection_percent as usize / 100).max(1)
}

/// Whatever carries an endpoint's outlier slots (the membership's `Endpoint`); a trait so this
/// module need not know the membership types that depend on it.
pub trait HasOutlier {
    fn outlier(&self) -> &OutlierSlots;
}

/// Reports a failed exchange with `members[idx]` on `worker`. `roll` is a uniform draw in 0..100
/// for the enforcement percentage (the caller owns the worker's PRNG).
pub fn record_failure<E: HasOutlier>(
    worker: usize,
    od: &OutlierDetection,
    members: &[Arc<E>],
    idx: usize,
    roll: u32,
) -> Verdict {
    let Some(target) = members.get(idx) else {
        return Verdict::Counted;
    };
    if !target.outlier().count_failure(worker, od.consecutive_5xx) {
        return Verdict::Counted;
    }
    if roll >= od.enforcing_consecutive_5xx {
        return Verdict::NotEnforced;
    }
    let ejected = members
        .iter()
        .filter(|e| e.outlier().is_ejected(worker))
        .count();
    if target.outlier().is_ejected(worker) {
        // Already out (a request picked before the ejection finished late): extend nothing.
        return Verdict::Counted;
    }
    if ejected >= max_ejected(od, members.len()) {
        return Verdict::Overflow;
    }
    target.outlier().eject(worker, od, now_ms());
    Verdict::Ejected
}

/// The sweep interval for a cluster: Envoy's `interval`, but at least once a second so the gauge
/// and `/clusters` follow ejections that are shorter than the interval.
pub fn sweep_interval(od: &OutlierDetection) -> Duration {
    od.interval.min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::upstream::membership::Endpoint;

    fn members(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    String::new(),
                    2,
                ))
            })
            .collect()
    }

    fn od(c: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: c,
            ..OutlierDetection::default()
        }
    }

    #[test]
    fn ejects_after_the_threshold_on_that_worker_only() {
        let m = members(3);
        let o = od(3);
        assert_eq!(record_failure(0, &o, &m, 1, 0), Verdict::Counted);
        assert_eq!(record_failure(0, &o, &m, 1, 0), Verdict::Counted);
        assert_eq!(record_failure(0, &o, &m, 1, 0), Verdict::Ejected);
        assert!(m[1].health.outlier.is_ejected(0));
        assert!(!m[1].health.outlier.is_ejected(1), "worker 1 saw nothing");
        assert!(m[1].health.outlier.ejected_anywhere(now_ms()));
        assert!(!m[0].health.outlier.is_ejected(0));
    }

    #[test]
    fn success_resets_the_run() {
        let m = members(3);
        let o = od(2);
        assert_eq!(record_failure(0, &o, &m, 0, 0), Verdict::Counted);
        m[0].health.outlier.record_success(0);
        assert_eq!(record_failure(0, &o, &m, 0, 0), Verdict::Counted);
        assert_eq!(record_failure(0, &o, &m, 0, 0), Verdict::Ejected);
    }

    #[test]
    fn max_ejection_percent_and_enforcement() {
        let m = members(3);
        let o = od(1);
        // 10% of 3 rounds down to 0, but one ejection is always allowed.
        assert_eq!(max_ejected(&o, 3), 1);
        assert_eq!(max_ejected(&o, 1), 0);
        assert_eq!(max_ejected(&o, 40), 4);
        assert_eq!(record_failure(0, &o, &m, 0, 0), Verdict::Ejected);
        assert_eq!(record_failure(0, &o, &m, 1, 0), Verdict::Overflow);
        assert!(!m[1].health.outlier.is_ejected(0));
        let half = OutlierDetection {
            enforcing_consecutive_5xx: 50,
            ..o
        };
        assert_eq!(record_failure(1, &half, &m, 2, 50), Verdict::NotEnforced);
        assert_eq!(record_failure(1, &half, &m, 2, 49), Verdict::Ejected);
        let single = members(1);
        assert_eq!(record_failure(0, &o, &single, 0, 0), Verdict::Overflow);
    }

    #[test]
    fn ejection_time_grows_and_is_capped_and_expires() {
        let o = OutlierDetection {
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(100),
            ..od(1)
        };
        assert_eq!(ejection_ms(&o, 1), 30_000);
        assert_eq!(ejection_ms(&o, 3), 90_000);
        assert_eq!(ejection_ms(&o, 4), 100_000);
        let short = OutlierDetection {
            base_ejection_time: Duration::from_millis(30),
            ..od(1)
        };
        let m = members(2);
        assert_eq!(record_failure(0, &short, &m, 0, 0), Verdict::Ejected);
        assert!(m[0].health.outlier.is_ejected(0));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!m[0].health.outlier.is_ejected(0));
        assert!(!m[0].health.outlier.ejected_anywhere(now_ms()));
        // The second ejection lasts twice as long.
        assert_eq!(record_failure(0, &short, &m, 0, 0), Verdict::Ejected);
        std::thread::sleep(Duration::from_millis(40));
        assert!(m[0].health.outlier.is_ejected(0));
    }
}
