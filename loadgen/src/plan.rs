//! What a run's connections share and how a request's outcome is counted: the read-only plan
//! (target, request, schedule bounds), the load model, the ways a request can fail, and the
//! recording rule, the same for HTTP/1.1 (`conn.rs`) and HTTP/2 (`h2conn.rs`) connections.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::net;
use crate::report::Recorder;
use crate::schedule::Schedule;
use crate::timeline::Timeline;

/// What every connection of a run shares (read-only).
#[derive(Debug)]
pub struct Plan {
    pub addr: std::net::SocketAddr,
    /// TLS of every connection (`https://`), if any.
    pub tls: Option<net::Tls>,
    /// HTTP/2 connections instead (see `h2conn`).
    pub h2: Option<H2Plan>,
    pub request: Rc<Vec<u8>>,
    pub head_request: bool,
    pub timeout: Duration,
    /// Time zero of every schedule.
    pub t0: Instant,
    /// Requests due before this are warmup: sent, not recorded.
    pub measure_from: Instant,
    /// No request due at or after this is sent.
    pub end: Instant,
    /// Hard stop: requests still waiting at this point are counted as unsent.
    pub deadline: Instant,
    /// This thread's time-resolved results. A `RefCell` on a single-threaded runtime: no lock,
    /// and borrows never cross an await.
    pub timeline: RefCell<Timeline>,
    /// This thread's live counters for the progress line (relaxed atomics only it writes).
    pub live: std::sync::Arc<crate::progress::Live>,
}

/// Load model of one connection.
#[derive(Debug)]
pub enum Pacing {
    Open(Schedule),
    /// Next request as soon as the previous response ends.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Reset,
    Timeout,
    Protocol,
}

/// The HTTP/2 part of a run: the request every stream sends and the streams per connection.
#[derive(Debug, Clone)]
pub struct H2Plan {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub streams: usize,
}

impl H2Plan {
    pub(crate) fn request(&self) -> Result<http::Request<()>, Failure> {
        let mut req = http::Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(())
            .map_err(|_| Failure::Protocol)?;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

/// Count and record one request's outcome (HTTP/1.1 and HTTP/2 alike). `due` is its scheduled
/// time, `start` where its latency clock started.
pub fn record_outcome(
    plan: &Plan,
    rec: &mut Recorder,
    due: Instant,
    start: Instant,
    result: Result<u16, Failure>,
) {
    let measured = due >= plan.measure_from;
    if !matches!(result, Err(Failure::Connect)) {
        plan.live.sent();
        if measured {
            rec.sent += 1;
        }
    }
    let offset = due.saturating_duration_since(plan.measure_from);
    match result {
        Ok(status) => {
            let latency = Instant::now().saturating_duration_since(start);
            let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
            let ok = (200..300).contains(&status);
            plan.live.response(us, ok);
            if measured {
                rec.completed += 1;
                rec.record_latency(latency);
                if !ok {
                    *rec.errors.status.entry(status).or_default() += 1;
                }
                plan.timeline.borrow_mut().record_response(offset, us, ok);
            }
        }
        Err(f) => {
            plan.live.failure();
            if measured {
                plan.timeline.borrow_mut().record_failure(offset);
                match f {
                    Failure::Connect => rec.errors.connect += 1,
                    Failure::Reset => rec.errors.reset += 1,
                    Failure::Timeout => rec.errors.timeout += 1,
                    Failure::Protocol => rec.errors.protocol += 1,
                }
            }
        }
    }
}

/// Requests of the measured window the run ended without sending.
pub fn count_unsent(s: &mut Schedule, plan: &Plan) -> u64 {
    let mut n = 0;
    loop {
        let due = plan.t0 + s.peek();
        if due >= plan.end {
            return n;
        }
        s.next_due();
        if due >= plan.measure_from {
            n += 1;
        }
    }
}
