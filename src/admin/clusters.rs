//! `/clusters`: every cluster's circuit breakers and current endpoints, in Envoy's text and JSON.
//!
//! Endpoints come from the membership hub's current snapshot, so what is shown is exactly the set
//! workers are balancing over right now; per-endpoint counters are summed over worker slots.
//! Health flags come from `upstream::health`: `/failed_active_hc` and `/failed_outlier_check` (the
//! latter while any worker has the endpoint ejected), printed as Envoy prints them.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::config::{Bootstrap, CircuitBreakers};
use crate::stats::EndpointStat;
use crate::upstream::endpoint_health::{EJECTED_OUTLIER, FAILED_ACTIVE_HC};
use crate::upstream::membership::MembershipSnapshot;

fn thresholds(cb: &CircuitBreakers) -> [(&'static str, u32); 4] {
    [
        ("max_connections", cb.max_connections),
        ("max_pending_requests", cb.max_pending_requests),
        ("max_requests", cb.max_requests),
        ("max_retries", cb.max_retries),
    ]
}

/// Endpoint stats in name order, as Envoy lists them.
fn sorted_stats() -> Vec<EndpointStat> {
    let mut v = EndpointStat::ALL.to_vec();
    v.sort_by_key(|s| s.name());
    v
}

/// Envoy's `/clusters` text format.
pub fn text(cfg: &Bootstrap, snap: &MembershipSnapshot) -> String {
    let mut out = String::new();
    let stats = sorted_stats();
    for (id, c) in cfg.clusters.iter().enumerate() {
        let n = &c.name;
        let _ = writeln!(out, "{n}::observability_name::{n}");
        // Ringway applies one set of thresholds; Envoy lists its defaults for both priorities.
        for prio in ["default_priority", "high_priority"] {
            for (k, v) in thresholds(&c.circuit_breakers) {
                let _ = writeln!(out, "{n}::{prio}::{k}::{v}");
            }
        }
        let _ = writeln!(out, "{n}::added_via_api::false");
        let Some(members) = snap.clusters.get(id) else {
            continue;
        };
        for e in &members.endpoints {
            let a = e.addr;
            for s in &stats {
                let _ = writeln!(out, "{n}::{a}::{}::{}", s.name(), e.stats.get(*s));
            }
            let _ = writeln!(out, "{n}::{a}::hostname::{}", e.hostname);
            let _ = writeln!(
                out,
                "{n}::{a}::health_flags::{}",
                health_flags(e.health.flags())
            );
            let _ = writeln!(out, "{n}::{a}::weight::1");
            let _ = writeln!(out, "{n}::{a}::region::");
            let _ = writeln!(out, "{n}::{a}::zone::");
            let _ = writeln!(out, "{n}::{a}::sub_zone::");
            let _ = writeln!(out, "{n}::{a}::canary::false");
            let _ = writeln!(out, "{n}::{a}::priority::0");
            let _ = writeln!(out, "{n}::{a}::success_rate::-1");
            let _ = writeln!(out, "{n}::{a}::local_origin_success_rate::-1");
        }
    }
    out
}

/// Envoy's `health_flags` text: `healthy`, or each failed check as `/name`.
fn health_flags(flags: u8) -> String {
    if flags == 0 {
        return "healthy".to_owned();
    }
    let mut s = String::new();
    if flags & FAILED_ACTIVE_HC != 0 {
        s.push_str("/failed_active_hc");
    }
    if flags & EJECTED_OUTLIER != 0 {
        s.push_str("/failed_outlier_check");
    }
    s
}

fn socket_address(a: SocketAddr) -> Value {
    json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
}

/// Envoy's `/clusters?format=json` (`envoy.admin.v3.Clusters`). Counter values are strings, as
/// the protobuf JSON mapping prints uint64.
pub fn json(cfg: &Bootstrap, snap: &MembershipSnapshot) -> Value {
    let stats = sorted_stats();
    let statuses: Vec<Value> = cfg
        .clusters
        .iter()
        .enumerate()
        .map(|(id, c)| {
            let hosts: Vec<Value> = snap
                .clusters
                .get(id)
                .map(|m| m.endpoints.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|e| {
                    let st: Vec<Value> = stats
                        .iter()
                        .map(|s| {
                            json!({
                                "name": s.name(),
                                "value": e.stats.get(*s).to_string(),
                                "type": if s.is_gauge() { "GAUGE" } else { "COUNTER" },
                            })
                        })
                        .collect();
                    let flags = e.health.flags();
                    let mut health = json!({"eds_health_status": "HEALTHY"});
                    if flags & FAILED_ACTIVE_HC != 0 {
                        health["failed_active_health_check"] = json!(true);
                    }
                    if flags & EJECTED_OUTLIER != 0 {
                        health["failed_outlier_check"] = json!(true);
                    }
                    json!({
                        "address": socket_address(e.addr),
                        "stats": st,
                        "health_status": health,
                        "weight": 1,
                        "hostname": e.hostname,
                        "locality": {},
                    })
                })
                .collect();
            let th: serde_json::Map<String, Value> = thresholds(&c.circuit_breakers)
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            let mut high = th.clone();
            high.insert("priority".into(), json!("HIGH"));
            json!({
                "name": c.name,
                "observability_name": c.name,
                "added_via_api": false,
                "circuit_breakers": {"thresholds": [th, high]},
                "host_statuses": hosts,
            })
        })
        .collect();
    json!({ "cluster_statuses": statuses })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::admin::test_support::bootstrap;
    use crate::stats::Stats;
    use crate::upstream::membership::MembershipHub;

    #[test]
    fn health_flags_as_envoy_prints_them() {
        assert_eq!(health_flags(0), "healthy");
        assert_eq!(health_flags(FAILED_ACTIVE_HC), "/failed_active_hc");
        assert_eq!(
            health_flags(FAILED_ACTIVE_HC | EJECTED_OUTLIER),
            "/failed_active_hc/failed_outlier_check"
        );
    }

    #[test]
    fn text_and_json_show_thresholds_and_endpoints() {
        let cfg = bootstrap();
        let stats = Stats::new(&cfg, 2);
        let hub = MembershipHub::new(&cfg, stats, 2);
        let snap = hub.current();
        let e = &snap.clusters[0].endpoints[0];
        e.stats.inc(0, EndpointStat::RqTotal);
        e.stats.inc(1, EndpointStat::RqTotal);
        e.stats.inc(1, EndpointStat::RqSuccess);
        e.stats.inc(0, EndpointStat::CxTotal);

        let t = text(&cfg, &snap);
        let lines: Vec<&str> = t.lines().collect();
        for want in [
            "service1::default_priority::max_connections::1024",
            "service1::default_priority::max_retries::3",
            "service1::127.0.0.1:8081::cx_total::1",
            "service1::127.0.0.1:8081::rq_total::2",
            "service1::127.0.0.1:8081::rq_success::1",
            "service1::127.0.0.1:8081::rq_error::0",
            "service1::127.0.0.1:8081::rq_active::0",
            "service1::127.0.0.1:8081::cx_active::0",
            "service1::127.0.0.1:8081::health_flags::healthy",
            "service1::127.0.0.1:8081::weight::1",
            "service1::127.0.0.1:8081::hostname::127.0.0.1",
            "service1::127.0.0.1:8082::rq_total::0",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{t}");
        }

        let j = json(&cfg, &snap);
        let c = &j["cluster_statuses"][0];
        assert_eq!(c["name"], "service1");
        assert_eq!(
            c["circuit_breakers"]["thresholds"][0]["max_connections"],
            1024
        );
        let h = &c["host_statuses"][0];
        assert_eq!(
            h["address"],
            json!({"socket_address": {"address": "127.0.0.1", "port_value": 8081}})
        );
        assert_eq!(h["health_status"]["eds_health_status"], "HEALTHY");
        let rq_total = h["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "rq_total")
            .unwrap();
        assert_eq!(rq_total["value"], "2");
        assert_eq!(c["host_statuses"].as_array().unwrap().len(), 2);
    }
}
