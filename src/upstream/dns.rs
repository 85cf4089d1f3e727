//! Name resolution for STRICT_DNS and LOGICAL_DNS clusters.
//!
//! Resolution uses the system resolver (getaddrinfo: /etc/hosts, then DNS) on the control thread,
//! never on a worker. STRICT_DNS keeps every address of every host; LOGICAL_DNS keeps the first
//! address of its single host, as Envoy does.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{Cluster, DiscoveryType, DnsLookupFamily};

/// Resolves one host according to the lookup family.
pub fn resolve(host: &str, port: u16, family: DnsLookupFamily) -> std::io::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let v4: Vec<SocketAddr> = all.iter().copied().filter(SocketAddr::is_ipv4).collect();
    let v6: Vec<SocketAddr> = all.iter().copied().filter(SocketAddr::is_ipv6).collect();
    let picked = match family {
        DnsLookupFamily::V4Only => v4,
        DnsLookupFamily::V6Only => v6,
        // Envoy's AUTO prefers IPv6 and falls back to IPv4.
        DnsLookupFamily::Auto => {
            if v6.is_empty() {
                v4
            } else {
                v6
            }
        }
        DnsLookupFamily::V4Preferred => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsLookupFamily::All => all,
    };
    let mut out = Vec::new();
    for a in picked {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// The member list of a DNS cluster: (hostname, address) pairs. Errors name the host.
pub fn resolve_cluster(c: &Cluster) -> Result<Vec<(String, SocketAddr)>, String> {
    let mut members = Vec::new();
    for e in &c.endpoints {
        if let Some(addr) = e.addr {
            members.push((e.host.clone(), addr));
            continue;
        }
        let addrs = resolve(&e.host, e.port, c.dns_lookup_family)
            .map_err(|err| format!("cluster '{}': cannot resolve '{}': {err}", c.name, e.host))?;
        match c.discovery {
            DiscoveryType::LogicalDns => {
                if let Some(a) = addrs.first() {
                    members.push((e.host.clone(), *a));
                }
            }
            _ => members.extend(addrs.into_iter().map(|a| (e.host.clone(), a))),
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn localhost_resolves_by_family() {
        let v4 = resolve("localhost", 80, DnsLookupFamily::V4Only).unwrap();
        assert!(v4.iter().all(SocketAddr::is_ipv4));
        assert!(v4.contains(&"127.0.0.1:80".parse().unwrap()));
        assert!(resolve("no-such-host.invalid", 80, DnsLookupFamily::All).is_err());
    }
}
