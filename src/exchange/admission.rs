//! A request's hold on its cluster: admission against the circuit breakers and the retries it
//! takes, each released when the holder drops.
//!
//! [`admit`] is the one door into a cluster for every codec: it checks this worker's share of
//! `max_requests` and that the cluster has members, and returns a [`ClusterRequest`] that holds
//! the request's breaker unit, its `upstream_rq_active` gauge and its [`RetryBudget`]. Whatever
//! ends the request (its response relayed, a local reply, the client resetting its stream, a
//! tunnel closing), dropping the `ClusterRequest` gives all of it back.

use std::time::Duration;

use crate::config::{ClusterId, RetryPolicy};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::worker::Worker;
use crate::stats::ClusterStat;
use crate::upstream::admission::{Breaker, BreakerLease};

use super::outcome::Reply;

/// A request admitted to a cluster (see the module docs).
pub struct ClusterRequest<'w> {
    w: &'w Worker,
    pub cluster: ClusterId,
    _slot: BreakerLease<'w>,
    pub retries: RetryBudget<'w>,
}

impl Drop for ClusterRequest<'_> {
    fn drop(&mut self) {
        if let Some(cs) = self.w.stats().clusters.get(self.cluster) {
            cs.dec(self.w.index, ClusterStat::UpstreamRqActive);
        }
    }
}

/// Admission against the cluster's circuit breakers (this worker's share) and its member set.
pub fn admit<'w>(
    w: &'w Worker,
    cluster_id: ClusterId,
    policy: Option<&RetryPolicy>,
) -> Result<ClusterRequest<'w>, Reply> {
    let (Some(cluster), Some(cs)) = (
        w.shared.config.clusters.get(cluster_id),
        w.stats().clusters.get(cluster_id),
    ) else {
        return Err((503, ResponseFlags::NO_HEALTHY_UPSTREAM, b"no cluster"));
    };
    let share = w.share(cluster.circuit_breakers.max_requests);
    let Some(slot) = BreakerLease::try_take(&cs.breakers, w.index, Breaker::Requests, share) else {
        cs.inc(w.index, ClusterStat::UpstreamRqPendingOverflow);
        return Err((
            503,
            ResponseFlags::UPSTREAM_OVERFLOW,
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ));
    };
    let no_members = w
        .membership
        .borrow()
        .current
        .clusters
        .get(cluster_id)
        .is_none_or(|m| m.endpoints.is_empty());
    if no_members {
        cs.inc(w.index, ClusterStat::UpstreamCxNoneHealthy);
        return Err((
            503,
            ResponseFlags::NO_HEALTHY_UPSTREAM,
            b"no healthy upstream",
        ));
    }
    cs.inc(w.index, ClusterStat::UpstreamRqActive);
    Ok(ClusterRequest {
        w,
        cluster: cluster_id,
        _slot: slot,
        retries: RetryBudget {
            left: policy.map_or(0, |p| p.num_retries),
            taken: 0,
            held: None,
        },
    })
}

/// Envoy's default retry back-off: full jitter over 25 ms doubling per retry, capped at 250 ms.
const RETRY_BACKOFF_BASE_MS: u64 = 25;
const RETRY_BACKOFF_MAX_MS: u64 = 250;

/// One request's retries. As in Envoy, a retry counts against the cluster's `max_retries`
/// circuit breaker (this worker's share) while it waits out its back-off, and is released when
/// the retried attempt starts (or the request is dropped while it waits).
pub struct RetryBudget<'w> {
    /// Retries the route still allows.
    pub left: u32,
    /// Retries taken so far (for `upstream_rq_retry_success`).
    pub taken: u32,
    held: Option<BreakerLease<'w>>,
}

impl<'w> RetryBudget<'w> {
    /// Takes a retry if the route allows another and this worker's share of `max_retries`
    /// outstanding retries is not used up.
    pub fn take(&mut self, w: &'w Worker, cluster: ClusterId) -> bool {
        if self.left == 0 {
            return false;
        }
        let (Some(cs), Some(cfg)) = (
            w.stats().clusters.get(cluster),
            w.shared.config.clusters.get(cluster),
        ) else {
            return false;
        };
        let share = w.share(cfg.circuit_breakers.max_retries);
        let Some(lease) = BreakerLease::try_take(&cs.breakers, w.index, Breaker::Retries, share)
        else {
            cs.inc(w.index, ClusterStat::UpstreamRqRetryOverflow);
            return false;
        };
        cs.inc(w.index, ClusterStat::UpstreamRqRetry);
        self.held = Some(lease);
        self.taken += 1;
        self.left -= 1;
        true
    }

    /// Before a retried attempt: waits the jittered back-off, then releases the retry's hold.
    pub async fn back_off(&mut self, w: &Worker) {
        if self.held.is_none() {
            return;
        }
        let shift = self.taken.saturating_sub(1).min(4);
        let ceiling = (RETRY_BACKOFF_BASE_MS << shift).min(RETRY_BACKOFF_MAX_MS);
        let delay = w.rng.borrow_mut().below(ceiling + 1);
        if delay > 0 {
            monoio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.held = None;
    }
}
