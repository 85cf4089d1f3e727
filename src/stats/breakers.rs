//! The circuit-breaker counts of one cluster: which breakers there are, what each worker holds
//! of each, and the process-wide thresholds.
//!
//! This is the data half of the breakers and lives with the other stats because the same slots
//! are what `/stats` publishes (`circuit_breakers.default.*`); the guards that take and give
//! units by ownership are in `upstream::admission`, which depends on this and not the reverse.

use crate::stats::counters::PerWorker;

/// The four DEFAULT-priority circuit breakers, in Envoy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Breaker {
    /// `max_connections`: open upstream connections (pooled, in use, or being connected).
    Connections = 0,
    /// `max_pending_requests`: requests waiting for a connection that is being opened.
    Pending = 1,
    /// `max_requests`: requests admitted to the cluster and not yet finished.
    Requests = 2,
    /// `max_retries`: retries waiting out their back-off.
    Retries = 3,
}

impl Breaker {
    pub const ALL: [Breaker; 4] = [
        Breaker::Connections,
        Breaker::Pending,
        Breaker::Requests,
        Breaker::Retries,
    ];

    /// Envoy's gauge names: the 0/1 "open" flag and the remaining capacity.
    pub fn gauge_names(self) -> (&'static str, &'static str) {
        match self {
            Breaker::Connections => ("cx_open", "remaining_cx"),
            Breaker::Pending => ("rq_pending_open", "remaining_pending"),
            Breaker::Requests => ("rq_open", "remaining_rq"),
            Breaker::Retries => ("rq_retry_open", "remaining_retries"),
        }
    }
}

/// One cluster's breaker counts, a slot per worker, and the process-wide thresholds.
pub struct BreakerCounts {
    counts: PerWorker<4>,
    /// Process-wide thresholds from the cluster's `circuit_breakers`, by [`Breaker`].
    pub limits: [u64; 4],
}

impl BreakerCounts {
    pub fn new(workers: usize, limits: [u64; 4]) -> BreakerCounts {
        BreakerCounts {
            counts: PerWorker::new(workers),
            limits,
        }
    }

    /// What `worker` holds of `b` now (read by the worker itself for admission).
    #[inline]
    pub fn held(&self, worker: usize, b: Breaker) -> u64 {
        self.counts.slot_value(worker, b as usize)
    }

    /// What all workers hold of `b` (read by the admin thread).
    pub fn total(&self, b: Breaker) -> u64 {
        self.counts.gauge(b as usize)
    }

    /// Envoy's `circuit_breakers.default.<x>_open` (1 when the breaker is saturated) and
    /// `remaining_<x>` for `b`, process-wide.
    pub fn published(&self, b: Breaker) -> (u64, u64) {
        let limit = self.limits[b as usize];
        let held = self.total(b);
        (u64::from(held >= limit), limit.saturating_sub(held))
    }

    #[inline]
    pub(crate) fn take(&self, worker: usize, b: Breaker) {
        self.counts.inc(worker, b as usize);
    }

    #[inline]
    pub(crate) fn give(&self, worker: usize, b: Breaker) {
        self.counts.dec(worker, b as usize);
    }
}
