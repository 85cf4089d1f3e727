//! Circuit-breaker accounting by ownership: every count that gates admission is a guard.
//!
//! Envoy's four DEFAULT-priority breakers (`max_connections`, `max_pending_requests`,
//! `max_requests`, `max_retries`) are counted per worker, in the worker's own slot of the
//! cluster's [`BreakerCounts`], and split evenly between workers (`Worker::share`) so no count
//! is ever shared between threads. The slot is both the admission gate (the worker reads its own
//! slot) and what `/stats` publishes as `circuit_breakers.default.*` (the admin thread sums the
//! slots), so there is one source of truth.
//!
//! A count is only ever taken by creating a guard and only ever given back by dropping it. An
//! exchange can be dropped at any `.await` (the client resets its stream, a deadline fires, a
//! `select!` picks the other branch); whatever it held is returned by the drop glue, on every
//! path, without a matching call that some exit could forget. That is the fix for the leak that
//! let cancelled requests switch a cluster off for good.

use std::sync::Arc;

pub use crate::stats::breakers::{Breaker, BreakerCounts};
use crate::stats::Stats;

/// One unit of one breaker, held by whatever owns this value and given back when it drops.
/// The `Arc<Stats>` keeps the counts alive however long the holder lives (a connection's
/// permit moves into its driver task).
pub struct BreakerHold {
    stats: Arc<Stats>,
    worker: usize,
    cluster: usize,
    breaker: Breaker,
}

impl BreakerHold {
    /// Takes one unit of `breaker` for `cluster` when `worker` is under `share` (its part of the
    /// threshold); `None` when the breaker is saturated (the caller counts its overflow stat).
    pub fn try_take(
        stats: &Arc<Stats>,
        worker: usize,
        cluster: usize,
        breaker: Breaker,
        share: u32,
    ) -> Option<BreakerHold> {
        let counts = &stats.clusters.get(cluster)?.breakers;
        if counts.held(worker, breaker) >= u64::from(share) {
            return None;
        }
        counts.take(worker, breaker);
        Some(BreakerHold {
            stats: stats.clone(),
            worker,
            cluster,
            breaker,
        })
    }

    /// Takes one unit whatever the threshold (for counts that are published but do not gate).
    pub fn take_unchecked(
        stats: &Arc<Stats>,
        worker: usize,
        cluster: usize,
        breaker: Breaker,
    ) -> Option<BreakerHold> {
        Self::try_take(stats, worker, cluster, breaker, u32::MAX)
    }
}

impl Drop for BreakerHold {
    fn drop(&mut self) {
        if let Some(cs) = self.stats.clusters.get(self.cluster) {
            cs.breakers.give(self.worker, self.breaker);
        }
    }
}

/// [`BreakerHold`] for holders that live inside one request (admission, a retry's back-off):
/// it borrows the counts instead of cloning the `Arc`, so the per-request path touches no
/// reference count shared with other workers.
pub struct BreakerLease<'a> {
    counts: &'a BreakerCounts,
    worker: usize,
    breaker: Breaker,
}

impl<'a> BreakerLease<'a> {
    /// As [`BreakerHold::try_take`].
    pub fn try_take(
        counts: &'a BreakerCounts,
        worker: usize,
        breaker: Breaker,
        share: u32,
    ) -> Option<BreakerLease<'a>> {
        if counts.held(worker, breaker) >= u64::from(share) {
            return None;
        }
        counts.take(worker, breaker);
        Some(BreakerLease {
            counts,
            worker,
            breaker,
        })
    }
}

impl Drop for BreakerLease<'_> {
    fn drop(&mut self) {
        self.counts.give(self.worker, self.breaker);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Bootstrap;

    fn stats_with_one_cluster(workers: usize, limits: [u64; 4]) -> Arc<Stats> {
        let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: {virtual_hosts: []}
          http_filters: [{name: envoy.filters.http.router}]
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
"#;
        let cfg: Bootstrap = crate::config::load_str(yaml)
            .expect("test config loads")
            .bootstrap;
        let stats = Stats::new(&cfg, workers);
        let mut stats = Arc::try_unwrap(stats).ok().expect("sole owner");
        stats.clusters[0].breakers = BreakerCounts::new(workers, limits);
        Arc::new(stats)
    }

    #[test]
    fn holds_are_returned_on_drop_and_gate_at_the_share() {
        let stats = stats_with_one_cluster(2, [4, 4, 4, 4]);
        let a = BreakerHold::try_take(&stats, 0, 0, Breaker::Requests, 2).expect("first");
        let b = BreakerHold::try_take(&stats, 0, 0, Breaker::Requests, 2).expect("second");
        assert!(BreakerHold::try_take(&stats, 0, 0, Breaker::Requests, 2).is_none());
        // The other worker's share is its own.
        let c = BreakerHold::try_take(&stats, 1, 0, Breaker::Requests, 2).expect("other worker");
        let counts = &stats.clusters[0].breakers;
        assert_eq!(counts.total(Breaker::Requests), 3);
        assert_eq!(counts.published(Breaker::Requests), (0, 1));
        drop(a);
        assert_eq!(counts.held(0, Breaker::Requests), 1);
        drop((b, c));
        assert_eq!(counts.total(Breaker::Requests), 0);
        assert_eq!(counts.published(Breaker::Requests), (0, 4));
    }

    #[test]
    fn leases_share_the_counts_with_holds() {
        let stats = stats_with_one_cluster(1, [2, 2, 2, 2]);
        let counts = &stats.clusters[0].breakers;
        let lease = BreakerLease::try_take(counts, 0, Breaker::Requests, 2).expect("lease");
        let hold = BreakerHold::try_take(&stats, 0, 0, Breaker::Requests, 2).expect("hold");
        assert!(BreakerLease::try_take(counts, 0, Breaker::Requests, 2).is_none());
        drop(lease);
        assert_eq!(counts.total(Breaker::Requests), 1);
        drop(hold);
        assert_eq!(counts.total(Breaker::Requests), 0);
    }

    #[test]
    fn a_saturated_breaker_publishes_open() {
        let stats = stats_with_one_cluster(1, [1, 1, 1, 1]);
        let held = BreakerHold::try_take(&stats, 0, 0, Breaker::Retries, 1).expect("take");
        let counts = &stats.clusters[0].breakers;
        assert_eq!(counts.published(Breaker::Retries), (1, 0));
        drop(held);
        assert_eq!(counts.published(Breaker::Retries), (0, 1));
    }

    #[test]
    fn a_dropped_future_gives_back_what_it_held() {
        // A future holding a permit across an await point, dropped before it finishes.
        let stats = stats_with_one_cluster(1, [8, 8, 8, 8]);
        let s = stats.clone();
        let fut = async move {
            let _hold = BreakerHold::try_take(&s, 0, 0, Breaker::Connections, 8);
            std::future::pending::<()>().await;
        };
        let mut fut = Box::pin(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(stats.clusters[0].breakers.total(Breaker::Connections), 1);
        drop(fut);
        assert_eq!(stats.clusters[0].breakers.total(Breaker::Connections), 0);
    }

    use std::future::Future;
}
