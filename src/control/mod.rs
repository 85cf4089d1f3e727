//! The control thread: everything that changes membership, off the request path.
//!
//! For now that is DNS: STRICT_DNS and LOGICAL_DNS clusters are resolved once before the workers
//! start (a name that does not resolve then is a start-up error, as a typo should be), and
//! re-resolved every `dns_refresh_rate`; a changed answer becomes a new membership snapshot.
//! A failed re-resolution keeps the last good answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Bootstrap, DiscoveryType};
use crate::upstream::dns::resolve_cluster;
use crate::upstream::membership::MembershipHub;

fn is_dns(d: DiscoveryType) -> bool {
    matches!(d, DiscoveryType::StrictDns | DiscoveryType::LogicalDns)
}

/// First resolution of every DNS cluster; errors stop start-up.
pub fn resolve_dns_clusters(cfg: &Bootstrap, hub: &MembershipHub) -> Result<(), String> {
    for (id, c) in cfg.clusters.iter().enumerate() {
        if is_dns(c.discovery) {
            let members = resolve_cluster(c)?;
            hub.set_endpoints(id, &members);
        }
    }
    Ok(())
}

/// Starts the re-resolution thread when any cluster needs it.
pub fn spawn(cfg: Arc<Bootstrap>, hub: Arc<MembershipHub>) {
    if !cfg.clusters.iter().any(|c| is_dns(c.discovery)) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ringway-control".into())
        .spawn(move || {
            let mut next: Vec<Instant> = cfg
                .clusters
                .iter()
                .map(|c| Instant::now() + c.dns_refresh_rate)
                .collect();
            loop {
                let now = Instant::now();
                for (id, c) in cfg.clusters.iter().enumerate() {
                    if !is_dns(c.discovery) || next[id] > now {
                        continue;
                    }
                    next[id] = now + c.dns_refresh_rate.max(Duration::from_millis(100));
                    match resolve_cluster(c) {
                        Ok(members) => {
                            if hub.set_endpoints(id, &members) {
                                info!(
                                    "cluster '{}': DNS answer changed, {} endpoint(s)",
                                    c.name,
                                    members.len()
                                );
                            }
                        }
                        Err(e) => warn!("{e}; keeping the last good endpoints"),
                    }
                }
                let wake = next
                    .iter()
                    .min()
                    .copied()
                    .unwrap_or(now + Duration::from_secs(5));
                std::thread::sleep(
                    wake.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(50)),
                );
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the control thread: {e}");
    }
}
