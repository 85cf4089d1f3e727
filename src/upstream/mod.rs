//! Upstream side: cluster membership, load balancing, per-worker connection pools, DNS, active
//! health checks and outlier detection.

pub mod admission;
pub mod dns;
pub mod endpoint_health;
pub mod health;
pub mod lb;
pub mod membership;
pub mod outlier;
pub mod pool;
