//! Progress stamps and the one watchdog that reads them.
//!
//! An exchange that may stall (a client that stops sending its body or stops reading the
//! response, an HTTP/2 stream waiting for flow-control window, an upstream that goes quiet)
//! stamps [`Activity`] whenever bytes move; one [`idle_watchdog`] per exchange sleeps until the
//! last stamp plus the idle timeout and fires only if nothing moved since. That is one timer per
//! exchange instead of one per read and write (the kernel's and HAProxy's expiry idea), and it
//! covers every wait of the exchange, including the ones no read or write is pending in.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// When bytes last moved in an exchange (either direction).
#[derive(Debug)]
pub struct Activity(Cell<Instant>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Cell::new(Instant::now()))
    }
}

impl Activity {
    #[inline]
    pub fn stamp(&self) {
        self.0.set(Instant::now());
    }

    pub fn last(&self) -> Instant {
        self.0.get()
    }
}

/// Resolves once `activity` has not been stamped for `idle` (never, when `idle` is zero).
pub async fn idle_watchdog(activity: &Activity, idle: Duration) {
    if idle.is_zero() {
        std::future::pending::<()>().await;
    }
    loop {
        let due = activity.last() + idle;
        let now = Instant::now();
        if due <= now {
            return;
        }
        monoio::time::sleep(due - now).await;
    }
}
