//! A downstream request's place in the counts: its connection manager's `downstream_rq_active`
//! and the worker's in-flight requests (what a drain waits for).
//!
//! Both are taken when a request's head is in and given back when the [`ActiveRequest`] drops,
//! however the request ends: answered, reset, timed out, or its connection's future dropped at
//! any await point. A count that is decremented by a call at the end of a function instead
//! leaks whenever that end is never reached.

use crate::proxy::worker::Worker;
use crate::stats::HttpStat;

/// Holds one request's `downstream_rq_active` and in-flight unit while it lives.
pub struct ActiveRequest<'w> {
    w: &'w Worker,
    listener: usize,
}

impl<'w> ActiveRequest<'w> {
    pub fn start(w: &'w Worker, listener: usize) -> Self {
        if let Some(hs) = w.stats().http.get(listener) {
            hs.inc(w.index, HttpStat::DownstreamRqActive);
        }
        w.in_flight.set(w.in_flight.get() + 1);
        ActiveRequest { w, listener }
    }
}

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        let w = self.w;
        if let Some(hs) = w.stats().http.get(self.listener) {
            hs.dec(w.index, HttpStat::DownstreamRqActive);
        }
        w.in_flight.set(w.in_flight.get().saturating_sub(1));
    }
}
