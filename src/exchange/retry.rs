//! The retry decision: a pure function of the route's policy, the attempt's outcome, the
//! request's retry state and the clock.
//!
//! Both codecs' attempts end in the same question (answer the client with this, try again, or
//! give up), so the answer lives here once, with a unit test per branch, instead of in each
//! forwarder where copies drifted (one honoured `refused-stream`, one forgot `retriable-4xx`).
//! What the caller still does is the side effects: take the retry from the circuit breaker
//! (which may refuse it), count stats, report the endpoint to outlier detection.
//!
//! Envoy's rules (router `retry_on`, `RetryStateImpl`):
//! - a response is retried for `5xx` (any 5xx), `gateway-error` (502, 503, 504) and
//!   `retriable-4xx` (409);
//! - an attempt that got no response (reset, refused stream, protocol error, per-try timeout)
//!   is retried for `reset`, `5xx` and `gateway-error`; a connect failure also for
//!   `connect-failure`, a refused stream also for `refused-stream`;
//! - the route's own timeout is never retried; a per-try timeout is, while the route's holds;
//! - nothing is retried once part of a body too large to buffer has been sent.
//!
//! Ringway adds the keep-alive race rule: a reused connection that failed before any response
//! byte (the upstream closed it as we sent), or an HTTP/2 stream refused unprocessed (GOAWAY,
//! REFUSED_STREAM), gets one transparent retry on a fresh connection to the same endpoint,
//! whatever the policy, because the request never reached the application.

use std::time::Instant;

use crate::config::{RetryOn, RetryPolicy};

/// Why an attempt failed before a usable response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// Connection refused, connect timeout, TLS handshake failure.
    Connect,
    /// Too many connections for this worker's share of `max_connections`.
    Overflow,
    /// Write failed or the upstream closed/reset before a response head. `before_response`:
    /// not a byte of response had arrived.
    Reset { before_response: bool },
    /// An HTTP/2 upstream refused the stream unprocessed (REFUSED_STREAM or GOAWAY past it).
    Refused,
    /// No response head within the per-try or route deadline.
    Timeout,
    /// The upstream's response was not valid HTTP.
    Protocol,
    /// The client went away (or stalled past its idle timeout) while we read its body.
    Downstream,
    /// The client's body turned out malformed while streaming.
    BadBody,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// A response head with this status.
    Response(u16),
    /// No usable response. `reused`: the attempt ran on a connection that served before.
    Failed { error: AttemptError, reused: bool },
}

/// What the request has left to retry with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryState {
    /// Retries the route still allows.
    pub retries_left: u32,
    /// The one keep-alive-race retry was used already.
    pub reuse_retry_used: bool,
    /// The request can be sent again (its body is buffered, or none was sent yet).
    pub replayable: bool,
}

/// The deadlines that bound the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: Instant,
    /// The route's `timeout` for the whole request.
    pub route_deadline: Option<Instant>,
    /// The attempt's `per_try_timeout`.
    pub per_try_deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Relay this response to the client.
    Accept,
    /// Try again on a fresh connection to the same endpoint; not counted as a retry.
    RetryFresh,
    /// Try again (another endpoint when there is one), if the circuit breaker allows a retry.
    /// `per_try_timeout`: the attempt ended by its per-try timeout (counted as such).
    Retry { per_try_timeout: bool },
    /// Give up and answer for this error.
    Fail {
        error: AttemptError,
        per_try_timeout: bool,
    },
}

fn on(policy: Option<&RetryPolicy>, flags: &[RetryOn]) -> bool {
    policy.is_some_and(|p| flags.iter().any(|f| p.retry_on.contains(*f)))
}

/// Whether a response with `status` is one the policy retries.
pub fn retriable_status(policy: Option<&RetryPolicy>, status: u16) -> bool {
    (status >= 500 && on(policy, &[RetryOn::FIVE_XX]))
        || (matches!(status, 502..=504) && on(policy, &[RetryOn::GATEWAY_ERROR]))
        || (status == 409 && on(policy, &[RetryOn::RETRIABLE_4XX]))
}

/// The decision after one attempt (see the module docs for the rules).
pub fn decide(
    policy: Option<&RetryPolicy>,
    outcome: Attempted,
    state: RetryState,
    clock: Clock,
) -> Decision {
    let can_retry = state.replayable && state.retries_left > 0;
    let error = match outcome {
        Attempted::Response(status) => {
            return if can_retry && retriable_status(policy, status) {
                Decision::Retry {
                    per_try_timeout: false,
                }
            } else {
                Decision::Accept
            };
        }
        Attempted::Failed { error, reused } => {
            // A reused connection reset before any response byte, or a stream the upstream
            // refused unprocessed: the request never reached the application.
            let stale = reused
                && matches!(
                    error,
                    AttemptError::Reset {
                        before_response: true
                    } | AttemptError::Refused
                );
            if stale && !state.reuse_retry_used && state.replayable {
                return Decision::RetryFresh;
            }
            error
        }
    };
    let route_expired = clock.route_deadline.is_some_and(|d| d <= clock.now);
    let per_try_timeout = error == AttemptError::Timeout
        && !route_expired
        && clock.per_try_deadline.is_some_and(|d| d <= clock.now);
    let no_response = [RetryOn::RESET, RetryOn::FIVE_XX, RetryOn::GATEWAY_ERROR];
    let policy_says = match error {
        AttemptError::Connect => {
            on(policy, &no_response) || on(policy, &[RetryOn::CONNECT_FAILURE])
        }
        AttemptError::Refused => on(policy, &no_response) || on(policy, &[RetryOn::REFUSED_STREAM]),
        AttemptError::Reset { .. } | AttemptError::Protocol => on(policy, &no_response),
        AttemptError::Timeout => per_try_timeout && on(policy, &no_response),
        // Local conditions: another attempt would meet the same breaker or the same client.
        AttemptError::Overflow | AttemptError::Downstream | AttemptError::BadBody => false,
    };
    if policy_says && can_retry && !route_expired {
        Decision::Retry { per_try_timeout }
    } else {
        Decision::Fail {
            error,
            per_try_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(flags: &[RetryOn]) -> RetryPolicy {
        let mut retry_on = RetryOn::default();
        for f in flags {
            retry_on.insert(*f);
        }
        RetryPolicy {
            retry_on,
            num_retries: 1,
            per_try_timeout: None,
        }
    }

    fn state() -> RetryState {
        RetryState {
            retries_left: 1,
            reuse_retry_used: false,
            replayable: true,
        }
    }

    fn clock() -> Clock {
        Clock {
            now: Instant::now(),
            route_deadline: None,
            per_try_deadline: None,
        }
    }

    fn failed(error: AttemptError) -> Attempted {
        Attempted::Failed {
            error,
            reused: false,
        }
    }

    const RETRY: Decision = Decision::Retry {
        per_try_timeout: false,
    };

    fn fail(error: AttemptError) -> Decision {
        Decision::Fail {
            error,
            per_try_timeout: false,
        }
    }

    #[test]
    fn responses_by_policy() {
        let p5 = policy(&[RetryOn::FIVE_XX]);
        let gw = policy(&[RetryOn::GATEWAY_ERROR]);
        let r4 = policy(&[RetryOn::RETRIABLE_4XX]);
        let cases = [
            (Some(&p5), 500, RETRY),
            (Some(&p5), 503, RETRY),
            (Some(&p5), 404, Decision::Accept),
            (Some(&gw), 500, Decision::Accept),
            (Some(&gw), 502, RETRY),
            (Some(&gw), 504, RETRY),
            (Some(&r4), 409, RETRY),
            (Some(&r4), 500, Decision::Accept),
            (None, 503, Decision::Accept),
            (Some(&p5), 200, Decision::Accept),
        ];
        for (p, status, want) in cases {
            assert_eq!(
                decide(p, Attempted::Response(status), state(), clock()),
                want,
                "status {status} with {p:?}"
            );
        }
    }

    #[test]
    fn a_response_is_accepted_when_no_retry_is_left_or_the_body_is_gone() {
        let p = policy(&[RetryOn::FIVE_XX]);
        let spent = RetryState {
            retries_left: 0,
            ..state()
        };
        assert_eq!(
            decide(Some(&p), Attempted::Response(503), spent, clock()),
            Decision::Accept
        );
        let streamed = RetryState {
            replayable: false,
            ..state()
        };
        assert_eq!(
            decide(Some(&p), Attempted::Response(503), streamed, clock()),
            Decision::Accept
        );
    }

    #[test]
    fn keep_alive_race_is_retried_once_whatever_the_policy() {
        let race = Attempted::Failed {
            error: AttemptError::Reset {
                before_response: true,
            },
            reused: true,
        };
        assert_eq!(decide(None, race, state(), clock()), Decision::RetryFresh);
        let used = RetryState {
            reuse_retry_used: true,
            ..state()
        };
        assert_eq!(
            decide(None, race, used, clock()),
            fail(AttemptError::Reset {
                before_response: true
            })
        );
        // Not after part of a streamed body went out.
        let streamed = RetryState {
            replayable: false,
            ..state()
        };
        assert_eq!(
            decide(None, race, streamed, clock()),
            fail(AttemptError::Reset {
                before_response: true
            })
        );
        // A refused stream (reported as reused: it never reached the application) likewise.
        let refused = Attempted::Failed {
            error: AttemptError::Refused,
            reused: true,
        };
        assert_eq!(
            decide(None, refused, state(), clock()),
            Decision::RetryFresh
        );
        // A fresh connection's reset is not the race.
        let fresh = failed(AttemptError::Reset {
            before_response: true,
        });
        assert_eq!(
            decide(None, fresh, state(), clock()),
            fail(AttemptError::Reset {
                before_response: true
            })
        );
    }

    #[test]
    fn resets_and_protocol_errors_retry_under_reset_5xx_and_gateway_error() {
        let reset = AttemptError::Reset {
            before_response: false,
        };
        for flag in [RetryOn::RESET, RetryOn::FIVE_XX, RetryOn::GATEWAY_ERROR] {
            let p = policy(&[flag]);
            assert_eq!(decide(Some(&p), failed(reset), state(), clock()), RETRY);
            assert_eq!(
                decide(Some(&p), failed(AttemptError::Protocol), state(), clock()),
                RETRY
            );
        }
        let p = policy(&[RetryOn::CONNECT_FAILURE]);
        assert_eq!(
            decide(Some(&p), failed(reset), state(), clock()),
            fail(reset)
        );
    }

    #[test]
    fn connect_failures_and_refused_streams_have_their_own_flags() {
        let cf = policy(&[RetryOn::CONNECT_FAILURE]);
        let rs = policy(&[RetryOn::REFUSED_STREAM]);
        let c = failed(AttemptError::Connect);
        let r = failed(AttemptError::Refused);
        assert_eq!(decide(Some(&cf), c, state(), clock()), RETRY);
        assert_eq!(
            decide(Some(&cf), r, state(), clock()),
            fail(AttemptError::Refused)
        );
        assert_eq!(decide(Some(&rs), r, state(), clock()), RETRY);
        assert_eq!(
            decide(Some(&rs), c, state(), clock()),
            fail(AttemptError::Connect)
        );
        let p5 = policy(&[RetryOn::FIVE_XX]);
        assert_eq!(decide(Some(&p5), c, state(), clock()), RETRY);
        assert_eq!(decide(Some(&p5), r, state(), clock()), RETRY);
    }

    #[test]
    fn per_try_timeout_is_retried_but_the_route_timeout_is_not() {
        let p = policy(&[RetryOn::FIVE_XX]);
        let now = Instant::now();
        let per_try_fired = Clock {
            now,
            route_deadline: Some(now + Duration::from_secs(5)),
            per_try_deadline: Some(now - Duration::from_millis(1)),
        };
        assert_eq!(
            decide(
                Some(&p),
                failed(AttemptError::Timeout),
                state(),
                per_try_fired
            ),
            Decision::Retry {
                per_try_timeout: true
            }
        );
        let route_fired = Clock {
            now,
            route_deadline: Some(now - Duration::from_millis(1)),
            per_try_deadline: Some(now - Duration::from_millis(1)),
        };
        assert_eq!(
            decide(
                Some(&p),
                failed(AttemptError::Timeout),
                state(),
                route_fired
            ),
            fail(AttemptError::Timeout)
        );
        // A per-try timeout with no retry left is still reported as one.
        let spent = RetryState {
            retries_left: 0,
            ..state()
        };
        assert_eq!(
            decide(
                Some(&p),
                failed(AttemptError::Timeout),
                spent,
                per_try_fired
            ),
            Decision::Fail {
                error: AttemptError::Timeout,
                per_try_timeout: true
            }
        );
    }

    #[test]
    fn a_retriable_failure_after_the_route_deadline_gives_up() {
        let p = policy(&[RetryOn::RESET]);
        let now = Instant::now();
        let expired = Clock {
            now,
            route_deadline: Some(now),
            per_try_deadline: None,
        };
        let reset = AttemptError::Reset {
            before_response: false,
        };
        assert_eq!(
            decide(Some(&p), failed(reset), state(), expired),
            fail(reset)
        );
    }

    #[test]
    fn local_conditions_are_never_retried() {
        let all = policy(&[
            RetryOn::FIVE_XX,
            RetryOn::GATEWAY_ERROR,
            RetryOn::RESET,
            RetryOn::CONNECT_FAILURE,
            RetryOn::REFUSED_STREAM,
            RetryOn::RETRIABLE_4XX,
        ]);
        for e in [
            AttemptError::Overflow,
            AttemptError::Downstream,
            AttemptError::BadBody,
        ] {
            assert_eq!(decide(Some(&all), failed(e), state(), clock()), fail(e));
        }
    }

    #[test]
    fn nothing_is_retried_once_a_streamed_body_went_out() {
        let p = policy(&[RetryOn::RESET]);
        let streamed = RetryState {
            replayable: false,
            ..state()
        };
        let reset = AttemptError::Reset {
            before_response: false,
        };
        assert_eq!(
            decide(Some(&p), failed(reset), streamed, clock()),
            fail(reset)
        );
    }
}
