//! Upstream side: cluster membership, load balancing, per-worker connection pools, DNS.

pub mod dns;
pub mod lb;
pub mod membership;
pub mod pool;
