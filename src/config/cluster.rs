//! `static_resources.clusters[]`: Envoy's Cluster message into [`Cluster`].
//!
//! Cluster names are registered even when the rest of a cluster is bad, so that routes naming it
//! are not reported a second time as pointing at an undefined cluster.

use serde_yaml_ng::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::duration;
use super::health;
use super::model::*;
use super::protocol;
use super::walk::*;

const CLUSTER: Message = Message {
    supported: &[
        "name",
        "type",
        "connect_timeout",
        "lb_policy",
        "load_assignment",
        "dns_refresh_rate",
        "dns_lookup_family",
        "common_http_protocol_options",
        "max_requests_per_connection",
        "circuit_breakers",
        "per_connection_buffer_limit_bytes",
        "eds_cluster_config",
        "health_checks",
        "outlier_detection",
        "typed_extension_protocol_options",
        "http_protocol_options",
        "http2_protocol_options",
        "transport_socket",
    ],
    unsupported: &[
        "transport_socket_matches",
        "alt_stat_name",
        "cluster_type",
        "load_balancing_policy",
        "upstream_http_protocol_options",
        "dns_jitter",
        "dns_failure_refresh_rate",
        "respect_dns_ttl",
        "dns_resolvers",
        "use_tcp_for_dns_lookups",
        "dns_resolution_config",
        "typed_dns_resolver_config",
        "wait_for_warm_on_init",
        "cleanup_interval",
        "upstream_bind_config",
        "lb_subset_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
        "original_dst_lb_config",
        "least_request_lb_config",
        "round_robin_lb_config",
        "common_lb_config",
        "metadata",
        "protocol_selection",
        "upstream_connection_options",
        "close_connections_on_host_health_failure",
        "ignore_health_on_host_removal",
        "filters",
        "lrs_server",
        "lrs_report_endpoint_metrics",
        "track_timeout_budgets",
        "upstream_config",
        "track_cluster_stats",
        "preconnect_policy",
        "connection_pool_per_downstream_connection",
        "hosts",
    ],
};

const LOAD_ASSIGNMENT: Message = Message {
    supported: &["cluster_name", "endpoints"],
    unsupported: &["named_endpoints", "policy"],
};

const LOCALITY_LB_ENDPOINTS: Message = Message {
    supported: &["lb_endpoints", "priority"],
    unsupported: &[
        "locality",
        "metadata",
        "leds_cluster_locality_config",
        "load_balancing_weight",
        "proximity",
    ],
};

const LB_ENDPOINT: Message = Message {
    supported: &["endpoint"],
    unsupported: &[
        "endpoint_name",
        "health_status",
        "metadata",
        "load_balancing_weight",
    ],
};

const ENDPOINT: Message = Message {
    supported: &["address"],
    unsupported: &["health_check_config", "hostname", "additional_addresses"],
};

const EDS_CLUSTER_CONFIG: Message = Message {
    supported: &["eds_config", "service_name"],
    unsupported: &[],
};

/// The `ConfigSource` of an EDS cluster: only file sources (`path_config_source`, or the older
/// `path`) are read; gRPC/REST/ADS sources need a management-server client Ringway does not have.
const CONFIG_SOURCE: Message = Message {
    supported: &["path_config_source", "path", "resource_api_version"],
    unsupported: &[
        "api_config_source",
        "ads",
        "self",
        "authorities",
        "initial_fetch_timeout",
    ],
};

const PATH_CONFIG_SOURCE: Message = Message {
    supported: &["path"],
    unsupported: &["watched_directory"],
};

const CLUSTER_HTTP_OPTIONS: Message = Message {
    supported: &["idle_timeout", "max_requests_per_connection"],
    unsupported: &[
        "max_connection_duration",
        "max_headers_count",
        "max_response_headers_kb",
        "max_stream_duration",
        "headers_with_underscores_action",
    ],
};

const CIRCUIT_BREAKERS: Message = Message {
    supported: &["thresholds"],
    unsupported: &["per_host_thresholds"],
};

const THRESHOLDS: Message = Message {
    supported: &[
        "priority",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ],
    unsupported: &["retry_budget", "track_remaining", "max_connection_pools"],
};

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub(crate) const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

/// Reads every cluster. Returns the clusters that parsed cleanly and, for each list entry with a
/// readable name, that name (its index is its [`ClusterId`] once the whole file is valid).
pub(crate) fn clusters(cx: &mut Cx, path: &str, v: &Value) -> (Vec<Cluster>, Vec<String>) {
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let Some(items) = list(cx, path, v) else {
        return (out, names);
    };
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let before = cx.errs.len();
        let (c, name) = cluster(cx, &p, item);
        if let Some(name) = name {
            if names.contains(&name) {
                cx.err(&join(&p, "name"), format!("duplicate cluster name {name}"));
            } else {
                names.push(name);
            }
        }
        if let Some(c) = c.filter(|_| cx.errs.len() == before) {
            out.push(c);
        }
    }
    (out, names)
}

fn cluster(cx: &mut Cx, path: &str, v: &Value) -> (Option<Cluster>, Option<String>) {
    let Some(o) = obj(cx, path, v, &CLUSTER) else {
        return (None, None);
    };
    let name = o
        .req(cx, "name")
        .and_then(|n| nonempty_string(cx, &o.at("name"), n));

    let discovery = match o.get("type") {
        Some(t) => enumeration(
            cx,
            &o.at("type"),
            t,
            &[
                ("STATIC", DiscoveryType::Static),
                ("STRICT_DNS", DiscoveryType::StrictDns),
                ("LOGICAL_DNS", DiscoveryType::LogicalDns),
                ("EDS", DiscoveryType::Eds),
            ],
            &["ORIGINAL_DST"],
        ),
        None => Some(DiscoveryType::Static),
    };
    let connect_timeout = match o.get("connect_timeout") {
        Some(d) => duration::read_positive(cx, &o.at("connect_timeout"), d),
        None => Some(Duration::from_secs(5)),
    };
    let lb_policy = match o.get("lb_policy") {
        Some(l) => enumeration(
            cx,
            &o.at("lb_policy"),
            l,
            &[
                ("ROUND_ROBIN", LbPolicy::RoundRobin),
                ("LEAST_REQUEST", LbPolicy::LeastRequest),
                ("RANDOM", LbPolicy::Random),
            ],
            &[
                "RING_HASH",
                "MAGLEV",
                "CLUSTER_PROVIDED",
                "LOAD_BALANCING_POLICY_CONFIG",
            ],
        ),
        None => Some(LbPolicy::RoundRobin),
    };
    let endpoints = match (o.get("load_assignment"), discovery) {
        (Some(_), Some(DiscoveryType::Eds)) => {
            // Envoy ignores it for EDS; saying so beats silently serving other endpoints.
            cx.err(
                &o.at("load_assignment"),
                "EDS clusters take their endpoints from eds_cluster_config; remove load_assignment",
            );
            None
        }
        (Some(la), Some(d)) => load_assignment(cx, &o.at("load_assignment"), la, d),
        (Some(_), None) => None,
        (None, Some(DiscoveryType::LogicalDns)) => {
            cx.err(
                &o.at("load_assignment"),
                "required field is missing (LOGICAL_DNS needs exactly one endpoint)",
            );
            None
        }
        (None, _) => Some(Vec::new()),
    };
    let dns_refresh_rate = match o.get("dns_refresh_rate") {
        Some(d) => duration::read(cx, &o.at("dns_refresh_rate"), d).and_then(|d| {
            // Envoy requires more than 1 ms so re-resolution cannot spin.
            if d <= Duration::from_millis(1) {
                cx.err(&o.at("dns_refresh_rate"), "must be greater than 0.001s");
                None
            } else {
                Some(d)
            }
        }),
        None => Some(Duration::from_secs(5)),
    };
    let dns_lookup_family = match o.get("dns_lookup_family") {
        Some(f) => enumeration(
            cx,
            &o.at("dns_lookup_family"),
            f,
            &[
                ("AUTO", DnsLookupFamily::Auto),
                ("V4_ONLY", DnsLookupFamily::V4Only),
                ("V6_ONLY", DnsLookupFamily::V6Only),
                ("V4_PREFERRED", DnsLookupFamily::V4Preferred),
                ("ALL", DnsLookupFamily::All),
            ],
            &[],
        ),
        None => Some(DnsLookupFamily::Auto),
    };
    let mut idle_timeout = Some(Duration::from_secs(3600));
    let mut max_requests_per_connection = Some(None);
    if let Some(mr) = o.get("max_requests_per_connection") {
        max_requests_per_connection =
            positive_u32(cx, &o.at("max_requests_per_connection"), mr).map(Some);
    }
    let proto = protocol::cluster_protocol(cx, &o);
    // The connection options come from the top-level field or from the typed protocol options
    // entry; `cluster_protocol` has already refused a cluster that sets both.
    let common = match o.get("common_http_protocol_options") {
        Some(h) => Some((o.at("common_http_protocol_options"), h)),
        None => proto.as_ref().and_then(|p| p.common.clone()),
    };
    if let Some((hp, h)) = common {
        if let Some(h) = obj(cx, &hp, h, &CLUSTER_HTTP_OPTIONS) {
            if let Some(d) = h.get("idle_timeout") {
                idle_timeout = duration::read(cx, &h.at("idle_timeout"), d);
            }
            if let Some(mr) = h.get("max_requests_per_connection") {
                if o.has("max_requests_per_connection") {
                    cx.err(
                        &h.at("max_requests_per_connection"),
                        "set both here and in the deprecated cluster-level max_requests_per_connection; keep one",
                    );
                }
                max_requests_per_connection =
                    positive_u32(cx, &h.at("max_requests_per_connection"), mr).map(Some);
            }
        }
    }
    let circuit_breakers = match o.get("circuit_breakers") {
        Some(cb) => circuit_breakers(cx, &o.at("circuit_breakers"), cb),
        None => Some(CircuitBreakers::default()),
    };
    let per_connection_buffer_limit_bytes = match o.get("per_connection_buffer_limit_bytes") {
        Some(b) => u32_val(cx, &o.at("per_connection_buffer_limit_bytes"), b),
        None => Some(DEFAULT_BUFFER_LIMIT),
    };
    let health_checks = match o.get("health_checks") {
        Some(h) => health::health_checks(cx, &o.at("health_checks"), h),
        None => Some(None),
    };
    let outlier = match o.get("outlier_detection") {
        Some(od) => health::outlier_detection(cx, &o.at("outlier_detection"), od).map(Some),
        None => Some(None),
    };
    let tls = match o.get("transport_socket") {
        Some(ts) => super::tls::upstream(cx, &o.at("transport_socket"), ts).map(Some),
        None => Some(None),
    };

    let eds = match (o.get("eds_cluster_config"), discovery) {
        (Some(e), Some(DiscoveryType::Eds)) => {
            eds_cluster_config(cx, &o.at("eds_cluster_config"), e)
        }
        (None, Some(DiscoveryType::Eds)) => {
            cx.err(
                &o.at("eds_cluster_config"),
                "required field is missing (EDS clusters need eds_config.path_config_source.path)",
            );
            None
        }
        (Some(_), Some(_)) => {
            cx.err(&o.at("eds_cluster_config"), "only allowed with type: EDS");
            None
        }
        (_, _) => Some((None, None)),
    };

    let built = (|| {
        let (eds_path, eds_service_name) = eds?;
        Some(Cluster {
            name: name.clone()?,
            discovery: discovery?,
            connect_timeout: connect_timeout?,
            lb_policy: lb_policy?,
            endpoints: endpoints?,
            dns_refresh_rate: dns_refresh_rate?,
            dns_lookup_family: dns_lookup_family?,
            idle_timeout: idle_timeout?,
            max_requests_per_connection: max_requests_per_connection?,
            circuit_breakers: circuit_breakers?,
            per_connection_buffer_limit_bytes: per_connection_buffer_limit_bytes?,
            eds_service_name: match (&eds_service_name, &eds_path) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(_)) => name.clone(),
                (None, None) => None,
            },
            eds_path,
            health_checks: health_checks?,
            outlier: outlier?,
            protocol: proto?.protocol.unwrap_or(UpstreamProtocol::Http1),
            tls: tls?,
        })
    })();
    (built, name)
}

/// `eds_cluster_config`: the watched file and the `service_name` (when set).
fn eds_cluster_config(
    cx: &mut Cx,
    path: &str,
    v: &Value,
) -> Option<(Option<PathBuf>, Option<String>)> {
    let o = obj(cx, path, v, &EDS_CLUSTER_CONFIG)?;
    let before = cx.errs.len();
    let service_name = o
        .get("service_name")
        .and_then(|s| nonempty_string(cx, &o.at("service_name"), s));
    let file = o
        .req(cx, "eds_config")
        .and_then(|c| config_source(cx, &o.at("eds_config"), c));
    (cx.errs.len() == before).then_some((file, service_name))
}

/// A file `ConfigSource`; `path_config_source.path` and the deprecated `path` are both accepted.
fn config_source(cx: &mut Cx, path: &str, v: &Value) -> Option<PathBuf> {
    let o = obj(cx, path, v, &CONFIG_SOURCE)?;
    if let Some(r) = o.get("resource_api_version") {
        enumeration(
            cx,
            &o.at("resource_api_version"),
            r,
            &[("V3", ()), ("AUTO", ())],
            &["V2"],
        );
    }
    let file = match (o.get("path_config_source"), o.get("path")) {
        (Some(_), Some(_)) => {
            cx.err(
                &o.at("path"),
                "set both here and in path_config_source.path; keep one",
            );
            return None;
        }
        (Some(pcs), None) => {
            let pp = o.at("path_config_source");
            let p = obj(cx, &pp, pcs, &PATH_CONFIG_SOURCE)?;
            let f = p.req(cx, "path")?;
            nonempty_string(cx, &p.at("path"), f)?
        }
        (None, Some(f)) => nonempty_string(cx, &o.at("path"), f)?,
        (None, None) => {
            cx.err(
                &o.at("path_config_source.path"),
                "required field is missing (Ringway reads EDS from a file; gRPC and REST sources are not supported)",
            );
            return None;
        }
    };
    Some(PathBuf::from(file))
}

/// A count where 0 would mean "never", which Envoy rejects or treats as unset.
fn positive_u32(cx: &mut Cx, path: &str, v: &Value) -> Option<u32> {
    u32_range(cx, path, v, 1, u32::MAX)
}

fn load_assignment(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    discovery: DiscoveryType,
) -> Option<Vec<EndpointSpec>> {
    let o = obj(cx, path, v, &LOAD_ASSIGNMENT)?;
    let before = cx.errs.len();
    if let Some(n) = o.req(cx, "cluster_name") {
        nonempty_string(cx, &o.at("cluster_name"), n);
    }
    let mut out = Vec::new();
    if let Some(eps) = o.get("endpoints") {
        let ep_path = o.at("endpoints");
        for (i, group) in list(cx, &ep_path, eps)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let gp = index(&ep_path, i);
            let Some(g) = obj(cx, &gp, group, &LOCALITY_LB_ENDPOINTS) else {
                continue;
            };
            if let Some(pr) = g.get("priority") {
                // Priority levels (failover) are not implemented; priority 0 is the only level.
                if u32_val(cx, &g.at("priority"), pr).is_some_and(|p| p != 0) {
                    cx.err(
                        &g.at("priority"),
                        "priorities other than 0 are not supported by Ringway",
                    );
                }
            }
            let Some(lbs) = g.get("lb_endpoints") else {
                continue;
            };
            let lp = g.at("lb_endpoints");
            for (j, lbe) in list(cx, &lp, lbs).unwrap_or_default().iter().enumerate() {
                if let Some(e) = lb_endpoint(cx, &index(&lp, j), lbe, discovery) {
                    out.push(e);
                }
            }
        }
    }
    if discovery == DiscoveryType::LogicalDns && cx.errs.len() == before && out.len() != 1 {
        cx.err(
            &o.at("endpoints"),
            format!(
                "LOGICAL_DNS clusters need exactly one endpoint, found {}",
                out.len()
            ),
        );
    }
    (cx.errs.len() == before).then_some(out)
}

fn lb_endpoint(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    discovery: DiscoveryType,
) -> Option<EndpointSpec> {
    let o = obj(cx, path, v, &LB_ENDPOINT)?;
    let ev = o.req(cx, "endpoint")?;
    let e = obj(cx, &o.at("endpoint"), ev, &ENDPOINT)?;
    let av = e.req(cx, "address")?;
    let ap = e.at("address");
    let (host, port) = socket_address(cx, &ap, av, 1)?;
    let ip = ip_literal(&host);
    if discovery == DiscoveryType::Static && ip.is_none() {
        cx.err(
            &join(&ap, "socket_address.address"),
            format!("STATIC clusters need IP addresses, got {host:?} (use STRICT_DNS or LOGICAL_DNS for host names)"),
        );
        return None;
    }
    Some(EndpointSpec {
        host,
        port,
        addr: ip.map(|ip| SocketAddr::new(ip, port)),
    })
}

fn circuit_breakers(cx: &mut Cx, path: &str, v: &Value) -> Option<CircuitBreakers> {
    let o = obj(cx, path, v, &CIRCUIT_BREAKERS)?;
    let mut cb = CircuitBreakers::default();
    let Some(t) = o.get("thresholds") else {
        return Some(cb);
    };
    let tp = o.at("thresholds");
    let before = cx.errs.len();
    let mut seen_default = false;
    for (i, th) in list(cx, &tp, t).unwrap_or_default().iter().enumerate() {
        let p = index(&tp, i);
        let Some(th) = obj(cx, &p, th, &THRESHOLDS) else {
            continue;
        };
        if let Some(pr) = th.get("priority") {
            enumeration(cx, &th.at("priority"), pr, &[("DEFAULT", ())], &["HIGH"]);
        }
        if seen_default {
            cx.err(&p, "only one thresholds entry per priority");
        }
        seen_default = true;
        let fields: [(&str, &mut u32); 4] = [
            ("max_connections", &mut cb.max_connections),
            ("max_pending_requests", &mut cb.max_pending_requests),
            ("max_requests", &mut cb.max_requests),
            ("max_retries", &mut cb.max_retries),
        ];
        for (key, slot) in fields {
            if let Some(n) = th.get(key).and_then(|n| u32_val(cx, &th.at(key), n)) {
                *slot = n;
            }
        }
    }
    (cx.errs.len() == before).then_some(cb)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(yaml: &str) -> (Vec<Cluster>, Vec<String>, Vec<String>) {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let (c, n) = clusters(&mut cx, "c", &v);
        let errs = cx
            .errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (c, n, errs)
    }

    const EP: &str = "load_assignment: {cluster_name: x, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]}]}";

    #[test]
    fn defaults() {
        let (c, n, e) = run(&format!("[{{name: a, {EP}}}]"));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(n, ["a"]);
        let c = &c[0];
        assert_eq!(c.discovery, DiscoveryType::Static);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
        assert_eq!(c.dns_refresh_rate, Duration::from_secs(5));
        assert_eq!(c.dns_lookup_family, DnsLookupFamily::Auto);
        assert_eq!(c.idle_timeout, Duration::from_secs(3600));
        assert_eq!(c.max_requests_per_connection, None);
        assert_eq!(c.circuit_breakers, CircuitBreakers::default());
        assert_eq!(c.per_connection_buffer_limit_bytes, 1 << 20);
        assert_eq!(
            c.endpoints,
            [EndpointSpec {
                host: "10.0.0.1".into(),
                port: 80,
                addr: Some("10.0.0.1:80".parse().unwrap())
            }]
        );
    }

    #[test]
    fn every_supported_field() {
        let (c, _, e) = run(
            "- name: b
  type: STRICT_DNS
  connect_timeout: 0.25s
  lb_policy: LEAST_REQUEST
  dns_refresh_rate: 10s
  dns_lookup_family: V4_ONLY
  per_connection_buffer_limit_bytes: 32768
  common_http_protocol_options: {idle_timeout: 60s, max_requests_per_connection: 100}
  circuit_breakers:
    thresholds:
    - {priority: DEFAULT, max_connections: 1, max_pending_requests: 2, max_requests: 3, max_retries: 4}
  load_assignment:
    cluster_name: b
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: svc.local, port_value: 8080}}}
      - endpoint: {address: {socket_address: {address: '::1', port_value: 8081}}}
",
        );
        assert!(e.is_empty(), "{e:?}");
        let c = &c[0];
        assert_eq!(c.discovery, DiscoveryType::StrictDns);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest);
        assert_eq!(c.dns_refresh_rate, Duration::from_secs(10));
        assert_eq!(c.dns_lookup_family, DnsLookupFamily::V4Only);
        assert_eq!(c.per_connection_buffer_limit_bytes, 32768);
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_requests_per_connection, Some(100));
        let cb = c.circuit_breakers;
        assert_eq!(
            (
                cb.max_connections,
                cb.max_pending_requests,
                cb.max_requests,
                cb.max_retries
            ),
            (1, 2, 3, 4)
        );
        assert_eq!(c.endpoints[0].addr, None);
        assert_eq!(c.endpoints[0].host, "svc.local");
        assert_eq!(c.endpoints[1].addr, Some("[::1]:8081".parse().unwrap()));
    }

    const HPO: &str = "typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

    #[test]
    fn upstream_protocol_spellings() {
        let (c, _, e) = run(&format!(
            "- {{name: a, {HPO}, explicit_http_config: {{http2_protocol_options: {{max_concurrent_streams: 10}}}}, common_http_protocol_options: {{idle_timeout: 7s, max_requests_per_connection: 9}}}}}}}}
- {{name: b, {HPO}, explicit_http_config: {{http_protocol_options: {{}}}}}}}}}}
- {{name: c, http2_protocol_options: {{}}}}
- {{name: d, http_protocol_options: {{}}}}
- {{name: e}}
"
        ));
        assert!(e.is_empty(), "{e:?}");
        let h2 = Http2Options {
            max_concurrent_streams: 10,
            ..Http2Options::default()
        };
        assert_eq!(c[0].protocol, UpstreamProtocol::Http2(h2));
        assert_eq!(c[0].idle_timeout, Duration::from_secs(7));
        assert_eq!(c[0].max_requests_per_connection, Some(9));
        assert_eq!(c[1].protocol, UpstreamProtocol::Http1);
        assert_eq!(
            c[2].protocol,
            UpstreamProtocol::Http2(Http2Options::default())
        );
        assert_eq!(c[3].protocol, UpstreamProtocol::Http1);
        assert_eq!(c[4].protocol, UpstreamProtocol::Http1);
    }

    #[test]
    fn upstream_protocol_errors_name_the_field() {
        let (_, _, e) = run(&format!(
            "- {{name: a, common_http_protocol_options: {{}}, {HPO}, explicit_http_config: {{http2_protocol_options: {{}}}}}}}}}}
- {{name: b, {HPO}, auto_config: {{}}}}}}}}
- {{name: c, {HPO}, use_downstream_protocol_config: {{}}}}}}}}
- {{name: d, {HPO}}}}}}}
- {{name: e, typed_extension_protocol_options: {{envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: {{}}}}}}
- {{name: f, http2_protocol_options: {{initial_stream_window_size: 100}}}}
- {{name: g, http_protocol_options: {{}}, http2_protocol_options: {{}}}}
- {{name: h, {HPO}, explicit_http_config: {{http3_protocol_options: {{}}}}}}}}}}
"
        ));
        let t = "typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
        let got: Vec<(&str, &str)> = e.iter().map(|s| s.split_once(": ").unwrap()).collect();
        let want = [
            ("c[0].common_http_protocol_options", "set both here and in typed_extension_protocol_options"),
            (&format!("c[1].{t}.auto_config") as &str, "not supported by Ringway"),
            (&format!("c[2].{t}.use_downstream_protocol_config"), "not supported by Ringway"),
            (&format!("c[3].{t}.explicit_http_config"), "required field is missing"),
            ("c[4].typed_extension_protocol_options.envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions", "not supported by Ringway"),
            ("c[5].http2_protocol_options.initial_stream_window_size", "65535..=2147483647"),
            ("c[6].http2_protocol_options", "both http_protocol_options and http2_protocol_options"),
            (&format!("c[7].{t}.explicit_http_config.http3_protocol_options"), "not supported by Ringway"),
        ];
        assert_eq!(got.len(), want.len(), "{e:#?}");
        for ((gp, gm), (wp, wm)) in got.iter().zip(want.iter()) {
            assert_eq!(gp, wp, "{e:#?}");
            assert!(gm.contains(wm), "{gp}: {gm} (want {wm})");
        }
    }

    #[test]
    fn static_needs_ip_and_logical_dns_needs_one() {
        let (_, _, e) = run(
            "- name: s
  load_assignment: {cluster_name: s, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: host, port_value: 1}}}}]}]}
- name: l
  type: LOGICAL_DNS
  load_assignment: {cluster_name: l, endpoints: []}
",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("c[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: STATIC"));
        assert!(e[1].starts_with("c[1].load_assignment.endpoints: LOGICAL_DNS"));
    }

    #[test]
    fn names_survive_other_errors_and_duplicates_are_caught() {
        let (c, n, e) = run("[{name: a, type: ORIGINAL_DST}, {name: a}]");
        assert!(c.is_empty() && n == ["a"]);
        assert!(
            e[0].starts_with("c[0].type: ORIGINAL_DST is not supported"),
            "{e:?}"
        );
        assert_eq!(e[1], "c[1].name: duplicate cluster name a");
    }

    #[test]
    fn high_priority_thresholds_and_known_fields_are_unsupported() {
        let (_, _, e) = run("[{name: a, circuit_breakers: {thresholds: [{priority: HIGH}]}, outlier_detection: {monitors: []}, hosts: []}]");
        let paths: Vec<&str> = e.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "c[0].hosts",
                "c[0].circuit_breakers.thresholds[0].priority",
                "c[0].outlier_detection.monitors"
            ]
        );
    }

    #[test]
    fn eds_file_sources() {
        let (c, _, e) = run("
- name: a
  type: EDS
  eds_cluster_config:
    service_name: svc
    eds_config: {resource_api_version: V3, path_config_source: {path: /etc/eds.yaml}}
- name: b
  type: EDS
  eds_cluster_config: {eds_config: {path: b.json}}
");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c[0].discovery, DiscoveryType::Eds);
        assert_eq!(c[0].eds_path, Some(PathBuf::from("/etc/eds.yaml")));
        assert_eq!(c[0].eds_service_name.as_deref(), Some("svc"));
        assert_eq!(c[1].eds_path, Some(PathBuf::from("b.json")));
        assert_eq!(
            c[1].eds_service_name.as_deref(),
            Some("b"),
            "defaults to the cluster name"
        );
        assert!(c[1].endpoints.is_empty());
        let (c, _, _) = run(&format!("[{{name: s, {EP}}}]"));
        assert_eq!(
            (c[0].eds_path.clone(), c[0].eds_service_name.clone()),
            (None, None)
        );
    }

    #[test]
    fn eds_errors_name_the_field() {
        let (_, _, e) = run(&format!(
            "
- name: a
  type: EDS
- name: b
  type: EDS
  eds_cluster_config: {{eds_config: {{path_config_source: {{}}}}}}
- name: c
  type: EDS
  eds_cluster_config: {{eds_config: {{ads: {{}}}}}}
- name: d
  eds_cluster_config: {{eds_config: {{path: x}}}}
- name: e
  type: EDS
  eds_cluster_config: {{eds_config: {{path: x, resource_api_version: V2}}}}
  {EP}
"
        ));
        assert_eq!(
            e,
            [
                "c[0].eds_cluster_config: required field is missing (EDS clusters need eds_config.path_config_source.path)",
                "c[1].eds_cluster_config.eds_config.path_config_source.path: required field is missing",
                "c[2].eds_cluster_config.eds_config.ads: field ads is not supported by Ringway",
                "c[2].eds_cluster_config.eds_config.path_config_source.path: required field is missing (Ringway reads EDS from a file; gRPC and REST sources are not supported)",
                "c[3].eds_cluster_config: only allowed with type: EDS",
                "c[4].load_assignment: EDS clusters take their endpoints from eds_cluster_config; remove load_assignment",
                "c[4].eds_cluster_config.eds_config.resource_api_version: V2 is not supported by Ringway (supported: V3, AUTO)",
            ]
        );
    }
}
