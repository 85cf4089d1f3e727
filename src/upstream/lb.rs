//! Per-worker, per-cluster endpoint choice: ROUND_ROBIN, RANDOM and LEAST_REQUEST as Envoy does them.
//!
//! Each worker owns one `LoadBalancer` per cluster, so the state (a cursor and a PRNG) is never
//! shared and never locked. Membership changes between calls (endpoints added, drained, marked
//! unhealthy), so the balancer does not keep a host list: the caller passes the current count and
//! two closures, `eligible(i)` and `active(i)`, and `pick` walks indices directly. Nothing is
//! allocated per pick: round robin walks forward from its cursor, and random choices sample an
//! index and reject ineligible ones a bounded number of times before falling back to a scan that
//! picks uniformly among the eligible.

use crate::config::LbPolicy;
use crate::rng::FastRng;

/// Rejection-sampling attempts before the linear fallback. With half the endpoints ineligible the
/// chance of needing the fallback is 1/256; it is only common when almost everything is drained,
/// where the scan is the better strategy anyway.
const SAMPLE_TRIES: u32 = 8;

/// A worker's load balancer for one cluster (worker-local state: no sharing).
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    policy: LbPolicy,
    rng: FastRng,
    /// Round robin: the index to try first on the next pick. Reduced modulo `n` on use because `n`
    /// may change between calls; it starts at a seed-derived offset so that workers (each seeded
    /// differently) do not all hit endpoint 0 first, as Envoy starts each worker at a random offset.
    cursor: u64,
}

impl LoadBalancer {
    pub fn new(policy: LbPolicy, seed: u64) -> Self {
        let mut rng = FastRng::new(seed);
        let cursor = rng.next_u64();
        LoadBalancer {
            policy,
            rng,
            cursor,
        }
    }

    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Picks one of `n` endpoints for which `eligible(i)` holds; `active(i)` is the endpoint's
    /// in-flight request count on this worker (LEAST_REQUEST). `None` when none is eligible.
    pub fn pick(
        &mut self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        active: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        match self.policy {
            LbPolicy::RoundRobin => self.round_robin(n, &eligible),
            LbPolicy::Random => self.random_eligible(n, &eligible, None),
            LbPolicy::LeastRequest => self.least_request(n, &eligible, &active),
        }
    }

    fn round_robin(&mut self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = (self.cursor % n as u64) as usize;
        for step in 0..n {
            let i = (start + step) % n;
            if eligible(i) {
                self.cursor = (i + 1) as u64;
                return Some(i);
            }
        }
        None
    }

    /// Envoy's default LEAST_REQUEST with equal weights: power of two choices. Two distinct
    /// eligible endpoints are drawn at random and the one with fewer active requests wins; on a
    /// tie the first drawn wins, which keeps the choice random among equally loaded endpoints.
    fn least_request(
        &mut self,
        n: usize,
        eligible: &dyn Fn(usize) -> bool,
        active: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        let first = self.random_eligible(n, eligible, None)?;
        let Some(second) = self.random_eligible(n, eligible, Some(first)) else {
            return Some(first);
        };
        if active(second) < active(first) {
            Some(second)
        } else {
            Some(first)
        }
    }

    /// A uniformly random eligible index other than `exclude`, or `None` if there is none.
    fn random_eligible(
        &mut self,
        n: usize,
        eligible: &dyn Fn(usize) -> bool,
        exclude: Option<usize>,
    ) -> Option<usize> {
        let ok = |i: usize| Some(i) != exclude && eligible(i);
        for _ in 0..SAMPLE_TRIES {
            let i = self.rng.below(n as u64) as usize;
            if ok(i) {
                return Some(i);
            }
        }
        // Fallback: count, then take the k-th eligible. Each accepted sample above is uniform over
        // the eligible set and so is this, so the overall choice stays uniform.
        let count = (0..n).filter(|&i| ok(i)).count();
        if count == 0 {
            return None;
        }
        let k = self.rng.below(count as u64) as usize;
        (0..n).filter(|&i| ok(i)).nth(k)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(_: usize) -> bool {
        true
    }
    fn idle(_: usize) -> u32 {
        0
    }

    #[test]
    fn round_robin_gives_equal_shares() {
        for seed in 0..5 {
            let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, seed);
            let mut counts = [0; 3];
            let mut prev = None;
            for _ in 0..30 {
                let i = lb.pick(3, all, idle).unwrap();
                if let Some(p) = prev {
                    assert_eq!(i, (p + 1) % 3, "strict rotation");
                }
                prev = Some(i);
                counts[i] += 1;
            }
            assert_eq!(counts, [10, 10, 10]);
        }
    }

    #[test]
    fn round_robin_start_depends_on_seed() {
        let firsts: std::collections::HashSet<usize> = (0..32)
            .map(|seed| {
                LoadBalancer::new(LbPolicy::RoundRobin, seed)
                    .pick(8, all, idle)
                    .unwrap()
            })
            .collect();
        assert!(
            firsts.len() > 1,
            "every worker would start at the same endpoint"
        );
    }

    #[test]
    fn round_robin_skips_ineligible() {
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, 9);
        let mut counts = [0; 4];
        for _ in 0..30 {
            counts[lb.pick(4, |i| i != 1, idle).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 0, 10, 10]);
    }

    #[test]
    fn round_robin_survives_shrinking_membership() {
        let mut lb = LoadBalancer::new(LbPolicy::RoundRobin, 1);
        for _ in 0..7 {
            lb.pick(10, all, idle).unwrap();
        }
        for n in (1..10).rev() {
            let i = lb.pick(n, all, idle).unwrap();
            assert!(i < n);
        }
    }

    #[test]
    fn random_is_roughly_uniform() {
        let mut lb = LoadBalancer::new(LbPolicy::Random, 11);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[lb.pick(4, all, idle).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn random_only_picks_eligible_even_when_sparse() {
        // One eligible endpoint among 1000: rejection sampling almost always falls back to the scan.
        let mut lb = LoadBalancer::new(LbPolicy::Random, 2);
        for _ in 0..100 {
            assert_eq!(lb.pick(1000, |i| i == 737, idle), Some(737));
        }
        let mut counts = [0u32; 2];
        for _ in 0..10_000 {
            let i = lb.pick(1000, |i| i == 3 || i == 900, idle).unwrap();
            counts[usize::from(i == 900)] += 1;
        }
        assert!((4_700..=5_300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn least_request_prefers_less_loaded_of_two() {
        let load = [5u32, 2];
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, 4);
        for _ in 0..1000 {
            assert_eq!(lb.pick(2, all, |i| load[i]), Some(1));
        }
    }

    #[test]
    fn least_request_ties_are_spread() {
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, 4);
        let mut counts = [0u32; 2];
        for _ in 0..2000 {
            counts[lb.pick(2, all, idle).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn least_request_favours_light_endpoints_statistically() {
        // Endpoint i carries i active requests. With two choices, endpoint 0 wins whenever drawn
        // (probability 2/10 = 20%) and endpoint 9 never wins; uniform would be 10% each.
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, 8);
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            counts[lb.pick(10, all, |i| i as u32).unwrap()] += 1;
        }
        assert_eq!(counts[9], 0, "{counts:?}");
        assert!((3_600..=4_400).contains(&counts[0]), "{counts:?}");
        for w in counts.windows(2) {
            assert!(w[0] >= w[1], "load order not respected: {counts:?}");
        }
    }

    #[test]
    fn least_request_with_single_eligible() {
        let mut lb = LoadBalancer::new(LbPolicy::LeastRequest, 0);
        for _ in 0..100 {
            assert_eq!(lb.pick(5, |i| i == 2, |_| 100), Some(2));
        }
    }

    #[test]
    fn none_when_nothing_eligible_or_empty() {
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let mut lb = LoadBalancer::new(policy, 3);
            assert_eq!(lb.pick(5, |_| false, idle), None, "{policy:?}");
            assert_eq!(lb.pick(0, all, idle), None, "{policy:?}");
            assert!(lb.pick(1, all, idle) == Some(0), "{policy:?}");
        }
    }
}
