//! STUB (replaced by the lb work): signatures are the contract.

use crate::config::LbPolicy;

/// A worker's load balancer for one cluster (worker-local state: no sharing).
pub struct LoadBalancer {}

impl LoadBalancer {
    pub fn new(_policy: LbPolicy, _seed: u64) -> Self {
        unimplemented!()
    }
    /// Picks one of `n` endpoints for which `eligible(i)` holds; `active(i)` is the endpoint's
    /// in-flight request count on this worker (LEAST_REQUEST). `None` when none is eligible.
    pub fn pick(&mut self, _n: usize, _eligible: impl Fn(usize) -> bool, _active: impl Fn(usize) -> u32) -> Option<usize> {
        unimplemented!()
    }
}
