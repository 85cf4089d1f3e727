//! `route_config`: Envoy's RouteConfiguration, VirtualHost and Route messages into [`RouteConfig`].
//!
//! Routes point at clusters by index ([`ClusterId`]), resolved here against the names of the
//! clusters in the file, so the router never looks a cluster up by name. Domain patterns are
//! checked and de-duplicated across virtual hosts the way Envoy does, so a file that loads here
//! routes the same way in Envoy.

use serde_yaml_ng::Value;
use std::collections::HashMap;
use std::time::Duration;

use super::duration;
use super::headers::{header_mutations, header_name};
use super::model::*;
use super::walk::*;

const ROUTE_CONFIG: Message = Message {
    supported: &[
        "name",
        "virtual_hosts",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
        "validate_clusters",
    ],
    unsupported: &[
        "vhds",
        "internal_only_headers",
        "most_specific_header_mutations_wins",
        "max_direct_response_body_size_bytes",
        "cluster_specifier_plugins",
        "request_mirror_policies",
        "ignore_port_in_host_matching",
        "ignore_path_parameters_in_path_matching",
        "typed_per_filter_config",
        "metadata",
    ],
};

const VIRTUAL_HOST: Message = Message {
    supported: &[
        "name",
        "domains",
        "routes",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
        "retry_policy",
    ],
    unsupported: &[
        "matcher",
        "require_tls",
        "virtual_clusters",
        "rate_limits",
        "cors",
        "typed_per_filter_config",
        "include_request_attempt_count",
        "include_attempt_count_in_response",
        "retry_policy_typed_config",
        "hedge_policy",
        "include_is_timeout_retry_header",
        "per_request_buffer_limit_bytes",
        "request_body_buffer_limit",
        "request_mirror_policies",
        "metadata",
    ],
};

const ROUTE: Message = Message {
    supported: &[
        "name",
        "match",
        "route",
        "direct_response",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ],
    unsupported: &[
        "redirect",
        "filter_action",
        "non_forwarding_action",
        "metadata",
        "decorator",
        "typed_per_filter_config",
        "tracing",
        "per_request_buffer_limit_bytes",
        "request_body_buffer_limit",
        "stat_prefix",
    ],
};

const ROUTE_MATCH: Message = Message {
    supported: &["prefix", "path", "case_sensitive", "headers"],
    unsupported: &[
        "safe_regex",
        "connect_matcher",
        "path_separated_prefix",
        "path_match_policy",
        "runtime_fraction",
        "query_parameters",
        "grpc",
        "tls_context",
        "dynamic_metadata",
        "filter_state",
        "cookies",
    ],
};

const HEADER_MATCHER: Message = Message {
    supported: &[
        "name",
        "exact_match",
        "prefix_match",
        "present_match",
        "string_match",
        "invert_match",
    ],
    unsupported: &[
        "safe_regex_match",
        "range_match",
        "suffix_match",
        "contains_match",
        "treat_missing_header_as_empty",
    ],
};

const STRING_MATCHER: Message = Message {
    supported: &["exact", "prefix"],
    unsupported: &["suffix", "safe_regex", "contains", "custom", "ignore_case"],
};

const ROUTE_ACTION: Message = Message {
    supported: &[
        "cluster",
        "timeout",
        "prefix_rewrite",
        "host_rewrite_literal",
        "retry_policy",
        "upgrade_configs",
        "idle_timeout",
        "max_stream_duration",
    ],
    unsupported: &[
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
        "cluster_not_found_response_code",
        "metadata_match",
        "path_rewrite_policy",
        "regex_rewrite",
        "host_rewrite_header",
        "auto_host_rewrite",
        "host_rewrite_path_regex",
        "append_x_forwarded_host",
        "early_data_policy",
        "retry_policy_typed_config",
        "request_mirror_policies",
        "priority",
        "rate_limits",
        "include_vh_rate_limits",
        "hash_policy",
        "cors",
        "max_grpc_timeout",
        "grpc_timeout_offset",
        "internal_redirect_policy",
        "internal_redirect_action",
        "max_internal_redirects",
        "hedge_policy",
    ],
};

const MAX_STREAM_DURATION: Message = Message {
    supported: &["max_stream_duration"],
    unsupported: &["grpc_timeout_header_max", "grpc_timeout_header_offset"],
};

const RETRY_POLICY: Message = Message {
    supported: &["retry_on", "num_retries", "per_try_timeout"],
    unsupported: &[
        "per_try_idle_timeout",
        "retry_priority",
        "retry_host_predicate",
        "retry_options_predicates",
        "host_selection_retry_max_attempts",
        "retriable_status_codes",
        "retry_back_off",
        "rate_limited_retry_back_off",
        "retriable_headers",
        "retriable_request_headers",
    ],
};

const ROUTE_UPGRADE: Message = Message {
    supported: &["upgrade_type", "enabled"],
    unsupported: &["connect_config"],
};

const DIRECT_RESPONSE: Message = Message {
    supported: &["status", "body"],
    unsupported: &["body_format"],
};

const DATA_SOURCE: Message = Message {
    supported: &["inline_string"],
    unsupported: &[
        "filename",
        "inline_bytes",
        "environment_variable",
        "watched_directory",
    ],
};

/// Envoy's route `timeout` default.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn route_config(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    clusters: &[String],
) -> Option<RouteConfig> {
    let o = obj(cx, path, v, &ROUTE_CONFIG)?;
    let before = cx.errs.len();
    let name = match o.get("name") {
        Some(n) => string(cx, &o.at("name"), n),
        None => Some(String::new()),
    };
    if let Some(vc) = o.get("validate_clusters") {
        // Ringway always checks route clusters against the file; the flag only needs to be valid.
        boolean(cx, &o.at("validate_clusters"), vc);
    }
    let headers = header_mutations(cx, &o);
    let mut vhosts = Vec::new();
    // Lowercased domain → path of the virtual host that claimed it (Envoy rejects duplicates).
    let mut seen: HashMap<String, String> = HashMap::new();
    if let Some(vs) = o.get("virtual_hosts") {
        let vp = o.at("virtual_hosts");
        for (i, vh) in list(cx, &vp, vs).unwrap_or_default().iter().enumerate() {
            if let Some(vh) = virtual_host(cx, &index(&vp, i), vh, clusters, &mut seen) {
                vhosts.push(vh);
            }
        }
    }
    (cx.errs.len() == before).then_some(RouteConfig {
        name: name?,
        virtual_hosts: vhosts,
        headers,
    })
}

fn virtual_host(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    clusters: &[String],
    seen: &mut HashMap<String, String>,
) -> Option<VirtualHost> {
    let o = obj(cx, path, v, &VIRTUAL_HOST)?;
    let before = cx.errs.len();
    let name = o
        .req(cx, "name")
        .and_then(|n| nonempty_string(cx, &o.at("name"), n));
    let mut domains = Vec::new();
    if let Some(ds) = o.req(cx, "domains") {
        let dp = o.at("domains");
        if let Some(ds) = list(cx, &dp, ds) {
            if ds.is_empty() {
                cx.err(&dp, "must list at least one domain");
            }
            for (i, d) in ds.iter().enumerate() {
                let p = index(&dp, i);
                let Some(d) = string(cx, &p, d) else { continue };
                let d = d.to_ascii_lowercase();
                if let Err(e) = check_domain(&d) {
                    cx.err(&p, e);
                    continue;
                }
                if let Some(first) = seen.get(&d) {
                    cx.err(
                        &p,
                        format!("duplicate domain {d} (already used at {first}); Envoy requires domains to be unique"),
                    );
                    continue;
                }
                seen.insert(d.clone(), p);
                domains.push(d);
            }
        }
    }
    let headers = header_mutations(cx, &o);
    let retry_policy = match o.get("retry_policy") {
        Some(r) => retry_policy(cx, &o.at("retry_policy"), r).map(Some),
        None => Some(None),
    };
    let mut routes = Vec::new();
    if let Some(rs) = o.get("routes") {
        let rp = o.at("routes");
        for (i, r) in list(cx, &rp, rs).unwrap_or_default().iter().enumerate() {
            if let Some(r) = route(cx, &index(&rp, i), r, clusters) {
                routes.push(r);
            }
        }
    }
    if cx.errs.len() != before {
        return None;
    }
    Some(VirtualHost {
        name: name?,
        domains,
        routes,
        headers,
        retry_policy: retry_policy?,
    })
}

/// Envoy's domain forms: `*`, `*.suffix` / `*suffix`, `prefix.*` / `prefix*`, or an exact host,
/// each optionally with `:port`. Ringway's router takes the dotted wildcard forms only.
pub(crate) fn check_domain(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("domain must not be empty".into());
    }
    // Split off a port, minding bracketed IPv6 literals.
    let host = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("invalid domain {d}: unclosed [ in IPv6 literal"));
        };
        let after = &rest[end + 1..];
        if !after.is_empty() {
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("invalid domain {d}"))?;
            check_port(d, port)?;
        }
        return Ok(());
    } else {
        match d.rsplit_once(':') {
            Some((h, port)) => {
                check_port(d, port)?;
                h
            }
            None => d,
        }
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    let ok = match host.matches('*').count() {
        0 => name_ok(host),
        1 if host == "*" => true,
        1 => match (host.strip_prefix("*."), host.strip_suffix(".*")) {
            (Some(suffix), None) => name_ok(suffix),
            (None, Some(prefix)) => name_ok(prefix),
            _ => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid domain {d} (expected *, *.suffix, prefix.*, or an exact host name, each with an optional :port)"
        ))
    }
}

fn check_port(d: &str, port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("invalid port in domain {d}")),
    }
}

fn route(cx: &mut Cx, path: &str, v: &Value, clusters: &[String]) -> Option<Route> {
    let o = obj(cx, path, v, &ROUTE)?;
    let before = cx.errs.len();
    let name = match o.get("name") {
        Some(n) => string(cx, &o.at("name"), n),
        None => Some(String::new()),
    };
    let matcher = o
        .req(cx, "match")
        .and_then(|m| route_match(cx, &o.at("match"), m));
    let action = match (o.get("route"), o.get("direct_response")) {
        (Some(_), Some(_)) => {
            cx.err(
                path,
                "a route takes exactly one of route and direct_response",
            );
            None
        }
        (Some(r), None) => forward(cx, &o.at("route"), r, clusters).map(RouteAction::Forward),
        (None, Some(d)) => direct(cx, &o.at("direct_response"), d).map(RouteAction::Direct),
        (None, None) => {
            // An unsupported action (redirect, ...) has already been reported by `obj`.
            if !["redirect", "filter_action", "non_forwarding_action"]
                .iter()
                .any(|k| o.has(k))
            {
                cx.err(path, "a route needs one of route or direct_response");
            }
            None
        }
    };
    let headers = header_mutations(cx, &o);
    if cx.errs.len() != before {
        return None;
    }
    Some(Route {
        name: name?,
        matcher: matcher?,
        action: action?,
        headers,
    })
}

fn route_match(cx: &mut Cx, path: &str, v: &Value) -> Option<RouteMatch> {
    let o = obj(cx, path, v, &ROUTE_MATCH)?;
    let before = cx.errs.len();
    let path_match = match (o.get("prefix"), o.get("path")) {
        (Some(_), Some(_)) => {
            cx.err(
                path,
                "exactly one of prefix and path is allowed, both are set",
            );
            None
        }
        (Some(p), None) => string(cx, &o.at("prefix"), p).map(PathMatch::Prefix),
        (None, Some(p)) => nonempty_string(cx, &o.at("path"), p).map(PathMatch::Path),
        (None, None) => {
            let other = [
                "safe_regex",
                "connect_matcher",
                "path_separated_prefix",
                "path_match_policy",
            ];
            if !other.iter().any(|k| o.has(k)) {
                cx.err(path, "one of prefix or path is required");
            }
            None
        }
    };
    let case_sensitive = match o.get("case_sensitive") {
        Some(b) => boolean(cx, &o.at("case_sensitive"), b),
        None => Some(true),
    };
    let mut headers = Vec::new();
    if let Some(hs) = o.get("headers") {
        let hp = o.at("headers");
        for (i, h) in list(cx, &hp, hs).unwrap_or_default().iter().enumerate() {
            if let Some(h) = header_matcher(cx, &index(&hp, i), h) {
                headers.push(h);
            }
        }
    }
    if cx.errs.len() != before {
        return None;
    }
    Some(RouteMatch {
        path: path_match?,
        case_sensitive: case_sensitive?,
        headers,
    })
}

fn header_matcher(cx: &mut Cx, path: &str, v: &Value) -> Option<HeaderMatcher> {
    let o = obj(cx, path, v, &HEADER_MATCHER)?;
    let name = o
        .req(cx, "name")
        .and_then(|n| header_name(cx, &o.at("name"), n, true));
    let set: Vec<&str> = [
        "exact_match",
        "prefix_match",
        "present_match",
        "string_match",
    ]
    .into_iter()
    .filter(|k| o.has(k))
    .collect();
    let kind = match set.as_slice() {
        [] => {
            let unsupported = [
                "safe_regex_match",
                "range_match",
                "suffix_match",
                "contains_match",
            ];
            if unsupported.iter().any(|k| o.has(k)) {
                None // already reported as unsupported
            } else {
                // Envoy's rule: a matcher with no value matches when the header is present.
                Some(HeaderMatchKind::Present(true))
            }
        }
        [k] => {
            let p = o.at(k);
            let v = o.get(k)?;
            match *k {
                "exact_match" => string(cx, &p, v).map(HeaderMatchKind::Exact),
                "prefix_match" => nonempty_string(cx, &p, v).map(HeaderMatchKind::Prefix),
                "present_match" => boolean(cx, &p, v).map(HeaderMatchKind::Present),
                _ => string_matcher(cx, &p, v),
            }
        }
        _ => {
            cx.err(path, format!("only one of {} may be set", set.join(", ")));
            None
        }
    };
    let invert = match o.get("invert_match") {
        Some(b) => boolean(cx, &o.at("invert_match"), b),
        None => Some(false),
    };
    Some(HeaderMatcher {
        name: name?,
        kind: kind?,
        invert: invert?,
    })
}

fn string_matcher(cx: &mut Cx, path: &str, v: &Value) -> Option<HeaderMatchKind> {
    let o = obj(cx, path, v, &STRING_MATCHER)?;
    match (o.get("exact"), o.get("prefix")) {
        (Some(e), None) => string(cx, &o.at("exact"), e).map(HeaderMatchKind::Exact),
        (None, Some(p)) => nonempty_string(cx, &o.at("prefix"), p).map(HeaderMatchKind::Prefix),
        (Some(_), Some(_)) => {
            cx.err(path, "only one of exact and prefix may be set");
            None
        }
        (None, None) => {
            if STRING_MATCHER.unsupported.iter().all(|k| !o.has(k)) {
                cx.err(path, "one of exact or prefix is required");
            }
            None
        }
    }
}

fn forward(cx: &mut Cx, path: &str, v: &Value, clusters: &[String]) -> Option<ForwardAction> {
    let o = obj(cx, path, v, &ROUTE_ACTION)?;
    let before = cx.errs.len();
    let alternatives = [
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ];
    let cluster = match o.get("cluster") {
        Some(c) => nonempty_string(cx, &o.at("cluster"), c).and_then(|name| {
            match clusters.iter().position(|n| *n == name) {
                Some(id) => Some((id, name)),
                None => {
                    cx.err(&o.at("cluster"), format!("unknown cluster {name} (no cluster of that name is defined in static_resources.clusters)"));
                    None
                }
            }
        }),
        None => {
            if !alternatives.iter().any(|k| o.has(k)) {
                cx.err(&o.at("cluster"), "required field is missing");
            }
            None
        }
    };
    let timeout = match o.get("timeout") {
        Some(t) => duration::read(cx, &o.at("timeout"), t).map(|d| (!d.is_zero()).then_some(d)),
        None => Some(Some(DEFAULT_ROUTE_TIMEOUT)),
    };
    // Both override the connection manager's value for this route; zero switches it off here
    // even when the connection manager sets one (Envoy's rule for both fields).
    let idle_timeout = o
        .get("idle_timeout")
        .map(|t| duration::read(cx, &o.at("idle_timeout"), t));
    let max_stream_duration = o
        .get("max_stream_duration")
        .map(|m| route_max_stream_duration(cx, &o.at("max_stream_duration"), m));
    let prefix_rewrite = o
        .get("prefix_rewrite")
        .map(|p| string(cx, &o.at("prefix_rewrite"), p));
    let host_rewrite_literal = o
        .get("host_rewrite_literal")
        .map(|h| nonempty_string(cx, &o.at("host_rewrite_literal"), h));
    let retry = o
        .get("retry_policy")
        .map(|r| retry_policy(cx, &o.at("retry_policy"), r));
    let mut upgrade_overrides = Vec::new();
    if let Some(us) = o.get("upgrade_configs") {
        let up = o.at("upgrade_configs");
        for (i, u) in list(cx, &up, us).unwrap_or_default().iter().enumerate() {
            let p = index(&up, i);
            let Some(u) = obj(cx, &p, u, &ROUTE_UPGRADE) else {
                continue;
            };
            let ty = u
                .req(cx, "upgrade_type")
                .and_then(|t| nonempty_string(cx, &u.at("upgrade_type"), t));
            let enabled = match u.get("enabled") {
                Some(e) => boolean(cx, &u.at("enabled"), e),
                None => Some(true),
            };
            if let (Some(t), Some(e)) = (ty, enabled) {
                upgrade_overrides.push((t.to_ascii_lowercase(), e));
            }
        }
    }
    if cx.errs.len() != before {
        return None;
    }
    let (cluster, cluster_name) = cluster?;
    Some(ForwardAction {
        cluster,
        cluster_name,
        timeout: timeout?,
        idle_timeout: idle_timeout.flatten(),
        max_stream_duration: max_stream_duration.flatten().flatten(),
        prefix_rewrite: prefix_rewrite.flatten(),
        host_rewrite_literal: host_rewrite_literal.flatten(),
        retry_policy: retry.flatten(),
        upgrade_overrides,
    })
}

/// `route.max_stream_duration`: `Some(None)` when the message leaves its duration unset (the
/// connection manager's value then applies).
fn route_max_stream_duration(cx: &mut Cx, path: &str, v: &Value) -> Option<Option<Duration>> {
    let o = obj(cx, path, v, &MAX_STREAM_DURATION)?;
    match o.get("max_stream_duration") {
        Some(d) => duration::read(cx, &o.at("max_stream_duration"), d).map(Some),
        None => Some(None),
    }
}

fn direct(cx: &mut Cx, path: &str, v: &Value) -> Option<DirectResponse> {
    let o = obj(cx, path, v, &DIRECT_RESPONSE)?;
    let status = o
        .req(cx, "status")
        .and_then(|s| u32_range(cx, &o.at("status"), s, 200, 599))
        .and_then(|s| u16::try_from(s).ok());
    let body = match o.get("body") {
        Some(b) => {
            let bp = o.at("body");
            obj(cx, &bp, b, &DATA_SOURCE).and_then(|d| match d.get("inline_string") {
                Some(s) => string(cx, &d.at("inline_string"), s).map(Some),
                None if d.is_empty() => {
                    cx.err(&bp, "inline_string is required");
                    None
                }
                None => None, // an unsupported source, already reported
            })
        }
        None => Some(None),
    };
    Some(DirectResponse {
        status: status?,
        body: body?,
    })
}

/// Envoy's retry conditions that Ringway implements, by name.
const RETRY_ON: [(&str, RetryOn); 6] = [
    ("5xx", RetryOn::FIVE_XX),
    ("gateway-error", RetryOn::GATEWAY_ERROR),
    ("connect-failure", RetryOn::CONNECT_FAILURE),
    ("reset", RetryOn::RESET),
    ("retriable-4xx", RetryOn::RETRIABLE_4XX),
    ("refused-stream", RetryOn::REFUSED_STREAM),
];

/// Conditions Envoy knows that Ringway does not implement.
const RETRY_ON_UNSUPPORTED: [&str; 10] = [
    "retriable-status-codes",
    "retriable-headers",
    "reset-before-request",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(crate) fn retry_policy(cx: &mut Cx, path: &str, v: &Value) -> Option<RetryPolicy> {
    let o = obj(cx, path, v, &RETRY_POLICY)?;
    let before = cx.errs.len();
    let mut retry_on = RetryOn::default();
    if let Some(r) = o.get("retry_on") {
        let rp = o.at("retry_on");
        if let Some(s) = string(cx, &rp, r) {
            for cond in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if let Some((_, bit)) = RETRY_ON.iter().find(|(n, _)| *n == cond) {
                    retry_on.insert(*bit);
                } else {
                    let supported: Vec<&str> = RETRY_ON.iter().map(|(n, _)| *n).collect();
                    let what = if RETRY_ON_UNSUPPORTED.contains(&cond) {
                        "is not supported by Ringway"
                    } else {
                        "is not a known retry condition"
                    };
                    cx.err(
                        &rp,
                        format!("{cond} {what} (supported: {})", supported.join(", ")),
                    );
                }
            }
        }
    }
    let num_retries = match o.get("num_retries") {
        Some(n) => u32_val(cx, &o.at("num_retries"), n),
        None => Some(1),
    };
    let per_try_timeout = match o.get("per_try_timeout") {
        // Zero means "not set" in Envoy: the route timeout bounds every try.
        Some(t) => {
            duration::read(cx, &o.at("per_try_timeout"), t).map(|d| (!d.is_zero()).then_some(d))
        }
        None => Some(None),
    };
    if cx.errs.len() != before {
        return None;
    }
    Some(RetryPolicy {
        retry_on,
        num_retries: num_retries?,
        per_try_timeout: per_try_timeout?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(yaml: &str) -> Result<RouteConfig, Vec<String>> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let clusters = ["a".to_string(), "b".to_string()];
        let rc = route_config(&mut cx, "rc", &v, &clusters);
        if cx.errs.is_empty() {
            Ok(rc.unwrap())
        } else {
            Err(cx
                .errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect())
        }
    }

    #[test]
    fn domain_patterns() {
        for ok in [
            "*",
            "example.com",
            "*.example.com",
            "api.*",
            "example.com:8080",
            "*:80",
            "[::1]:80",
            "[::1]",
            "10.0.0.1",
        ] {
            assert!(check_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*.*",
            "a*b.com",
            "**",
            "ex ample.com",
            "example.com:0",
            "example.com:x",
            "*example",
            "[::1",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_every_route_field() {
        let rc = run("name: r
response_headers_to_add: [{header: {key: X-Top, value: '1'}}]
virtual_hosts:
- name: v
  domains: ['Example.com', '*.example.org']
  retry_policy: {retry_on: '5xx, connect-failure', num_retries: 3, per_try_timeout: 1s}
  request_headers_to_remove: [X-Drop]
  routes:
  - name: first
    match:
      path: /exact
      case_sensitive: false
      headers:
      - {name: X-A, exact_match: v}
      - {name: x-b, prefix_match: p, invert_match: true}
      - {name: x-c, present_match: true}
      - {name: x-d, string_match: {exact: e}}
      - {name: x-e, string_match: {prefix: q}}
      - {name: ':authority'}
    route:
      cluster: b
      timeout: 0s
      prefix_rewrite: /new
      host_rewrite_literal: upstream.local
      retry_policy: {retry_on: gateway-error}
      upgrade_configs: [{upgrade_type: WebSocket, enabled: false}]
    request_headers_to_add:
    - {header: {key: x-ow, value: a}, append: false}
    - {header: {key: x-ab, value: b}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-def, value: c}}
  - match: {prefix: /}
    route: {cluster: a}
  - match: {prefix: /gone}
    direct_response: {status: 410, body: {inline_string: gone}}
")
        .unwrap();
        assert_eq!(rc.name, "r");
        assert_eq!(rc.headers.response_add[0].name, "x-top");
        let vh = &rc.virtual_hosts[0];
        assert_eq!(vh.domains, ["example.com", "*.example.org"]);
        let rp = vh.retry_policy.as_ref().unwrap();
        assert!(
            rp.retry_on.contains(RetryOn::FIVE_XX)
                && rp.retry_on.contains(RetryOn::CONNECT_FAILURE)
        );
        assert!(!rp.retry_on.contains(RetryOn::RESET));
        assert_eq!(
            (rp.num_retries, rp.per_try_timeout),
            (3, Some(Duration::from_secs(1)))
        );
        assert_eq!(vh.headers.request_remove, ["x-drop"]);

        let r0 = &vh.routes[0];
        assert_eq!(r0.name, "first");
        assert!(matches!(&r0.matcher.path, PathMatch::Path(p) if p == "/exact"));
        assert!(!r0.matcher.case_sensitive);
        let h = &r0.matcher.headers;
        assert!(matches!(&h[0].kind, HeaderMatchKind::Exact(v) if v == "v") && h[0].name == "x-a");
        assert!(matches!(&h[1].kind, HeaderMatchKind::Prefix(v) if v == "p") && h[1].invert);
        assert!(matches!(h[2].kind, HeaderMatchKind::Present(true)));
        assert!(matches!(&h[3].kind, HeaderMatchKind::Exact(v) if v == "e"));
        assert!(matches!(&h[4].kind, HeaderMatchKind::Prefix(v) if v == "q"));
        assert!(matches!(h[5].kind, HeaderMatchKind::Present(true)) && h[5].name == ":authority");
        let RouteAction::Forward(f) = &r0.action else {
            panic!()
        };
        assert_eq!((f.cluster, f.cluster_name.as_str()), (1, "b"));
        assert_eq!(f.timeout, None);
        assert_eq!(f.prefix_rewrite.as_deref(), Some("/new"));
        assert_eq!(f.host_rewrite_literal.as_deref(), Some("upstream.local"));
        assert_eq!(f.retry_policy.as_ref().unwrap().num_retries, 1);
        assert_eq!(f.upgrade_overrides, [("websocket".to_string(), false)]);
        let adds: Vec<_> = r0.headers.request_add.iter().map(|h| h.action).collect();
        assert_eq!(
            adds,
            [
                AppendAction::OverwriteIfExistsOrAdd,
                AppendAction::AddIfAbsent,
                AppendAction::AppendIfExistsOrAdd
            ]
        );

        let r1 = &vh.routes[1];
        assert_eq!(r1.name, "");
        assert!(r1.matcher.case_sensitive);
        let RouteAction::Forward(f) = &r1.action else {
            panic!()
        };
        assert_eq!((f.cluster, f.timeout), (0, Some(Duration::from_secs(15))));
        assert!(f.retry_policy.is_none() && f.prefix_rewrite.is_none());
        let RouteAction::Direct(d) = &vh.routes[2].action else {
            panic!()
        };
        assert_eq!((d.status, d.body.as_deref()), (410, Some("gone")));
    }

    #[test]
    fn errors_name_their_paths() {
        let e = run("virtual_hosts:
- name: v
  domains: ['*']
  routes:
  - match: {prefix: /, safe_regex: {regex: x}}
    route: {cluster: nope}
  - match: {prefix: /, path: /x}
    redirect: {path_redirect: /}
  - match: {prefix: /}
    route: {cluster: a, retry_policy: {retry_on: '5xx,bogus,retriable-status-codes'}}
    response_headers_to_add: [{header: {key: '', value: x}}]
- name: w
  domains: ['*', 'a*b']
")
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "rc.virtual_hosts[0].routes[0].match.safe_regex",
                "rc.virtual_hosts[0].routes[0].route.cluster",
                "rc.virtual_hosts[0].routes[1].redirect",
                "rc.virtual_hosts[0].routes[1].match",
                "rc.virtual_hosts[0].routes[2].route.retry_policy.retry_on",
                "rc.virtual_hosts[0].routes[2].route.retry_policy.retry_on",
                "rc.virtual_hosts[0].routes[2].response_headers_to_add[0].header.key",
                "rc.virtual_hosts[1].domains[0]",
                "rc.virtual_hosts[1].domains[1]",
            ],
            "{e:#?}"
        );
        assert!(e[4].contains("bogus is not a known retry condition"));
        assert!(e[5].contains("retriable-status-codes is not supported"));
        assert!(e[7].contains("duplicate domain *"));
    }

    #[test]
    fn route_stream_limits_override_or_stay_unset() {
        let rc = run("virtual_hosts:
- name: v
  domains: ['*']
  routes:
  - match: {prefix: /a}
    route: {cluster: a, idle_timeout: 2s, max_stream_duration: {max_stream_duration: 0s}}
  - match: {prefix: /b}
    route: {cluster: a, max_stream_duration: {}}
  - match: {prefix: /}
    route: {cluster: a}
")
        .unwrap();
        let action = |i: usize| match &rc.virtual_hosts[0].routes[i].action {
            RouteAction::Forward(f) => (f.idle_timeout, f.max_stream_duration),
            RouteAction::Direct(_) => panic!("route {i} forwards"),
        };
        assert_eq!(
            action(0),
            (Some(Duration::from_secs(2)), Some(Duration::ZERO))
        );
        assert_eq!(action(1), (None, None));
        assert_eq!(action(2), (None, None));
        let e = run("virtual_hosts:
- name: v
  domains: ['*']
  routes:
  - match: {prefix: /}
    route: {cluster: a, max_stream_duration: {grpc_timeout_header_max: 1s}}
")
        .unwrap_err();
        assert!(
            e[0].starts_with(
                "rc.virtual_hosts[0].routes[0].route.max_stream_duration.grpc_timeout_header_max"
            ),
            "{e:#?}"
        );
    }

    #[test]
    fn header_mutation_rules() {
        let e = run("request_headers_to_add:
- {header: {key: host, value: x}}
- {header: {key: ':path', value: x}}
- {header: {key: x, value: \"a\\nb\"}, append: true, append_action: ADD_IF_ABSENT}
request_headers_to_remove: [host]
response_headers_to_remove: ['bad header']
")
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "rc.request_headers_to_add[0].header.key",
                "rc.request_headers_to_add[1].header.key",
                "rc.request_headers_to_add[2].header.value",
                "rc.request_headers_to_add[2]",
                "rc.request_headers_to_remove[0]",
                "rc.response_headers_to_remove[0]",
            ],
            "{e:#?}"
        );
    }
}
