//! Counters and gauges written by one worker each and summed by the admin thread.
//!
//! A stat object (one cluster's counters, one endpoint's, one listener's) holds one slot per
//! worker. Worker `w` only ever writes slot `w`, with `Relaxed` atomics: there is no contention and
//! no lock, and each slot is cache-line aligned so two workers never share a line. The admin thread
//! reads every slot and adds them up; a value read while a worker is writing is at most one
//! increment stale, which is what Envoy's stats promise too. Gauges are counters that also go down;
//! their per-slot values wrap, and the wrapping sum over slots is exact.

use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's values for a stat object with `N` named counters.
#[repr(align(64))]
struct Slot<const N: usize>([AtomicU64; N]);

/// `N` counters, one slot per worker.
pub struct PerWorker<const N: usize> {
    slots: Box<[Slot<N>]>,
}

impl<const N: usize> PerWorker<N> {
    pub fn new(workers: usize) -> Self {
        let slots = (0..workers.max(1))
            .map(|_| Slot(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        PerWorker { slots }
    }

    /// Adds `n` to counter `i` in `worker`'s slot. Only `worker`'s own thread calls this.
    #[inline]
    pub fn add(&self, worker: usize, i: usize, n: u64) {
        if let Some(slot) = self.slots.get(worker) {
            // Single writer per slot: a load+store is enough and avoids a locked RMW instruction.
            let c = &slot.0[i];
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn inc(&self, worker: usize, i: usize) {
        self.add(worker, i, 1);
    }

    /// Gauge decrement (wraps within the slot; the sum over slots is exact).
    #[inline]
    pub fn dec(&self, worker: usize, i: usize) {
        self.add(worker, i, u64::MAX);
    }

    /// Gauge set (only for gauges owned by a single thread, e.g. membership written by control).
    pub fn set(&self, worker: usize, i: usize, v: u64) {
        if let Some(slot) = self.slots.get(worker) {
            slot.0[i].store(v, Ordering::Relaxed);
        }
    }

    /// Counter `i` in `worker`'s own slot (a worker reading its own value, e.g. for LEAST_REQUEST).
    #[inline]
    pub fn slot_value(&self, worker: usize, i: usize) -> u64 {
        self.slots
            .get(worker)
            .map_or(0, |s| s.0[i].load(Ordering::Relaxed))
    }

    /// Sum of counter `i` over all workers.
    pub fn sum(&self, i: usize) -> u64 {
        self.slots.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(s.0[i].load(Ordering::Relaxed))
        })
    }

    /// Gauge value: the wrapping sum read as signed, clamped at zero.
    pub fn gauge(&self, i: usize) -> u64 {
        let v = self.sum(i) as i64;
        v.max(0) as u64
    }
}

/// Per-status-code counters (`upstream_rq_200`, `downstream_rq_404`, ...): a dense table over
/// 100..=599, one per worker. Dense is cheaper than a map and 500 slots is 4 KB per worker.
pub struct CodeCounters {
    slots: Box<[CodeSlot]>,
}

#[repr(align(64))]
struct CodeSlot([AtomicU64; 500]);

impl CodeCounters {
    pub fn new(workers: usize) -> Self {
        let slots = (0..workers.max(1))
            .map(|_| CodeSlot(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        CodeCounters { slots }
    }

    #[inline]
    pub fn inc(&self, worker: usize, code: u16) {
        if !(100..600).contains(&code) {
            return;
        }
        if let Some(slot) = self.slots.get(worker) {
            let c = &slot.0[usize::from(code - 100)];
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Non-zero codes with their totals, ascending.
    pub fn nonzero(&self) -> Vec<(u16, u64)> {
        (0..500)
            .filter_map(|i| {
                let total = self.slots.iter().fold(0u64, |acc, s| {
                    acc.wrapping_add(s.0[i].load(Ordering::Relaxed))
                });
                (total > 0).then_some((i as u16 + 100, total))
            })
            .collect()
    }

    /// Totals per class (1xx..5xx), index 0 = 1xx.
    pub fn classes(&self) -> [u64; 5] {
        let mut out = [0u64; 5];
        for (code, n) in self.nonzero() {
            out[usize::from(code / 100 - 1)] += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_workers_and_gauges_wrap_exactly() {
        let c: PerWorker<2> = PerWorker::new(3);
        c.inc(0, 0);
        c.add(2, 0, 5);
        assert_eq!(c.sum(0), 6);
        // a gauge incremented on one worker and decremented on another still sums exactly
        c.inc(1, 1);
        c.inc(1, 1);
        c.dec(0, 1);
        assert_eq!(c.gauge(1), 1);
        c.dec(2, 1);
        assert_eq!(c.gauge(1), 0);
    }

    #[test]
    fn out_of_range_worker_and_code_are_ignored() {
        let c: PerWorker<1> = PerWorker::new(1);
        c.inc(7, 0);
        assert_eq!(c.sum(0), 0);
        let codes = CodeCounters::new(2);
        codes.inc(0, 99);
        codes.inc(0, 600);
        codes.inc(1, 503);
        codes.inc(0, 200);
        codes.inc(1, 200);
        assert_eq!(codes.nonzero(), vec![(200, 2), (503, 1)]);
        assert_eq!(codes.classes(), [0, 2, 0, 0, 1]);
    }
}
