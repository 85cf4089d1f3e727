//! The codec-neutral parts of one exchange (a request and its response through a cluster).
//!
//! Whatever the codecs on either side (HTTP/1.1 or HTTP/2 downstream, HTTP/1.1 or HTTP/2
//! upstream), an exchange goes through the same phases, and each phase's rules live here once:
//!
//! 1. **admission** ([`admission`]): the cluster's circuit breakers and member set; the request
//!    then holds a [`admission::ClusterRequest`] that gives everything back when it drops;
//! 2. **endpoint choice and connection** ([`endpoint`]): load balancing with health, outlier
//!    ejection and the previous-host rule, then a pooled HTTP/1.1 connection or an HTTP/2
//!    stream slot, each holding its `max_connections` permit;
//! 3. **attempts and the retry decision** ([`attempts`], [`retry`]): the one attempt loop and
//!    its bookkeeping around a pure decision function of policy, outcome, state and clock;
//! 4. **failures** ([`outcome`]): Envoy's local reply, response flag and stat for each way an
//!    attempt can fail;
//! 5. **time** ([`watchdog`]): progress stamps and one watchdog per exchange for the stream
//!    limits (`stream_idle_timeout` or the route's `idle_timeout`, `request_timeout`,
//!    `max_stream_duration`);
//! 6. **the record** ([`request_log`]): what the access-log line and stats of the request say;
//!    [`active`] holds the request's `downstream_rq_active` and in-flight units while it lives.
//!
//! The forwarders in `proxy::forward` (HTTP/1.1 clients) and `proxy::stream_forward` (HTTP/2
//! streams) drive these phases with their codec's I/O.

pub mod active;
pub mod admission;
pub mod attempts;
pub mod endpoint;
pub mod outcome;
pub mod request_log;
pub mod retry;
pub mod watchdog;
