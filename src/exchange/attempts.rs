//! The attempt loop every forwarder runs: try, decide, retry or stop.
//!
//! Whatever the codecs, a request goes to its cluster the same way: wait out the retry
//! back-off, bound the try by the route's deadline and the per-try timeout, let the forwarder
//! make one try (pick an endpoint, take a connection or stream, send, read the response head),
//! then ask [`decide`] what the answer or failure means under the route's retry policy. The
//! bookkeeping around that decision (the cluster's response-code stats, outlier detection
//! reports, the endpoint's success and error counts, the keep-alive race retry, per-try
//! timeout and retry-success stats, the retry budget) is the same for every codec pair and
//! lives here once; each forwarder supplies only its try, as an async closure, and its
//! upstream leg type (an HTTP/1.1 connection with a parsed head, or an HTTP/2 response).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{ClusterId, RetryPolicy};
use crate::exchange::admission::ClusterRequest;
use crate::exchange::endpoint::{report_outcome, TriedHosts};
use crate::exchange::retry::{decide, AttemptError, Attempted, Clock, Decision, RetryState};
use crate::proxy::worker::Worker;
use crate::stats::{ClusterStat, EndpointStat};
use crate::upstream::membership::Endpoint;
use crate::upstream::pool::UpstreamConn;

/// An upstream leg that produced a response head.
pub trait Answered {
    /// The response's status.
    fn status(&self) -> u16;
    /// The endpoint that answered.
    fn endpoint(&self) -> &Endpoint;
    /// Gives the leg up because its response is being retried: what the upstream still sends
    /// for it is never read, so a connection cannot serve again.
    fn abandon(self, w: &Worker);
}

/// What one try is given: its deadline, the endpoint a keep-alive race retry must go back to,
/// and the hosts tried so far (for the previous-host rule).
pub struct Try<'a> {
    pub deadline: Option<Instant>,
    pub fresh_to: Option<Arc<Endpoint>>,
    pub tried: &'a mut TriedHosts,
}

/// A failed try: the error, and the endpoint it reached (and whether on a reused connection)
/// when it reached one.
pub type TryFailure = (AttemptError, Option<(Arc<Endpoint>, bool)>);

/// How one try ended: a leg with a response head, or a failure. A failed try has already
/// disposed of its connection ([`fail_on`]).
pub type TryResult<L> = Result<L, TryFailure>;

/// A try that failed on an HTTP/1.1 connection: the connection is discarded (counted as closed
/// by the upstream: what it still holds of the exchange is unusable) and named in the failure.
pub fn fail_on(w: &Worker, conn: UpstreamConn, error: AttemptError) -> TryFailure {
    let failed = (conn.endpoint.clone(), conn.reused);
    w.pool
        .borrow_mut()
        .discard(conn, ClusterStat::UpstreamCxDestroyRemote);
    (error, Some(failed))
}

/// The accepted answer: its leg, and when its try began (upstream service time).
pub struct Accepted<L> {
    pub leg: L,
    pub sent_at: Instant,
}

/// Tries until an answer the retry policy accepts, or a failure it gives up on. `attempt`
/// makes one try and says whether the request could still be sent again after it (its body
/// is buffered, or none of it went out).
pub async fn run<'w, L: Answered>(
    w: &'w Rc<Worker>,
    cluster_id: ClusterId,
    policy: Option<&RetryPolicy>,
    creq: &mut ClusterRequest<'w>,
    route_deadline: Option<Instant>,
    mut attempt: impl AsyncFnMut(Try<'_>) -> (TryResult<L>, bool),
) -> Result<Accepted<L>, AttemptError> {
    let mut reuse_retry_used = false;
    let mut fresh_to: Option<Arc<Endpoint>> = None;
    let mut tried = TriedHosts::default();
    loop {
        creq.retries.back_off(w).await;
        let attempt_start = Instant::now();
        let per_try = policy
            .and_then(|p| p.per_try_timeout)
            .map(|t| attempt_start + t);
        let try_deadline = match (route_deadline, per_try) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (result, replayable) = attempt(Try {
            deadline: try_deadline,
            fresh_to: fresh_to.take(),
            tried: &mut tried,
        })
        .await;
        let attempted = match &result {
            Ok(leg) => Attempted::Response(leg.status()),
            Err((error, failed)) => Attempted::Failed {
                error: *error,
                reused: failed.as_ref().is_some_and(|(_, reused)| *reused),
            },
        };
        let decision = decide(
            policy,
            attempted,
            RetryState {
                retries_left: creq.retries.left,
                reuse_retry_used,
                replayable,
            },
            Clock {
                now: Instant::now(),
                route_deadline,
                per_try_deadline: per_try,
            },
        );
        let cs = w.stats().clusters.get(cluster_id);
        match result {
            Ok(leg) => {
                let status = leg.status();
                if let Some(cs) = cs {
                    cs.codes.inc(w.index, status);
                }
                report_outcome(w, cluster_id, leg.endpoint(), status < 500);
                if matches!(decision, Decision::Retry { .. }) && creq.retries.take(w, cluster_id) {
                    leg.endpoint().stats.inc(w.index, EndpointStat::RqError);
                    leg.abandon(w);
                    continue;
                }
                let stat = if status >= 500 {
                    EndpointStat::RqError
                } else {
                    EndpointStat::RqSuccess
                };
                leg.endpoint().stats.inc(w.index, stat);
                // As Envoy counts it: a retried request whose response is not retried again.
                if creq.retries.taken > 0 {
                    if let Some(cs) = cs {
                        cs.inc(w.index, ClusterStat::UpstreamRqRetrySuccess);
                    }
                }
                return Ok(Accepted {
                    leg,
                    sent_at: attempt_start,
                });
            }
            Err((e, failed)) => {
                if let Some((endpoint, _)) = &failed {
                    endpoint.stats.inc(w.index, EndpointStat::RqError);
                    // A keep-alive race is the connection's fault, not the endpoint's.
                    let endpoint_failed = decision != Decision::RetryFresh
                        && matches!(
                            e,
                            AttemptError::Reset { .. }
                                | AttemptError::Timeout
                                | AttemptError::Protocol
                        );
                    if endpoint_failed {
                        report_outcome(w, cluster_id, endpoint, false);
                    }
                }
                match decision {
                    Decision::RetryFresh => {
                        reuse_retry_used = true;
                        fresh_to = failed.map(|(e, _)| e);
                        if let Some(cs) = cs {
                            cs.inc(w.index, ClusterStat::UpstreamRqReuseRetry);
                        }
                        continue;
                    }
                    Decision::Retry { per_try_timeout }
                    | Decision::Fail {
                        per_try_timeout, ..
                    } => {
                        if per_try_timeout {
                            if let Some(cs) = cs {
                                cs.inc(w.index, ClusterStat::UpstreamRqPerTryTimeout);
                            }
                        }
                        if matches!(decision, Decision::Retry { .. })
                            && creq.retries.take(w, cluster_id)
                        {
                            continue;
                        }
                        return Err(e);
                    }
                    Decision::Accept => return Err(e),
                }
            }
        }
    }
}
