//! Walks an Envoy v3 bootstrap tree (bootstrap, admin, listeners, HTTP connection manager) into
//! the model; route configuration, access logs and clusters live in `routes.rs`,
//! `access_logs.rs` and `cluster.rs`.
//!
//! Clusters are read first so that routes can be resolved to [`ClusterId`]s; cross-object rules
//! (unique listener names and addresses, admin not colliding with a listener) are checked last.

use serde_yaml_ng::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::access_logs::access_log;
use super::cluster::{self, DEFAULT_BUFFER_LIMIT};
use super::duration;
use super::model::*;
use super::protocol;
use super::routes;
use super::walk::*;

const BOOTSTRAP: Message = Message {
    supported: &[
        "static_resources",
        "admin",
        "node",
        "layered_runtime",
        "enable_dispatcher_stats",
    ],
    unsupported: &[
        "node_context_params",
        "dynamic_resources",
        "cluster_manager",
        "hds_config",
        "flags_path",
        "stats_sinks",
        "deferred_stat_options",
        "stats_config",
        "stats_flush_interval",
        "stats_flush_on_admin",
        "watchdog",
        "watchdogs",
        "tracing",
        "runtime",
        "overload_manager",
        "header_prefix",
        "stats_server_version_override",
        "use_tcp_for_dns_lookups",
        "dns_resolution_config",
        "typed_dns_resolver_config",
        "bootstrap_extensions",
        "fatal_actions",
        "config_sources",
        "default_config_source",
        "default_socket_interface",
        "certificate_provider_instances",
        "inline_headers",
        "perf_tracing_file_path",
        "default_regex_engine",
        "xds_delegate_extension",
        "xds_config_tracker_extension",
        "listener_manager",
        "application_log_config",
        "grpc_async_client_manager_config",
        "memory_allocator_manager",
    ],
};

const STATIC_RESOURCES: Message = Message {
    supported: &["listeners", "clusters"],
    unsupported: &["secrets"],
};

const NODE: Message = Message {
    supported: &[
        "id",
        "cluster",
        "metadata",
        "locality",
        "user_agent_name",
        "user_agent_version",
        "user_agent_build_version",
        "extensions",
        "client_features",
        "listening_addresses",
        "dynamic_parameters",
    ],
    unsupported: &[],
};

const ADMIN: Message = Message {
    supported: &["address", "access_log", "access_log_path"],
    unsupported: &["profile_path", "socket_options", "ignore_global_conn_limit"],
};

const LISTENER: Message = Message {
    supported: &[
        "name",
        "address",
        "filter_chains",
        "per_connection_buffer_limit_bytes",
        "tcp_backlog_size",
        "listener_filters",
    ],
    unsupported: &[
        "additional_addresses",
        "stat_prefix",
        "filter_chain_matcher",
        "use_original_dst",
        "default_filter_chain",
        "metadata",
        "deprecated_v1",
        "drain_type",
        "listener_filters_timeout",
        "continue_on_listener_filters_timeout",
        "transparent",
        "freebind",
        "socket_options",
        "tcp_fast_open_queue_length",
        "traffic_direction",
        "udp_listener_config",
        "api_listener",
        "connection_balance_config",
        "reuse_port",
        "enable_reuse_port",
        "access_log",
        "max_connections_to_accept_per_socket_event",
        "bind_to_port",
        "internal_listener",
        "enable_mptcp",
        "ignore_global_conn_limit",
        "bypass_overload_manager",
        "fcds_config",
    ],
};

const FILTER_CHAIN: Message = Message {
    supported: &[
        "filters",
        "name",
        "filter_chain_match",
        "transport_socket",
        "transport_socket_connect_timeout",
    ],
    unsupported: &["use_proxy_proto", "metadata", "on_demand_configuration"],
};

const FILTER_CHAIN_MATCH: Message = Message {
    supported: &["server_names", "transport_protocol"],
    unsupported: &[
        "destination_port",
        "prefix_ranges",
        "address_suffix",
        "suffix_len",
        "direct_source_prefix_ranges",
        "source_type",
        "source_prefix_ranges",
        "source_ports",
        "application_protocols",
    ],
};

const LISTENER_FILTER: Message = Message {
    supported: &["name", "typed_config"],
    unsupported: &["config_discovery", "filter_disabled"],
};

const TLS_INSPECTOR_NAME: &str = "envoy.filters.listener.tls_inspector";
const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";

const TLS_INSPECTOR: Message = Message {
    supported: &["@type"],
    unsupported: &[
        "enable_ja3_fingerprinting",
        "enable_ja4_fingerprinting",
        "initial_read_buffer_size",
    ],
};

/// Ringway's TLS handshake deadline when no filter chain sets `transport_socket_connect_timeout`
/// (Envoy has none, which lets idle half-open handshakes pile up).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const FILTER: Message = Message {
    supported: &["name", "typed_config"],
    unsupported: &["config_discovery"],
};

const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTER_NAME: &str = "envoy.filters.http.router";

const HCM: Message = Message {
    supported: &[
        "@type",
        "stat_prefix",
        "codec_type",
        "route_config",
        "http_filters",
        "access_log",
        "request_headers_timeout",
        "stream_idle_timeout",
        "request_timeout",
        "drain_timeout",
        "common_http_protocol_options",
        "max_request_headers_kb",
        "use_remote_address",
        "generate_request_id",
        "server_name",
        "upgrade_configs",
        "http_protocol_options",
        "xff_num_trusted_hops",
        "http2_protocol_options",
    ],
    unsupported: &[
        "rds",
        "scoped_routes",
        "add_user_agent",
        "tracing",
        "http1_safe_max_connection_duration",
        "http3_protocol_options",
        "server_header_transformation",
        "scheme_header_transformation",
        "delayed_close_timeout",
        "access_log_flush_interval",
        "flush_access_log_on_new_request",
        "access_log_options",
        "original_ip_detection_extensions",
        "early_header_mutation_extensions",
        "internal_address_config",
        "skip_xff_append",
        "via",
        "preserve_external_request_id",
        "always_set_request_id_in_response",
        "forward_client_cert_details",
        "set_current_client_cert_details",
        "proxy_100_continue",
        "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "request_id_extension",
        "local_reply_config",
        "strip_matching_host_port",
        "strip_any_host_port",
        "stream_error_on_invalid_http_message",
        "strip_trailing_host_dot",
        "proxy_status_config",
        "typed_header_validation_config",
        "append_x_forwarded_port",
        "append_local_overload",
        "add_proxy_protocol_connection_state",
    ],
};

const HCM_HTTP_OPTIONS: Message = Message {
    supported: &["idle_timeout", "max_headers_count", "max_stream_duration"],
    unsupported: &[
        "max_connection_duration",
        "max_response_headers_kb",
        "headers_with_underscores_action",
        "max_requests_per_connection",
    ],
};

const HTTP1_OPTIONS: Message = Message {
    supported: &["accept_http_10", "default_host_for_http_10"],
    unsupported: &[
        "allow_absolute_url",
        "header_key_format",
        "enable_trailers",
        "allow_chunked_length",
        "override_stream_error_on_invalid_http_message",
        "send_fully_qualified_url",
        "use_balsa_parser",
        "allow_custom_methods",
        "ignore_http_11_upgrade",
    ],
};

const HCM_UPGRADE: Message = Message {
    supported: &["upgrade_type", "enabled"],
    unsupported: &["filters"],
};

const HTTP_FILTER: Message = Message {
    supported: &["name", "typed_config"],
    unsupported: &["config_discovery", "is_optional", "disabled"],
};

const ROUTER: Message = Message {
    supported: &["@type"],
    unsupported: &[
        "dynamic_stats",
        "start_child_span",
        "upstream_log",
        "upstream_log_options",
        "suppress_envoy_headers",
        "strict_check_headers",
        "respect_expected_rq_timeout",
        "suppress_grpc_request_failure_code_stats",
        "upstream_http_filters",
    ],
};

/// Walks the whole document. Errors go to `cx`; the bootstrap is only meaningful when none were
/// recorded.
pub(crate) fn bootstrap(cx: &mut Cx, root: &Value) -> Option<Bootstrap> {
    let o = obj(cx, "", root, &BOOTSTRAP)?;
    if let Some(n) = o.get("node") {
        if let Some(n) = obj(cx, "node", n, &NODE) {
            for key in ["id", "cluster"] {
                if let Some(v) = n.get(key) {
                    string(cx, &n.at(key), v);
                }
            }
        }
    }
    let runtime = match o.get("layered_runtime") {
        Some(r) => super::runtime::layered_runtime(cx, "layered_runtime", r),
        None => super::runtime::RuntimeLimits::default(),
    };
    let admin = o.get("admin").and_then(|a| admin(cx, a));
    let dispatcher_stats = match o.get("enable_dispatcher_stats") {
        Some(v) => boolean(cx, &o.at("enable_dispatcher_stats"), v).unwrap_or(false),
        None => false,
    };

    let sr = o.req(cx, "static_resources")?;
    let sr = obj(cx, "static_resources", sr, &STATIC_RESOURCES)?;
    let (clusters, names) = match sr.get("clusters") {
        Some(c) => cluster::clusters(cx, &sr.at("clusters"), c),
        None => (Vec::new(), Vec::new()),
    };
    let mut listeners = Vec::new();
    let lp = sr.at("listeners");
    match sr.get("listeners").and_then(|l| list(cx, &lp, l)) {
        Some(ls) if !ls.is_empty() => {
            for (i, l) in ls.iter().enumerate() {
                if let Some(l) = listener(cx, &index(&lp, i), l, &names) {
                    listeners.push((i, l));
                }
            }
        }
        Some(_) => cx.err(&lp, "at least one listener is required"),
        None if sr.has("listeners") => {}
        None => cx.err(
            &lp,
            "required field is missing (at least one listener is required)",
        ),
    }
    for (n, (i, l)) in listeners.iter().enumerate() {
        if let Some((j, _)) = listeners[..n].iter().find(|(_, m)| m.name == l.name) {
            cx.err(
                &join(&index(&lp, *i), "name"),
                format!(
                    "duplicate listener name {} (also used by {})",
                    l.name,
                    index(&lp, *j)
                ),
            );
        }
        let dup_addr = listeners[..n]
            .iter()
            .find(|(_, m)| m.address == l.address && l.address.port() != 0);
        if let Some((j, _)) = dup_addr {
            cx.err(
                &join(&index(&lp, *i), "address"),
                format!(
                    "address {} is already used by {}",
                    l.address,
                    index(&lp, *j)
                ),
            );
        }
        if let Some(a) = admin
            .as_ref()
            .filter(|a| a.address == l.address && a.address.port() != 0)
        {
            cx.err(
                &join(&index(&lp, *i), "address"),
                format!("address {} is already used by admin.address", a.address),
            );
        }
    }
    let mut listeners: Vec<Listener> = listeners.into_iter().map(|(_, l)| l).collect();
    for (name, limit, path) in &runtime.listener_connection_limits {
        match listeners.iter_mut().find(|l| &l.name == name) {
            Some(l) => l.connection_limit = Some(*limit),
            // Envoy creates the key whatever it names, and a key naming no listener limits
            // nothing (Envoy's front-proxy sandbox has one), so this is exact, not an ignore.
            None => crate::debug!("{path}: no listener is named {name}; the limit applies to none"),
        }
    }
    Some(Bootstrap {
        admin,
        listeners,
        clusters,
        global_downstream_max_connections: runtime.global_downstream_max_connections,
        dispatcher_stats,
    })
}

fn admin(cx: &mut Cx, v: &Value) -> Option<Admin> {
    let o = obj(cx, "admin", v, &ADMIN)?;
    let mut paths = Vec::new();
    if let Some(p) = o.get("access_log_path") {
        if let Some(p) = nonempty_string(cx, &o.at("access_log_path"), p) {
            paths.push(PathBuf::from(p));
        }
    }
    if let Some(ls) = o.get("access_log") {
        let lp = o.at("access_log");
        for (i, l) in list(cx, &lp, ls).unwrap_or_default().iter().enumerate() {
            if let Some(l) = access_log(cx, &index(&lp, i), l) {
                paths.push(l.path);
            }
        }
    }
    // Like Envoy: an admin section without an address starts no admin server.
    let av = o.get("address")?;
    let address = ip_socket(cx, &o.at("address"), av, 1)?;
    Some(Admin {
        address,
        access_log_paths: paths,
    })
}

/// An `Address` that must be an IP literal (listeners and admin bind, they do not resolve).
fn ip_socket(cx: &mut Cx, path: &str, v: &Value, min_port: u16) -> Option<SocketAddr> {
    let (host, port) = socket_address(cx, path, v, min_port)?;
    match ip_literal(&host) {
        Some(ip) => Some(SocketAddr::new(ip, port)),
        None => {
            cx.err(
                &join(path, "socket_address.address"),
                format!("expected an IP address to bind, got {host:?}"),
            );
            None
        }
    }
}

fn listener(cx: &mut Cx, path: &str, v: &Value, clusters: &[String]) -> Option<Listener> {
    let o = obj(cx, path, v, &LISTENER)?;
    let before = cx.errs.len();
    // Port 0 asks the kernel for an ephemeral port, as in Envoy.
    let address = o
        .req(cx, "address")
        .and_then(|a| ip_socket(cx, &o.at("address"), a, 0));
    let name = match o.get("name") {
        Some(n) => nonempty_string(cx, &o.at("name"), n),
        // Envoy names an unnamed listener itself; the address is the name that reads best.
        None => address.map(|a| a.to_string()),
    };
    let backlog = match o.get("tcp_backlog_size") {
        Some(b) => u32_range(cx, &o.at("tcp_backlog_size"), b, 1, u32::MAX),
        None => Some(128),
    };
    let buffer = match o.get("per_connection_buffer_limit_bytes") {
        Some(b) => u32_val(cx, &o.at("per_connection_buffer_limit_bytes"), b),
        None => Some(DEFAULT_BUFFER_LIMIT),
    };
    if let Some(lf) = o.get("listener_filters") {
        listener_filters(cx, &o.at("listener_filters"), lf);
    }
    let chains = o
        .req(cx, "filter_chains")
        .and_then(|fc| filter_chains(cx, &o.at("filter_chains"), fc, clusters));
    if cx.errs.len() != before {
        return None;
    }
    let (hcm, tls) = chains?;
    Some(Listener {
        name: name?,
        address: address?,
        backlog: backlog?,
        per_connection_buffer_limit_bytes: buffer?,
        connection_limit: None,
        hcm,
        tls,
    })
}

/// `listener_filters`: only the TLS inspector, which Ringway's TLS listeners do implicitly (the
/// handshake reads the ClientHello before choosing a filter chain), so it is accepted as a no-op.
fn listener_filters(cx: &mut Cx, path: &str, v: &Value) {
    for (i, f) in list(cx, path, v).unwrap_or_default().iter().enumerate() {
        let p = index(path, i);
        let Some(f) = obj(cx, &p, f, &LISTENER_FILTER) else {
            continue;
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        match f.get("typed_config") {
            Some(tc) if type_url(tc) == Some(TLS_INSPECTOR_TYPE) || name == TLS_INSPECTOR_NAME => {
                typed(
                    cx,
                    &f.at("typed_config"),
                    tc,
                    TLS_INSPECTOR_TYPE,
                    &TLS_INSPECTOR,
                );
            }
            None if name == TLS_INSPECTOR_NAME => {}
            tc => {
                let what = tc
                    .and_then(type_url)
                    .or(Some(name).filter(|n| !n.is_empty()))
                    .unwrap_or("(unnamed)");
                cx.err(
                    &p,
                    format!(
                        "listener filter {what} is not supported by Ringway (only {TLS_INSPECTOR_NAME})"
                    ),
                );
            }
        }
    }
}

/// `filter_chains`: one connection manager for the listener (every chain must repeat the first
/// chain's `filters`) and, when the chains carry a TLS `transport_socket`, one TLS context per
/// chain selected by `filter_chain_match.server_names`.
fn filter_chains(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    clusters: &[String],
) -> Option<(HttpConnectionManager, Option<DownstreamTls>)> {
    let chains = list(cx, path, v)?;
    if chains.is_empty() {
        cx.err(path, "at least one filter chain is required");
        return None;
    }
    let before = cx.errs.len();
    let mut hcm = None;
    let mut first_filters: Option<&Value> = None;
    let mut tls_chains: Vec<(usize, TlsFilterChain)> = Vec::new();
    let mut plain: Vec<usize> = Vec::new();
    let mut names: Vec<(usize, Vec<String>)> = Vec::new();
    let mut handshake_timeout: Option<Duration> = None;
    for (i, c) in chains.iter().enumerate() {
        let p = index(path, i);
        let Some(fc) = obj(cx, &p, c, &FILTER_CHAIN) else {
            continue;
        };
        if let Some(n) = fc.get("name") {
            string(cx, &fc.at("name"), n);
        }
        match (i, fc.req(cx, "filters"), first_filters) {
            (0, Some(fv), _) => {
                first_filters = Some(fv);
                hcm = filters(cx, &fc.at("filters"), fv, clusters);
            }
            (_, Some(fv), Some(first)) if fv != first => cx.err(
                &fc.at("filters"),
                format!(
                    "differs from {}: Ringway runs one connection manager per listener, so filter chains may differ only in filter_chain_match.server_names and transport_socket",
                    join(&index(path, 0), "filters")
                ),
            ),
            _ => {}
        }
        let has_tls = fc.has("transport_socket");
        let server_names = match fc.get("filter_chain_match") {
            Some(m) => filter_chain_match(cx, &fc.at("filter_chain_match"), m, has_tls),
            None => Some(Vec::new()),
        };
        if let Some(t) = fc.get("transport_socket_connect_timeout") {
            if let Some(d) =
                duration::read_positive(cx, &fc.at("transport_socket_connect_timeout"), t)
            {
                handshake_timeout = Some(handshake_timeout.map_or(d, |h| h.max(d)));
            }
        }
        // A chain whose names were refused takes no part in the overlap checks below.
        if let Some(n) = &server_names {
            names.push((i, n.clone()));
        }
        match fc.get("transport_socket") {
            Some(ts) => {
                if let Some(context) = super::tls::downstream(cx, &fc.at("transport_socket"), ts) {
                    tls_chains.push((
                        i,
                        TlsFilterChain {
                            server_names: server_names.unwrap_or_default(),
                            context,
                        },
                    ));
                }
            }
            None => plain.push(i),
        }
    }
    if let (Some((t, _)), Some(&p)) = (tls_chains.first(), plain.first()) {
        cx.err(
            &index(path, p),
            format!(
                "{} terminates TLS but this chain has no transport_socket; Ringway does not mix TLS and plain filter chains on one listener (use two listeners)",
                index(path, *t)
            ),
        );
    }
    for (n, (i, list)) in names.iter().enumerate() {
        let earlier = &names[..n];
        if list.is_empty() {
            if let Some((j, _)) = earlier.iter().find(|(_, l)| l.is_empty()) {
                cx.err(
                    &index(path, *i),
                    format!(
                        "{} already matches every server name (no filter_chain_match.server_names); only one such default chain is allowed",
                        index(path, *j)
                    ),
                );
            }
        }
        for (k, name) in list.iter().enumerate() {
            if let Some((j, _)) = earlier.iter().find(|(_, l)| l.contains(name)) {
                cx.err(
                    &format!("{}.filter_chain_match.server_names[{k}]", index(path, *i)),
                    format!(
                        "server name {name} is already matched by {}",
                        index(path, *j)
                    ),
                );
            }
        }
    }
    if cx.errs.len() != before {
        return None;
    }
    let tls = (!tls_chains.is_empty()).then(|| DownstreamTls {
        chains: tls_chains.into_iter().map(|(_, c)| c).collect(),
        handshake_timeout: handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
    });
    Some((hcm?, tls))
}

/// `filter_chain_match`: `server_names` (exact or `*.suffix`, lowercased) and, as Envoy writes it
/// next to them, `transport_protocol` (which must agree with the chain's transport socket).
/// `None` when a name was refused.
fn filter_chain_match(cx: &mut Cx, path: &str, v: &Value, has_tls: bool) -> Option<Vec<String>> {
    let before = cx.errs.len();
    let o = obj(cx, path, v, &FILTER_CHAIN_MATCH)?;
    if let Some(t) = o.get("transport_protocol") {
        if let Some(t) = string(cx, &o.at("transport_protocol"), t) {
            let want = if has_tls { "tls" } else { "raw_buffer" };
            if t != want {
                cx.err(
                    &o.at("transport_protocol"),
                    format!("{t} does not match this chain's transport socket (expected {want})"),
                );
            }
        }
    }
    let mut out = Vec::new();
    let Some(sn) = o.get("server_names") else {
        return Some(out);
    };
    let sp = o.at("server_names");
    for (i, n) in list(cx, &sp, sn).unwrap_or_default().iter().enumerate() {
        let np = index(&sp, i);
        let Some(n) = nonempty_string(cx, &np, n) else {
            continue;
        };
        let name = n.to_ascii_lowercase();
        let body = name.strip_prefix("*.").unwrap_or(&name);
        let valid = !body.is_empty()
            && body.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            cx.err(
                &np,
                format!("{n:?} is not a server name (expected a host name or *.suffix)"),
            );
            continue;
        }
        if !has_tls {
            cx.err(
                &np,
                "matching on server names needs a TLS transport_socket on this filter chain",
            );
            continue;
        }
        out.push(name);
    }
    if cx.errs[before..].iter().any(|e| e.path.starts_with(&sp)) {
        return None;
    }
    if out.is_empty() {
        cx.err(
            &sp,
            "must not be empty (omit it to match every server name)",
        );
        return None;
    }
    Some(out)
}

/// One chain's `filters`: exactly one http_connection_manager, last.
fn filters(
    cx: &mut Cx,
    fp: &str,
    fv: &Value,
    clusters: &[String],
) -> Option<HttpConnectionManager> {
    let filters = list(cx, fp, fv)?;
    if filters.is_empty() {
        cx.err(fp, format!("one {HCM_NAME} filter is required"));
        return None;
    }
    let mut hcm = None;
    for (i, f) in filters.iter().enumerate() {
        let p = index(fp, i);
        let Some(f) = obj(cx, &p, f, &FILTER) else {
            continue;
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let tc = f.get("typed_config");
        let ty = tc.and_then(type_url);
        if ty != Some(HCM_TYPE) && name != HCM_NAME {
            let what = ty
                .or(Some(name).filter(|n| !n.is_empty()))
                .unwrap_or("(unnamed)");
            cx.err(
                &p,
                format!("network filter {what} is not supported by Ringway (only {HCM_NAME})"),
            );
            continue;
        }
        if i != filters.len() - 1 {
            cx.err(
                &p,
                format!("{HCM_NAME} must be the last filter in the chain"),
            );
        }
        let Some(tc) = tc else {
            cx.err(&f.at("typed_config"), "required field is missing");
            continue;
        };
        hcm = http_connection_manager(cx, &f.at("typed_config"), tc, clusters);
    }
    hcm
}

fn http_connection_manager(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    clusters: &[String],
) -> Option<HttpConnectionManager> {
    let o = typed(cx, path, v, HCM_TYPE, &HCM)?;
    let before = cx.errs.len();
    let stat_prefix = o
        .req(cx, "stat_prefix")
        .and_then(|s| nonempty_string(cx, &o.at("stat_prefix"), s));
    let codec_type = match o.get("codec_type") {
        Some(c) => enumeration(
            cx,
            &o.at("codec_type"),
            c,
            &[
                ("AUTO", CodecType::Auto),
                ("HTTP1", CodecType::Http1),
                ("HTTP2", CodecType::Http2),
            ],
            &["HTTP3"],
        ),
        None => Some(CodecType::Auto),
    };
    let route_config = match o.get("route_config") {
        Some(rc) => routes::route_config(cx, &o.at("route_config"), rc, clusters),
        None => {
            if !o.has("rds") && !o.has("scoped_routes") {
                cx.err(&o.at("route_config"), "required field is missing");
            }
            None
        }
    };
    http_filters(cx, &o);
    let mut access_logs = Vec::new();
    if let Some(ls) = o.get("access_log") {
        let lp = o.at("access_log");
        for (i, l) in list(cx, &lp, ls).unwrap_or_default().iter().enumerate() {
            if let Some(l) = access_log(cx, &index(&lp, i), l) {
                access_logs.push(l);
            }
        }
    }
    let dur = |cx: &mut Cx, key: &str, default: Duration| match o.get(key) {
        Some(d) => duration::read(cx, &o.at(key), d),
        None => Some(default),
    };
    let request_headers_timeout = dur(cx, "request_headers_timeout", Duration::from_secs(30));
    let stream_idle_timeout = dur(cx, "stream_idle_timeout", Duration::from_secs(300));
    let request_timeout = dur(cx, "request_timeout", Duration::ZERO);
    let drain_timeout = dur(cx, "drain_timeout", Duration::from_secs(5));
    let mut max_stream_duration = Some(Duration::ZERO);
    let mut idle_timeout = Some(Duration::from_secs(3600));
    let mut max_headers_count = Some(100);
    if let Some(h) = o.get("common_http_protocol_options") {
        if let Some(h) = obj(
            cx,
            &o.at("common_http_protocol_options"),
            h,
            &HCM_HTTP_OPTIONS,
        ) {
            if let Some(d) = h.get("idle_timeout") {
                idle_timeout = duration::read(cx, &h.at("idle_timeout"), d);
            }
            if let Some(n) = h.get("max_headers_count") {
                max_headers_count = u32_range(cx, &h.at("max_headers_count"), n, 1, u32::MAX);
            }
            if let Some(d) = h.get("max_stream_duration") {
                max_stream_duration = duration::read(cx, &h.at("max_stream_duration"), d);
            }
        }
    }
    let max_request_headers_kb = match o.get("max_request_headers_kb") {
        Some(n) => u32_range(cx, &o.at("max_request_headers_kb"), n, 1, 8192),
        None => Some(60),
    };
    let flag = |cx: &mut Cx, key: &str, default: bool| match o.get(key) {
        Some(b) => boolean(cx, &o.at(key), b),
        None => Some(default),
    };
    let use_remote_address = flag(cx, "use_remote_address", false);
    let generate_request_id = flag(cx, "generate_request_id", true);
    let server_name = match o.get("server_name") {
        Some(s) => nonempty_string(cx, &o.at("server_name"), s),
        None => Some("ringway".to_string()),
    };
    let http10 = match o.get("http_protocol_options") {
        Some(h) => http1_options(cx, &o.at("http_protocol_options"), h),
        None => Some(Http10::default()),
    };
    if let Some(x) = o.get("xff_num_trusted_hops") {
        if u32_val(cx, &o.at("xff_num_trusted_hops"), x).is_some_and(|n| n != 0) {
            cx.err(
                &o.at("xff_num_trusted_hops"),
                "trusted x-forwarded-for hops are not supported by Ringway (only 0)",
            );
        }
    }
    let http2 = match o.get("http2_protocol_options") {
        Some(h) => protocol::http2_options(cx, &o.at("http2_protocol_options"), h),
        None => Some(Http2Options::default()),
    };
    let mut upgrade_types = Vec::new();
    if let Some(us) = o.get("upgrade_configs") {
        let up = o.at("upgrade_configs");
        for (i, u) in list(cx, &up, us).unwrap_or_default().iter().enumerate() {
            let Some(u) = obj(cx, &index(&up, i), u, &HCM_UPGRADE) else {
                continue;
            };
            let ty = u
                .req(cx, "upgrade_type")
                .and_then(|t| nonempty_string(cx, &u.at("upgrade_type"), t));
            let enabled = match u.get("enabled") {
                Some(e) => boolean(cx, &u.at("enabled"), e),
                None => Some(true),
            };
            if let (Some(t), Some(true)) = (ty, enabled) {
                upgrade_types.push(t.to_ascii_lowercase());
            }
        }
    }
    if cx.errs.len() != before {
        return None;
    }
    let http10 = http10?;
    Some(HttpConnectionManager {
        stat_prefix: stat_prefix?,
        codec_type: codec_type?,
        route_config: route_config?,
        access_logs,
        request_headers_timeout: request_headers_timeout?,
        stream_idle_timeout: stream_idle_timeout?,
        idle_timeout: idle_timeout?,
        request_timeout: request_timeout?,
        drain_timeout: drain_timeout?,
        max_stream_duration: max_stream_duration?,
        max_request_headers_kb: max_request_headers_kb?,
        max_headers_count: max_headers_count?,
        use_remote_address: use_remote_address?,
        generate_request_id: generate_request_id?,
        server_name: server_name?,
        upgrade_types,
        http2: http2?,
        accept_http_10: http10.accept,
        default_host_for_http_10: http10.default_host,
    })
}

/// The HTTP/1.0 settings of `http_protocol_options` (Envoy's `Http1ProtocolOptions`).
#[derive(Default)]
struct Http10 {
    accept: bool,
    default_host: Option<String>,
}

/// `http_protocol_options`: `accept_http_10` (default false: Envoy answers HTTP/1.0 with 426) and
/// `default_host_for_http_10`, the Host given to an HTTP/1.0 request that has none. As in
/// protobuf JSON, an empty string is the unset default. Envoy takes the host as it is, but it
/// becomes a request header, so Ringway refuses anything that is not visible ASCII (a space or a
/// CR/LF there would split the forwarded head). The host without `accept_http_10` is a no-op in
/// Envoy and is accepted here likewise.
fn http1_options(cx: &mut Cx, path: &str, v: &Value) -> Option<Http10> {
    let before = cx.errs.len();
    let o = obj(cx, path, v, &HTTP1_OPTIONS)?;
    let accept = match o.get("accept_http_10") {
        Some(b) => boolean(cx, &o.at("accept_http_10"), b),
        None => Some(false),
    };
    let default_host = match o.get("default_host_for_http_10") {
        None => None,
        Some(h) => {
            let at = o.at("default_host_for_http_10");
            match string(cx, &at, h) {
                Some(h) if h.is_empty() => None,
                Some(h) if h.bytes().all(|b| b.is_ascii_graphic()) => Some(h),
                Some(h) => {
                    cx.err(
                        &at,
                        format!("{h:?} is not a valid host (only visible ASCII, no spaces)"),
                    );
                    None
                }
                None => None,
            }
        }
    };
    if cx.errs.len() != before {
        return None;
    }
    Some(Http10 {
        accept: accept?,
        default_host,
    })
}

/// `http_filters`: the router is the only HTTP filter and must be present (and last, as Envoy
/// requires of its terminal filter).
fn http_filters(cx: &mut Cx, o: &Obj<'_>) {
    let fp = o.at("http_filters");
    let Some(fs) = o.get("http_filters") else {
        cx.err(
            &fp,
            format!("required field is missing (it must contain {ROUTER_NAME})"),
        );
        return;
    };
    let Some(fs) = list(cx, &fp, fs) else { return };
    let mut router = false;
    for (i, f) in fs.iter().enumerate() {
        let p = index(&fp, i);
        let Some(f) = obj(cx, &p, f, &HTTP_FILTER) else {
            continue;
        };
        let name = f
            .req(cx, "name")
            .and_then(|n| nonempty_string(cx, &f.at("name"), n))
            .unwrap_or_default();
        let tc = f.get("typed_config");
        let is_router = match tc.and_then(type_url) {
            Some(t) => t == ROUTER_TYPE,
            None => name == ROUTER_NAME,
        };
        if !is_router {
            let what = tc
                .and_then(type_url)
                .map_or(name.clone(), |t| format!("{name} ({t})"));
            cx.err(
                &p,
                format!("HTTP filter {what} is not supported by Ringway (only {ROUTER_NAME})"),
            );
            continue;
        }
        if let Some(tc) = tc {
            typed(cx, &f.at("typed_config"), tc, ROUTER_TYPE, &ROUTER);
        }
        if i != fs.len() - 1 {
            cx.err(&p, format!("{ROUTER_NAME} must be the last HTTP filter"));
        }
        router = true;
    }
    if !router {
        cx.err(&fp, format!("{ROUTER_NAME} is required"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::access_logs::FILE_LOG_TYPE;

    fn run(yaml: &str) -> Result<Bootstrap, Vec<String>> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let b = bootstrap(&mut cx, &v);
        if cx.errs.is_empty() {
            Ok(b.unwrap())
        } else {
            Err(cx
                .errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect())
        }
    }

    fn hcm(extra: &str) -> String {
        format!(
            "static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: 8080}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': {HCM_TYPE}
          stat_prefix: ingress
          route_config: {{virtual_hosts: [{{name: v, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: c}}}}]}}]}}
          http_filters: [{{name: envoy.filters.http.router}}]
{extra}
  clusters: [{{name: c}}]
"
        )
    }

    #[test]
    fn listener_and_hcm_defaults() {
        let b = run(&hcm("")).unwrap();
        assert!(b.admin.is_none());
        let l = &b.listeners[0];
        assert_eq!(l.name, "127.0.0.1:8080");
        assert_eq!(l.address, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (l.backlog, l.per_connection_buffer_limit_bytes),
            (128, 1 << 20)
        );
        let h = &l.hcm;
        assert_eq!(h.stat_prefix, "ingress");
        assert_eq!(h.codec_type, CodecType::Auto);
        assert!(h.access_logs.is_empty());
        assert_eq!(h.request_headers_timeout, Duration::from_secs(30));
        assert_eq!(h.stream_idle_timeout, Duration::from_secs(300));
        assert_eq!(h.idle_timeout, Duration::from_secs(3600));
        assert_eq!(
            (h.request_timeout, h.max_stream_duration),
            (Duration::ZERO, Duration::ZERO)
        );
        assert_eq!((h.max_request_headers_kb, h.max_headers_count), (60, 100));
        assert!(!h.use_remote_address && h.generate_request_id);
        assert_eq!(h.server_name, "ringway");
        assert!(h.upgrade_types.is_empty());
        assert_eq!(h.route_config.name, "");
        assert_eq!(h.http2, Http2Options::default());
        assert!(!h.accept_http_10);
        assert_eq!(h.default_host_for_http_10, None);
    }

    #[test]
    fn http_10_options() {
        let hcm_of = |extra: &str| run(&hcm(extra)).map(|b| b.listeners[0].hcm.clone());
        let h = hcm_of(
            "          http_protocol_options: {accept_http_10: true, default_host_for_http_10: www.example.com}",
        )
        .unwrap();
        assert!(h.accept_http_10);
        assert_eq!(
            h.default_host_for_http_10.as_deref(),
            Some("www.example.com")
        );

        let h = hcm_of("          http_protocol_options: {accept_http_10: false}").unwrap();
        assert!(!h.accept_http_10);
        assert_eq!(h.default_host_for_http_10, None);

        // Empty is protobuf's unset; a host without accept_http_10 is Envoy's no-op.
        let h = hcm_of("          http_protocol_options: {default_host_for_http_10: ''}").unwrap();
        assert_eq!(
            (h.accept_http_10, h.default_host_for_http_10),
            (false, None)
        );
        let h = hcm_of("          http_protocol_options: {default_host_for_http_10: 'a:8080'}")
            .unwrap();
        assert_eq!(h.default_host_for_http_10.as_deref(), Some("a:8080"));

        let base = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_protocol_options";
        let e = hcm_of(
            "          http_protocol_options: {accept_http_10: maybe, default_host_for_http_10: \"a b\"}",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with(&format!("{base}.accept_http_10: ")),
            "{e:#?}"
        );
        assert_eq!(
            e[1],
            format!("{base}.default_host_for_http_10: \"a b\" is not a valid host (only visible ASCII, no spaces)")
        );
        let e =
            hcm_of("          http_protocol_options: {default_host_for_http_10: [a]}").unwrap_err();
        assert!(
            e[0].starts_with(&format!("{base}.default_host_for_http_10: ")),
            "{e:#?}"
        );
        let e = hcm_of("          http_protocol_options: 3").unwrap_err();
        assert_eq!(
            e,
            vec![format!("{base}: expected an object, got an integer")]
        );
    }

    #[test]
    fn every_hcm_field() {
        let b = run(&hcm(
            "          codec_type: HTTP1
          request_headers_timeout: 10s
          stream_idle_timeout: 0s
          request_timeout: 20s
          drain_timeout: 2s
          common_http_protocol_options: {idle_timeout: 30s, max_headers_count: 50, max_stream_duration: 90s}
          max_request_headers_kb: 96
          use_remote_address: true
          generate_request_id: false
          server_name: edge
          upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: CONNECT, enabled: false}]
          http_protocol_options: {}
          xff_num_trusted_hops: 0
          access_log:
          - name: envoy.access_loggers.file
            typed_config: {'@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: /tmp/a.log}
          - name: envoy.access_loggers.stdout",
        ))
        .unwrap();
        let h = &b.listeners[0].hcm;
        assert_eq!(h.codec_type, CodecType::Http1);
        assert_eq!(h.request_headers_timeout, Duration::from_secs(10));
        assert_eq!(h.stream_idle_timeout, Duration::ZERO);
        assert_eq!(h.idle_timeout, Duration::from_secs(30));
        assert_eq!(h.request_timeout, Duration::from_secs(20));
        assert_eq!(h.drain_timeout, Duration::from_secs(2));
        assert_eq!(h.max_stream_duration, Duration::from_secs(90));
        assert_eq!((h.max_request_headers_kb, h.max_headers_count), (96, 50));
        assert!(h.use_remote_address && !h.generate_request_id);
        assert_eq!(h.server_name, "edge");
        assert_eq!(h.upgrade_types, ["websocket"]);
        let logs: Vec<_> = h
            .access_logs
            .iter()
            .map(|l| (l.path.to_str().unwrap(), l.format.clone()))
            .collect();
        assert_eq!(logs, [("/tmp/a.log", None), ("/dev/stdout", None)]);
    }

    #[test]
    fn http2_codec_and_options() {
        let b = run(&hcm("          codec_type: HTTP2
          http2_protocol_options: {max_concurrent_streams: 250, initial_stream_window_size: 1048576, initial_connection_window_size: 4194304}"))
        .unwrap();
        let h = &b.listeners[0].hcm;
        assert_eq!(h.codec_type, CodecType::Http2);
        assert_eq!(
            h.http2,
            Http2Options {
                max_concurrent_streams: 250,
                initial_stream_window_size: 1 << 20,
                initial_connection_window_size: 4 << 20,
            }
        );
    }

    #[test]
    fn admin_and_listener_fields() {
        let b = run(&format!(
            "admin:
  access_log_path: /tmp/admin.log
  access_log:
  - name: envoy.access_loggers.file
    typed_config: {{'@type': {FILE_LOG_TYPE}, path: /tmp/admin2.log}}
  address: {{socket_address: {{address: '::1', port_value: 9901}}}}
node: {{id: n, cluster: c}}
layered_runtime: {{layers: []}}
{}",
            hcm("").replace(
                "  - address:",
                "  - name: main\n    tcp_backlog_size: 1024\n    per_connection_buffer_limit_bytes: 65536\n    address:"
            )
        ))
        .unwrap();
        let a = b.admin.unwrap();
        assert_eq!(a.address, "[::1]:9901".parse().unwrap());
        assert_eq!(
            a.access_log_paths,
            [
                PathBuf::from("/tmp/admin.log"),
                PathBuf::from("/tmp/admin2.log")
            ]
        );
        let l = &b.listeners[0];
        assert_eq!(
            (
                l.name.as_str(),
                l.backlog,
                l.per_connection_buffer_limit_bytes
            ),
            ("main", 1024, 65536)
        );
    }

    #[test]
    fn access_log_errors() {
        let e = run(&hcm(
            "          access_log:
          - name: envoy.access_loggers.file
            typed_config: {path: /tmp/x}
          - name: envoy.access_loggers.file
            typed_config: {'@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog}
          - name: envoy.access_loggers.file
          - filter: {}
            name: envoy.access_loggers.stdout",
        ))
        .unwrap_err();
        let base =
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log";
        let paths: Vec<String> = e
            .iter()
            .map(|s| s.split(": ").next().unwrap().to_string())
            .collect();
        let want: Vec<String> = [
            "[0].typed_config.@type",
            "[1].typed_config.path",
            "[2].typed_config",
            "[3].filter",
        ]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
        assert_eq!(paths, want, "{e:#?}");
    }

    #[test]
    fn hcm_errors() {
        let e = run(&hcm("          codec_type: HTTP3
          max_request_headers_kb: 9000
          http2_protocol_options: {max_concurrent_streams: 0, hpack_table_size: 0}
          xff_num_trusted_hops: 1
          http_protocol_options: {accept_http_10: true, allow_absolute_url: true}
          rds: {}"))
        .unwrap_err();
        let base = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
        let paths: Vec<String> = e
            .iter()
            .map(|s| s.split(": ").next().unwrap().to_string())
            .collect();
        let want: Vec<String> = [
            "rds",
            "codec_type",
            "max_request_headers_kb",
            "http_protocol_options.allow_absolute_url",
            "xff_num_trusted_hops",
            "http2_protocol_options.hpack_table_size",
            "http2_protocol_options.max_concurrent_streams",
        ]
        .iter()
        .map(|p| format!("{base}.{p}"))
        .collect();
        assert_eq!(paths, want, "{e:#?}");
    }
}
