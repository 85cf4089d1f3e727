//! The control thread: everything that changes membership, off the request path.
//!
//! DNS: STRICT_DNS and LOGICAL_DNS clusters are resolved once before the workers
//! start (a name that does not resolve then is a start-up error, as a typo should be), and
//! re-resolved every `dns_refresh_rate`; a changed answer becomes a new membership snapshot.
//! A failed re-resolution keeps the last good answer.
//!
//! EDS (`eds.rs`): each EDS cluster's `DiscoveryResponse` file is read before the workers start
//! and polled from this thread afterwards; a changed file becomes a new snapshot within a second.
//! The admin membership API (`admin/membership.rs`) changes members from the admin thread through
//! the same [`MembershipHub`].

pub mod eds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Bootstrap, DiscoveryType};
use crate::upstream::dns::resolve_cluster;
use crate::upstream::membership::MembershipHub;
use eds::EdsSource;

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

/// First read of every EDS cluster's file; a missing or bad file stops start-up.
pub fn load_eds_clusters(cfg: &Bootstrap, hub: &MembershipHub) -> Result<Vec<EdsSource>, String> {
    let mut sources = eds::sources(cfg);
    for s in &mut sources {
        s.load(hub)?;
    }
    Ok(sources)
}

/// Starts the control thread when any cluster needs it: DNS re-resolution every
/// `dns_refresh_rate`, and EDS files polled every [`eds::POLL`].
pub fn spawn(cfg: Arc<Bootstrap>, hub: Arc<MembershipHub>, mut eds: Vec<EdsSource>) {
    if eds.is_empty() && !cfg.clusters.iter().any(|c| is_dns(c.discovery)) {
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
                for source in &mut eds {
                    source.poll(&hub);
                }
                let mut wake = cfg
                    .clusters
                    .iter()
                    .zip(&next)
                    .filter(|(c, _)| is_dns(c.discovery))
                    .map(|(_, t)| *t)
                    .min()
                    .unwrap_or(now + Duration::from_secs(5));
                if !eds.is_empty() {
                    wake = wake.min(now + eds::POLL);
                }
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
