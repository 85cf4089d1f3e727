//! Progress stamps and the one watchdog that reads them.
//!
//! An exchange that may stall (a client that stops sending its body or stops reading the
//! response, an HTTP/2 stream waiting for flow-control window, an upstream that goes quiet)
//! stamps [`Activity`] whenever bytes move, and marks when its request is complete and when its
//! response started. One watchdog per exchange ([`stream_watchdog`]) sleeps until the nearest
//! limit that can still fire and re-checks: the connection manager's `stream_idle_timeout` (or
//! the route's `idle_timeout`), its `request_timeout` (the whole request must arrive in time)
//! and `max_stream_duration` (the exchange's whole life). That is one timer per exchange instead
//! of one per read and write (the kernel's and HAProxy's expiry idea), and it covers every wait
//! of the exchange, including the ones no read or write is pending in.
//!
//! What an expiry means for the client ([`Expiry::reply`]) follows Envoy: the stat of the limit
//! that fired, and `408` while the request is still arriving, `504` once it has arrived.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::config::{ForwardAction, HttpConnectionManager};
use crate::exchange::request_log::RequestLog;
use crate::proxy::flags::ResponseFlags;
use crate::proxy::worker::Worker;
use crate::stats::HttpStat;

/// When bytes last moved in an exchange (either direction), and how far it has come.
#[derive(Debug)]
pub struct Activity {
    last: Cell<Instant>,
    /// When the whole request had arrived (also the access log's `%REQUEST_DURATION%`).
    request_complete: Cell<Option<Instant>>,
    /// When the response head went to the client (the log's `%RESPONSE_DURATION%`).
    response_started: Cell<Option<Instant>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last: Cell::new(Instant::now()),
            request_complete: Cell::new(None),
            response_started: Cell::new(None),
        }
    }
}

impl Activity {
    #[inline]
    pub fn stamp(&self) {
        self.last.set(Instant::now());
    }

    pub fn last(&self) -> Instant {
        self.last.get()
    }

    /// The whole request (head, body, trailers) has been received from the client.
    pub fn complete_request(&self) {
        if self.request_complete.get().is_none() {
            self.request_complete.set(Some(Instant::now()));
        }
    }

    pub fn request_complete(&self) -> bool {
        self.request_complete.get().is_some()
    }

    /// The response head went to the client: a timeout can no longer be answered, only cut.
    pub fn start_response(&self) {
        if self.response_started.get().is_none() {
            self.response_started.set(Some(Instant::now()));
        }
    }

    pub fn response_started(&self) -> bool {
        self.response_started.get().is_some()
    }

    /// When the request completed and the response started, for the access log.
    pub fn phases(&self) -> (Option<Instant>, Option<Instant>) {
        (self.request_complete.get(), self.response_started.get())
    }

    /// Back to a fresh exchange (an HTTP/1.1 connection reuses one `Activity` per request).
    pub fn reset(&self) {
        self.stamp();
        self.request_complete.set(None);
        self.response_started.set(None);
    }
}

/// The limits that bound a whole exchange rather than one attempt; zero switches one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamLimits {
    /// `stream_idle_timeout`, or the route's `idle_timeout` when it sets one.
    pub idle: Duration,
    /// `request_timeout`: the whole request must have arrived this long after it began (or
    /// the response started).
    pub request: Duration,
    /// `max_stream_duration`, or the route's `max_stream_duration` when it sets one.
    pub max_duration: Duration,
}

impl StreamLimits {
    /// The limits of a request on `hcm`, routed to `action` when it is forwarded. Envoy: a
    /// route's `idle_timeout` and `max_stream_duration` replace the connection manager's,
    /// and zero there switches the limit off for the route.
    pub fn of(hcm: &HttpConnectionManager, action: Option<&ForwardAction>) -> Self {
        StreamLimits {
            idle: action
                .and_then(|a| a.idle_timeout)
                .unwrap_or(hcm.stream_idle_timeout),
            request: hcm.request_timeout,
            max_duration: action
                .and_then(|a| a.max_stream_duration)
                .unwrap_or(hcm.max_stream_duration),
        }
    }
}

/// Which limit ended an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Request,
    MaxDuration,
}

/// What the client is told when a limit fires before the response started.
pub struct ExpiryReply {
    pub stat: HttpStat,
    pub status: u16,
    pub body: &'static [u8],
    pub flag: ResponseFlags,
}

impl Expiry {
    /// Envoy's answer: the limit's stat, `408` while the request was still arriving and `504`
    /// once it had arrived, and its local-reply text.
    pub fn reply(self, request_complete: bool) -> ExpiryReply {
        let status = if request_complete { 504 } else { 408 };
        let (stat, body, flag) = match self {
            Expiry::Idle => (
                HttpStat::DownstreamRqIdleTimeout,
                &b"stream timeout"[..],
                ResponseFlags::STREAM_IDLE_TIMEOUT,
            ),
            Expiry::Request => (
                HttpStat::DownstreamRqTimeout,
                &b"request timeout"[..],
                ResponseFlags::default(),
            ),
            Expiry::MaxDuration => (
                HttpStat::DownstreamRqMaxDurationReached,
                &b"downstream duration timeout"[..],
                ResponseFlags::default(),
            ),
        };
        ExpiryReply {
            stat,
            status,
            body,
            flag,
        }
    }
}

impl Expiry {
    /// Counts an expiry once, whatever the codec: the limit's stat and the response flag.
    /// Returns what the client is told if its response has not started.
    pub fn record(
        self,
        w: &Worker,
        listener: usize,
        log: &mut RequestLog<'_>,
        activity: &Activity,
    ) -> ExpiryReply {
        let reply = self.reply(activity.request_complete());
        if let Some(hs) = w.stats().http.get(listener) {
            hs.inc(w.index, reply.stat);
        }
        log.flags.insert(reply.flag);
        reply
    }
}

/// The watchdog's one decision at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// This limit has fired.
    Fired(Expiry),
    /// Nothing has fired; look again then (`None`: no limit can fire any more).
    Wait(Option<Instant>),
}

/// Which limit has fired at `now` for an exchange that began at `start`, or when to look again.
pub fn check(limits: &StreamLimits, start: Instant, activity: &Activity, now: Instant) -> Check {
    // In Envoy's order of precedence when several are due at once: the stream's whole life
    // first, then the request's, then idleness.
    let armed = [
        (!limits.max_duration.is_zero())
            .then(|| (start + limits.max_duration, Expiry::MaxDuration)),
        (!limits.request.is_zero() && !activity.request_complete() && !activity.response_started())
            .then(|| (start + limits.request, Expiry::Request)),
        (!limits.idle.is_zero()).then(|| (activity.last() + limits.idle, Expiry::Idle)),
    ];
    let mut next: Option<Instant> = None;
    for (due, what) in armed.into_iter().flatten() {
        if due <= now {
            return Check::Fired(what);
        }
        next = Some(next.map_or(due, |n| n.min(due)));
    }
    Check::Wait(next)
}

/// Resolves with the limit that fired first for an exchange that began at `start`.
pub async fn stream_watchdog(activity: &Activity, start: Instant, limits: StreamLimits) -> Expiry {
    loop {
        let now = Instant::now();
        match check(&limits, start, activity, now) {
            Check::Fired(expiry) => return expiry,
            Check::Wait(Some(at)) => monoio::time::sleep(at - now).await,
            Check::Wait(None) => std::future::pending::<()>().await,
        }
    }
}

/// Resolves once `activity` has not been stamped for `idle` (never, when `idle` is zero).
pub async fn idle_watchdog(activity: &Activity, idle: Duration) {
    let limits = StreamLimits {
        idle,
        ..StreamLimits::default()
    };
    stream_watchdog(activity, Instant::now(), limits).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(idle: u64, request: u64, max: u64) -> StreamLimits {
        StreamLimits {
            idle: S * idle as u32,
            request: S * request as u32,
            max_duration: S * max as u32,
        }
    }

    #[test]
    fn no_limits_never_fire() {
        let a = Activity::default();
        let start = a.last();
        assert_eq!(
            check(&limits(0, 0, 0), start, &a, start + S * 100_000),
            Check::Wait(None)
        );
    }

    #[test]
    fn idle_fires_only_after_a_quiet_spell() {
        let a = Activity::default();
        let start = a.last();
        let l = limits(5, 0, 0);
        assert_eq!(
            check(&l, start, &a, start + S),
            Check::Wait(Some(start + S * 5))
        );
        assert_eq!(
            check(&l, start, &a, start + S * 5),
            Check::Fired(Expiry::Idle)
        );
    }

    #[test]
    fn request_timeout_is_disarmed_by_a_complete_request_or_a_started_response() {
        let l = limits(0, 3, 0);
        let a = Activity::default();
        let start = a.last();
        assert_eq!(
            check(&l, start, &a, start + S * 3),
            Check::Fired(Expiry::Request)
        );
        a.complete_request();
        assert_eq!(check(&l, start, &a, start + S * 3), Check::Wait(None));
        let b = Activity::default();
        b.start_response();
        assert_eq!(check(&l, start, &b, start + S * 3), Check::Wait(None));
    }

    #[test]
    fn max_duration_fires_however_busy_the_stream_is() {
        let l = limits(5, 0, 2);
        let a = Activity::default();
        let start = a.last();
        a.complete_request();
        a.start_response();
        assert_eq!(
            check(&l, start, &a, start + S),
            Check::Wait(Some(start + S * 2))
        );
        assert_eq!(
            check(&l, start, &a, start + S * 2),
            Check::Fired(Expiry::MaxDuration)
        );
    }

    #[test]
    fn the_nearest_armed_limit_is_the_next_look() {
        let l = limits(10, 4, 7);
        let a = Activity::default();
        let start = a.last();
        assert_eq!(
            check(&l, start, &a, start + S),
            Check::Wait(Some(start + S * 4))
        );
        a.complete_request();
        assert_eq!(
            check(&l, start, &a, start + S),
            Check::Wait(Some(start + S * 7))
        );
    }

    #[test]
    fn when_several_are_due_the_stream_life_wins() {
        let l = limits(1, 1, 1);
        let a = Activity::default();
        let start = a.last();
        assert_eq!(
            check(&l, start, &a, start + S),
            Check::Fired(Expiry::MaxDuration)
        );
    }

    #[test]
    fn the_reply_is_408_while_the_request_arrives_and_504_after() {
        for e in [Expiry::Idle, Expiry::Request, Expiry::MaxDuration] {
            assert_eq!(e.reply(false).status, 408);
            assert_eq!(e.reply(true).status, 504);
        }
        assert_eq!(
            Expiry::MaxDuration.reply(true).stat,
            HttpStat::DownstreamRqMaxDurationReached
        );
        assert_eq!(
            Expiry::Request.reply(false).stat,
            HttpStat::DownstreamRqTimeout
        );
    }

    #[test]
    fn a_reset_activity_starts_over() {
        let a = Activity::default();
        a.complete_request();
        a.start_response();
        a.reset();
        assert!(!a.request_complete() && !a.response_started());
    }
}
