//! Bad Envoy configurations and the exact field paths Ringway must report for them, plus the
//! acceptance case: Envoy's front-proxy sandbox (examples/front-proxy.yaml) loads as expected.
#![allow(clippy::unwrap_used)]

use ringway::config::{load_file, load_str, ConfigError, DiscoveryType, PathMatch, RouteAction};
use std::path::Path;

const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Pieces of a config: each defaults to a valid value so a test changes only what it breaks.
struct Cfg {
    top: &'static str,
    listener: &'static str,
    chain: &'static str,
    hcm: &'static str,
    http_filters: &'static str,
    routes: &'static str,
    vhosts: &'static str,
    clusters: &'static str,
}

const OK: Cfg = Cfg {
    top: "",
    listener: "",
    chain: "",
    hcm: "",
    http_filters: "          - name: envoy.filters.http.router\n",
    routes: "              - match: {prefix: /}\n                route: {cluster: svc}\n",
    vhosts: "",
    clusters: "  - name: svc\n    load_assignment: {cluster_name: svc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9000}}}}]}]}\n",
};

impl Cfg {
    fn yaml(&self) -> String {
        format!(
            "{top}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
{listener}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": {HCM_TYPE}
          stat_prefix: ingress
{hcm}          route_config:
            name: local
            virtual_hosts:
            - name: backend
              domains: [\"*\"]
              routes:
{routes}{vhosts}          http_filters:
{http_filters}{chain}  clusters:
{clusters}",
            top = self.top,
            listener = self.listener,
            hcm = self.hcm,
            routes = self.routes,
            vhosts = self.vhosts,
            http_filters = self.http_filters,
            chain = self.chain,
            clusters = self.clusters,
        )
    }
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match load_str(yaml) {
        Ok(_) => panic!("config should be rejected:\n{yaml}"),
        Err(e) => e.0,
    }
}

/// Asserts the config fails with exactly one error, at `path`, whose message contains `msg`.
fn only(cfg: Cfg, path: &str, msg: &str) {
    let yaml = cfg.yaml();
    let errs = errors(&yaml);
    assert_eq!(
        errs.len(),
        1,
        "expected one error at {path}, got {errs:#?}\n{yaml}"
    );
    assert_eq!(errs[0].path, path, "{errs:#?}");
    assert!(
        errs[0].message.contains(msg),
        "message {:?} lacks {msg:?}",
        errs[0].message
    );
}

const HCM_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const ROUTE0: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0]";

#[test]
fn base_config_is_valid() {
    let l = load_str(&OK.yaml()).unwrap();
    assert_eq!(l.bootstrap.listeners.len(), 1);
    assert_eq!(l.bootstrap.clusters[0].name, "svc");
}

#[test]
fn endpoint_port_out_of_range_in_second_cluster() {
    only(
        Cfg {
            clusters: "  - name: svc\n  - name: other\n    load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 70000}}}}]}]}\n",
            ..OK
        },
        "static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value",
        "out of range",
    );
}

#[test]
fn route_to_undefined_cluster() {
    only(
        Cfg {
            routes: "              - match: {prefix: /}\n                route: {cluster: nope}\n",
            ..OK
        },
        &format!("{ROUTE0}.route.cluster"),
        "unknown cluster nope",
    );
}

#[test]
fn tls_transport_socket_needs_its_context() {
    only(
        Cfg {
            chain: "      transport_socket: {name: envoy.transport_sockets.tls}\n",
            ..OK
        },
        "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config",
        "required field is missing",
    );
}

/// A DownstreamTlsContext whose `common_tls_context` body is `common`.
fn tls_chain(common: &str) -> String {
    format!(
        "      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{{common}}}
"
    )
}

const TLS0: &str =
    "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context";

#[test]
fn missing_certificate_file_names_the_field() {
    let chain = tls_chain(
        "tls_certificates: [{certificate_chain: {filename: /nonexistent/cert.pem}, private_key: {filename: /nonexistent/key.pem}}]",
    );
    let yaml = Cfg {
        chain: Box::leak(chain.into_boxed_str()),
        ..OK
    }
    .yaml();
    let e = errors(&yaml);
    let got: Vec<(&str, &str)> = e
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                format!("{TLS0}.tls_certificates[0].certificate_chain.filename").as_str(),
                "cannot read /nonexistent/cert.pem: No such file or directory (os error 2)"
            ),
            (
                format!("{TLS0}.tls_certificates[0].private_key.filename").as_str(),
                "cannot read /nonexistent/key.pem: No such file or directory (os error 2)"
            ),
        ]
    );
}

#[test]
fn tls_versions_below_1_2_are_refused() {
    let chain = tls_chain(
        "tls_certificates: [{certificate_chain: {filename: /nonexistent/c}, private_key: {filename: /nonexistent/k}}], tls_params: {tls_minimum_protocol_version: TLSv1_0}",
    );
    let e = errors(
        &Cfg {
            chain: Box::leak(chain.into_boxed_str()),
            ..OK
        }
        .yaml(),
    );
    let versions: Vec<_> = e
        .iter()
        .filter(|e| e.path.ends_with("tls_params.tls_minimum_protocol_version"))
        .collect();
    assert_eq!(versions.len(), 1, "{e:#?}");
    assert_eq!(
        versions[0].path,
        format!("{TLS0}.tls_params.tls_minimum_protocol_version")
    );
    assert!(versions[0]
        .message
        .contains("rustls speaks only TLSv1_2 and TLSv1_3"));
}

#[test]
fn server_names_need_tls() {
    only(
        Cfg {
            chain: "      filter_chain_match: {server_names: [a.example]}\n",
            ..OK
        },
        "static_resources.listeners[0].filter_chains[0].filter_chain_match.server_names[0]",
        "needs a TLS transport_socket",
    );
}

#[test]
fn other_filter_chain_match_fields_are_not_supported() {
    only(
        Cfg {
            chain: "      filter_chain_match: {destination_port: 443}\n",
            ..OK
        },
        "static_resources.listeners[0].filter_chains[0].filter_chain_match.destination_port",
        "not supported by Ringway",
    );
}

#[test]
fn upstream_tls_with_a_bad_ca_names_the_field() {
    only(
        Cfg {
            clusters: "  - name: svc\n    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        common_tls_context: {validation_context: {trusted_ca: {filename: /nonexistent/ca.pem}}}\n",
            ..OK
        },
        "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.validation_context.trusted_ca.filename",
        "cannot read /nonexistent/ca.pem",
    );
}

#[test]
fn dynamic_resources_are_not_supported() {
    only(
        Cfg {
            top: "dynamic_resources: {}",
            ..OK
        },
        "dynamic_resources",
        "xDS",
    );
}

#[test]
fn unknown_top_level_field() {
    only(
        Cfg {
            top: "static_resource: {}",
            ..OK
        },
        "static_resource",
        "unknown field static_resource",
    );
}

#[test]
fn camel_case_field_names_get_a_hint() {
    only(
        Cfg {
            listener: "    tcpBacklogSize: 10\n",
            ..OK
        },
        "static_resources.listeners[0].tcpBacklogSize",
        "write tcp_backlog_size",
    );
}

#[test]
fn millisecond_duration_is_malformed() {
    only(
        Cfg {
            clusters: "  - name: svc\n    connect_timeout: 100ms\n",
            ..OK
        },
        "static_resources.clusters[0].connect_timeout",
        "malformed duration",
    );
}

#[test]
fn negative_route_timeout() {
    only(
        Cfg { routes: "              - match: {prefix: /}\n                route: {cluster: svc, timeout: {seconds: -1}}\n", ..OK },
        &format!("{ROUTE0}.route.timeout"),
        "negative",
    );
}

#[test]
fn http3_codec_is_not_supported() {
    only(
        Cfg {
            hcm: "          codec_type: HTTP3\n",
            ..OK
        },
        &format!("{HCM_PATH}.codec_type"),
        "HTTP3 is not supported",
    );
}

#[test]
fn http2_codec_and_options_load() {
    let yaml = Cfg {
        hcm: "          codec_type: HTTP2\n          http2_protocol_options: {max_concurrent_streams: 50, initial_stream_window_size: 65535}\n",
        clusters: "  - name: svc\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n        common_http_protocol_options: {idle_timeout: 20s}\n",
        ..OK
    }
    .yaml();
    let b = load_str(&yaml).unwrap().bootstrap;
    let hcm = &b.listeners[0].hcm;
    assert_eq!(hcm.codec_type, ringway::config::CodecType::Http2);
    assert_eq!(
        (
            hcm.http2.max_concurrent_streams,
            hcm.http2.initial_stream_window_size,
            hcm.http2.initial_connection_window_size
        ),
        (50, 65535, 1 << 20)
    );
    let c = &b.clusters[0];
    assert!(matches!(
        c.protocol,
        ringway::config::UpstreamProtocol::Http2(_)
    ));
    assert_eq!(c.idle_timeout, std::time::Duration::from_secs(20));
}

#[test]
fn http2_max_concurrent_streams_range() {
    only(
        Cfg {
            hcm: "          http2_protocol_options: {max_concurrent_streams: 2147483648}\n",
            ..OK
        },
        &format!("{HCM_PATH}.http2_protocol_options.max_concurrent_streams"),
        "out of range (expected 1..=2147483647)",
    );
}

#[test]
fn http2_keepalive_is_not_supported() {
    only(
        Cfg {
            hcm: "          http2_protocol_options: {connection_keepalive: {interval: 10s, timeout: 1s}}\n",
            ..OK
        },
        &format!("{HCM_PATH}.http2_protocol_options.connection_keepalive"),
        "not supported by Ringway",
    );
}

#[test]
fn cluster_connection_options_in_both_places() {
    only(
        Cfg {
            clusters: "  - name: svc\n    common_http_protocol_options: {idle_timeout: 5s}\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http_protocol_options: {}}\n",
            ..OK
        },
        "static_resources.clusters[0].common_http_protocol_options",
        "set both here and in typed_extension_protocol_options",
    );
}

#[test]
fn cluster_auto_config_is_not_supported() {
    only(
        Cfg {
            clusters: "  - name: svc\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        auto_config: {}\n",
            ..OK
        },
        "static_resources.clusters[0].typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.auto_config",
        "not supported by Ringway",
    );
}

#[test]
fn other_http_filters_are_named() {
    only(
        Cfg {
            http_filters: "          - name: envoy.filters.http.cors\n          - name: envoy.filters.http.router\n",
            ..OK
        },
        &format!("{HCM_PATH}.http_filters[0]"),
        "HTTP filter envoy.filters.http.cors is not supported",
    );
}

#[test]
fn router_filter_is_required() {
    only(
        Cfg {
            http_filters: "            []\n",
            ..OK
        },
        &format!("{HCM_PATH}.http_filters"),
        "envoy.filters.http.router is required",
    );
}

#[test]
fn duplicate_domains_across_virtual_hosts() {
    only(
        Cfg {
            vhosts: "            - name: second\n              domains: [\"*\"]\n",
            ..OK
        },
        &format!("{HCM_PATH}.route_config.virtual_hosts[1].domains[0]"),
        "duplicate domain *",
    );
}

#[test]
fn invalid_domain_pattern() {
    only(
        Cfg {
            vhosts: "            - name: second\n              domains: [\"a.*.com\"]\n",
            ..OK
        },
        &format!("{HCM_PATH}.route_config.virtual_hosts[1].domains[0]"),
        "invalid domain",
    );
}

#[test]
fn prefix_and_path_together() {
    only(
        Cfg { routes: "              - match: {prefix: /, path: /x}\n                route: {cluster: svc}\n", ..OK },
        &format!("{ROUTE0}.match"),
        "exactly one of prefix and path",
    );
}

#[test]
fn safe_regex_is_not_supported() {
    only(
        Cfg { routes: "              - match: {safe_regex: {regex: '.*'}}\n                route: {cluster: svc}\n", ..OK },
        &format!("{ROUTE0}.match.safe_regex"),
        "not supported by Ringway",
    );
}

#[test]
fn unknown_retry_condition() {
    only(
        Cfg { routes: "              - match: {prefix: /}\n                route: {cluster: svc, retry_policy: {retry_on: '5xx,sometimes'}}\n", ..OK },
        &format!("{ROUTE0}.route.retry_policy.retry_on"),
        "sometimes is not a known retry condition",
    );
}

#[test]
fn redirect_is_not_supported() {
    only(
        Cfg { routes: "              - match: {prefix: /}\n                redirect: {https_redirect: true}\n", ..OK },
        &format!("{ROUTE0}.redirect"),
        "not supported by Ringway",
    );
}

#[test]
fn direct_response_status_range() {
    only(
        Cfg { routes: "              - match: {prefix: /}\n                direct_response: {status: 99}\n", ..OK },
        &format!("{ROUTE0}.direct_response.status"),
        "out of range",
    );
}

#[test]
fn empty_header_key() {
    only(
        Cfg {
            routes: "              - match: {prefix: /}\n                route: {cluster: svc}\n                request_headers_to_add: [{header: {key: '', value: x}}]\n",
            ..OK
        },
        &format!("{ROUTE0}.request_headers_to_add[0].header.key"),
        "must not be empty",
    );
}

#[test]
fn eds_cluster_needs_a_file_source() {
    only(
        Cfg {
            clusters: "  - name: svc\n    type: EDS\n",
            ..OK
        },
        "static_resources.clusters[0].eds_cluster_config",
        "required field is missing (EDS clusters need eds_config.path_config_source.path)",
    );
}

#[test]
fn ring_hash_is_not_supported() {
    only(
        Cfg {
            clusters: "  - name: svc\n    lb_policy: RING_HASH\n",
            ..OK
        },
        "static_resources.clusters[0].lb_policy",
        "RING_HASH is not supported",
    );
}

#[test]
fn static_cluster_needs_ip_addresses() {
    only(
        Cfg {
            clusters: "  - name: svc\n    load_assignment: {cluster_name: svc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: backend, port_value: 80}}}}]}]}\n",
            ..OK
        },
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
        "STATIC clusters need IP addresses",
    );
}

#[test]
fn logical_dns_needs_exactly_one_endpoint() {
    only(
        Cfg {
            clusters: "  - name: svc\n    type: LOGICAL_DNS\n    load_assignment: {cluster_name: svc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: a, port_value: 80}}}}, {endpoint: {address: {socket_address: {address: b, port_value: 80}}}}]}]}\n",
            ..OK
        },
        "static_resources.clusters[0].load_assignment.endpoints",
        "exactly one endpoint, found 2",
    );
}

#[test]
fn tcp_health_checks_are_not_supported() {
    only(
        Cfg {
            clusters: "  - name: svc\n    health_checks: [{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}]\n",
            ..OK
        },
        "static_resources.clusters[0].health_checks[0].tcp_health_check",
        "not supported by Ringway",
    );
}

#[test]
fn legacy_hosts_are_not_supported() {
    only(
        Cfg {
            clusters: "  - name: svc\n    hosts: []\n",
            ..OK
        },
        "static_resources.clusters[0].hosts",
        "not supported",
    );
}

#[test]
fn high_priority_circuit_breakers_are_not_supported() {
    only(
        Cfg { clusters: "  - name: svc\n    circuit_breakers: {thresholds: [{priority: HIGH, max_connections: 1}]}\n", ..OK },
        "static_resources.clusters[0].circuit_breakers.thresholds[0].priority",
        "HIGH is not supported",
    );
}

#[test]
fn duplicate_cluster_names() {
    only(
        Cfg {
            clusters: "  - name: svc\n  - name: svc\n",
            ..OK
        },
        "static_resources.clusters[1].name",
        "duplicate cluster name svc",
    );
}

#[test]
fn listener_address_must_be_an_ip() {
    let yaml = OK.yaml().replace(
        "address: 127.0.0.1, port_value: 10000",
        "address: localhost, port_value: 10000",
    );
    let e = errors(&yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        e[0].path,
        "static_resources.listeners[0].address.socket_address.address"
    );
}

#[test]
fn max_request_headers_kb_range() {
    only(
        Cfg {
            hcm: "          max_request_headers_kb: 0\n",
            ..OK
        },
        &format!("{HCM_PATH}.max_request_headers_kb"),
        "out of range (expected 1..=8192)",
    );
}

#[test]
fn trusted_hops_are_not_supported() {
    only(
        Cfg {
            hcm: "          xff_num_trusted_hops: 2\n",
            ..OK
        },
        &format!("{HCM_PATH}.xff_num_trusted_hops"),
        "only 0",
    );
}

#[test]
fn rds_is_not_supported() {
    let yaml = OK.yaml().replace("          route_config:\n            name: local\n", "          rds: {route_config_name: r}\n          route_config_unused:\n            name: local\n");
    let e = errors(&yaml);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{HCM_PATH}.rds"),
            format!("{HCM_PATH}.route_config_unused")
        ],
        "{e:#?}"
    );
    assert!(e[0].message.contains("RDS is not supported"));
}

#[test]
fn stat_prefix_is_required() {
    let yaml = OK.yaml().replace("          stat_prefix: ingress\n", "");
    let e = errors(&yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, format!("{HCM_PATH}.stat_prefix"));
    assert_eq!(e[0].message, "required field is missing");
}

#[test]
fn wrong_hcm_type_url() {
    let yaml = OK.yaml().replace(
        HCM_TYPE,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v2.HttpConnectionManager",
    );
    let e = errors(&yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].path, format!("{HCM_PATH}.@type"));
}

#[test]
fn unsupported_access_logger() {
    only(
        Cfg {
            hcm: "          access_log:\n          - name: envoy.access_loggers.http_grpc\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig}\n",
            ..OK
        },
        &format!("{HCM_PATH}.access_log[0].typed_config"),
        "not supported by Ringway",
    );
}

#[test]
fn further_filter_chains_must_repeat_the_first_and_not_overlap() {
    let yaml = OK
        .yaml()
        .replace("  clusters:\n", "    - filters: []\n  clusters:\n");
    let e = errors(&yaml);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "static_resources.listeners[0].filter_chains[1].filters",
            "static_resources.listeners[0].filter_chains[1]"
        ],
        "{e:#?}"
    );
    assert!(e[0]
        .message
        .contains("differs from static_resources.listeners[0].filter_chains[0].filters"));
    assert!(e[1].message.contains("only one such default chain"));
}

#[test]
fn at_least_one_listener() {
    let e = errors("static_resources:\n  listeners: []\n  clusters: []\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "static_resources.listeners");
}

#[test]
fn duplicate_listener_names_and_addresses() {
    let y = OK.yaml();
    // Append a copy of the listener.
    let start = y.find("  - name: main").unwrap();
    let end = y.find("  clusters:").unwrap();
    let yaml = format!("{}{}{}", &y[..end], &y[start..end], &y[end..]);
    let e = errors(&yaml);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "static_resources.listeners[1].name",
            "static_resources.listeners[1].address"
        ],
        "{e:#?}"
    );
}

#[test]
fn admin_address_checks() {
    only(
        Cfg {
            top: "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}",
            ..OK
        },
        "admin.address.socket_address.port_value",
        "out of range",
    );
    only(
        Cfg {
            top: "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 10000}}}",
            ..OK
        },
        "static_resources.listeners[0].address",
        "already used by admin.address",
    );
}

#[test]
fn every_error_is_collected() {
    let yaml = Cfg {
        top: "bogus: 1\nadmin: {address: {socket_address: {address: admin.local, port_value: 9901}}}",
        hcm: "          codec_type: HTTP3\n          stream_idle_timeout: 5m\n",
        routes: "              - match: {prefix: /}\n                route: {cluster: missing}\n",
        clusters: "  - name: svc\n    type: EDS\n    connect_timeout: -1s\n  - name: other\n    outlier_detection: {monitors: []}\n",
        ..OK
    }
    .yaml();
    let err = load_str(&yaml).unwrap_err();
    let mut paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    let mut want = vec![
        "bogus".to_string(),
        "admin.address.socket_address.address".to_string(),
        format!("{HCM_PATH}.codec_type"),
        format!("{HCM_PATH}.stream_idle_timeout"),
        format!("{ROUTE0}.route.cluster"),
        "static_resources.clusters[0].eds_cluster_config".to_string(),
        "static_resources.clusters[0].connect_timeout".to_string(),
        "static_resources.clusters[1].outlier_detection.monitors".to_string(),
    ];
    want.sort_unstable();
    assert_eq!(paths, want, "{err}");
    // Display: one line per error.
    assert_eq!(err.to_string().lines().count(), want.len());
}

#[test]
fn front_proxy_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/front-proxy.yaml");
    let loaded = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let b = &loaded.bootstrap;

    let admin = b.admin.as_ref().unwrap();
    assert_eq!(admin.address, "127.0.0.1:8001".parse().unwrap());

    assert_eq!(b.listeners.len(), 1);
    let l = &b.listeners[0];
    assert_eq!(l.address, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(l.hcm.stat_prefix, "ingress_http");
    let rc = &l.hcm.route_config;
    assert_eq!(rc.name, "local_route");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(
        (vh.name.as_str(), vh.domains.as_slice()),
        ("backend", ["*".to_string()].as_slice())
    );
    let routes: Vec<(String, String, usize)> = vh
        .routes
        .iter()
        .map(|r| {
            let PathMatch::Prefix(p) = &r.matcher.path else {
                panic!("prefix route expected")
            };
            let RouteAction::Forward(f) = &r.action else {
                panic!("forward route expected")
            };
            (p.clone(), f.cluster_name.clone(), f.cluster)
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("/service/1".to_string(), "service1".to_string(), 0),
            ("/service/2".to_string(), "service2".to_string(), 1)
        ]
    );

    let clusters: Vec<(&str, DiscoveryType, String)> = b
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.discovery,
                c.endpoints[0].addr.unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [
            (
                "service1",
                DiscoveryType::StrictDns,
                "127.0.0.1:8081".to_string()
            ),
            (
                "service2",
                DiscoveryType::StrictDns,
                "127.0.0.1:8082".to_string()
            )
        ]
    );
    assert_eq!(b.cluster_by_name("service2"), Some(1));
    assert_eq!(
        loaded.raw["admin"]["address"]["socket_address"]["port_value"],
        8001
    );
}

/// Envoy's front-proxy sandbox file, unchanged: both listeners, the TLS one with its inline
/// (X.509 v1) certificate.
#[test]
fn envoy_front_proxy_example_loads_whole() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy-front-proxy.yaml");
    let loaded = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let b = &loaded.bootstrap;
    assert_eq!(b.listeners.len(), 2);
    assert!(b.listeners[0].tls.is_none());
    let l = &b.listeners[1];
    assert_eq!(l.address, "0.0.0.0:8443".parse().unwrap());
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(tls.chains.len(), 1);
    assert!(tls.chains[0].server_names.is_empty());
    let ctx = &tls.chains[0].context;
    assert_eq!(ctx.certificates.len(), 1);
    assert!(
        ctx.alpn_protocols.is_empty(),
        "ALPN defaults by codec at runtime"
    );
    assert_eq!(
        b.clusters
            .iter()
            .map(|c| (c.name.as_str(), c.discovery, c.endpoints[0].host.as_str()))
            .collect::<Vec<_>>(),
        [
            ("service1", DiscoveryType::StrictDns, "service1"),
            ("service2", DiscoveryType::StrictDns, "service2")
        ]
    );
}

/// Each file in examples/bad/ starts with `# expect: <path>`; loading it must fail with exactly
/// one error, at that path.
#[test]
fn bad_examples_fail_where_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bad");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an # expect: line", path.display()));
        let errs = load_file(&path).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{}: {errs:#?}", path.display());
        assert_eq!(errs[0].path, want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected the bad examples, found {seen}");
}
