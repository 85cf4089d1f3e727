//! The health state of one endpoint, shared by the thread that checks it and the workers that
//! balance over it.
//!
//! A leaf: the health-check thread (`health.rs`), outlier detection (`outlier.rs`) and the
//! membership snapshots (`membership.rs`) all hold or update this state, so it lives apart from
//! each of them and none of them has to import another to name it.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::config::HealthCheck;
use crate::upstream::outlier::OutlierSlots;

/// The endpoint failed active health checking (`/failed_active_hc` in `/clusters`).
pub const FAILED_ACTIVE_HC: u8 = 1;
/// Some worker has the endpoint ejected by outlier detection (`/failed_outlier_check`); workers
/// decide on their own slot in [`OutlierSlots`], this bit is for display and the healthy gauge.
pub const EJECTED_OUTLIER: u8 = 1 << 1;

/// Health of one endpoint. `flags` and the check counters are written only by the health thread;
/// each outlier slot only by its worker.
pub struct EndpointHealth {
    pub flags: AtomicU8,
    /// Successes in a row while failed, or failures in a row while healthy.
    successes: AtomicU32,
    failures: AtomicU32,
    pub outlier: OutlierSlots,
}

impl EndpointHealth {
    pub fn new(workers: usize) -> Self {
        EndpointHealth {
            flags: AtomicU8::new(0),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            outlier: OutlierSlots::new(workers),
        }
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Neither failed active checks nor ejected anywhere (what `membership_healthy` counts).
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.flags() == 0
    }

    #[inline]
    pub fn failed_active_hc(&self) -> bool {
        self.flags() & FAILED_ACTIVE_HC != 0
    }

    /// Applies one check result; returns true when the endpoint changed state.
    pub fn record_check(&self, ok: bool, hc: &HealthCheck) -> bool {
        let failed = self.failed_active_hc();
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.load(Ordering::Relaxed).saturating_add(1);
            self.successes.store(n, Ordering::Relaxed);
            if failed && n >= hc.healthy_threshold {
                self.set_flag(FAILED_ACTIVE_HC, false);
                return true;
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.load(Ordering::Relaxed).saturating_add(1);
            self.failures.store(n, Ordering::Relaxed);
            if !failed && n >= hc.unhealthy_threshold {
                self.set_flag(FAILED_ACTIVE_HC, true);
                return true;
            }
        }
        false
    }

    /// Sets or clears `bit`; true when it changed. Only the health thread calls this.
    pub(crate) fn set_flag(&self, bit: u8, on: bool) -> bool {
        let old = self.flags();
        let new = if on { old | bit } else { old & !bit };
        self.flags.store(new, Ordering::Relaxed);
        old != new
    }
}
