//! A cluster's `health_checks[]` and `outlier_detection`: Envoy's messages into [`HealthCheck`]
//! and [`OutlierDetection`].
//!
//! Ringway runs one active HTTP checker per cluster, so a list with more than one entry, or a
//! checker of another kind (TCP, gRPC, custom), is an error that says so rather than a check that
//! silently never runs. Outlier detection implements Envoy's consecutive-5xx detector; the
//! success-rate and failure-percentage detectors are refused by name for the same reason.

use serde_yaml_ng::Value;
use std::time::Duration;

use super::duration;
use super::model::{HealthCheck, OutlierDetection};
use super::walk::*;

const HEALTH_CHECK: Message = Message {
    supported: &[
        "timeout",
        "interval",
        "interval_jitter",
        "initial_jitter",
        "unhealthy_threshold",
        "healthy_threshold",
        "http_health_check",
        "no_traffic_interval",
    ],
    unsupported: &[
        "tcp_health_check",
        "grpc_health_check",
        "custom_health_check",
        "interval_jitter_percent",
        "alt_port",
        "reuse_connection",
        "no_traffic_healthy_interval",
        "unhealthy_interval",
        "unhealthy_edge_interval",
        "healthy_edge_interval",
        "event_log_path",
        "event_logger",
        "event_service",
        "always_log_health_check_failures",
        "always_log_health_check_success",
        "tls_options",
        "transport_socket_match_criteria",
    ],
};

const HTTP_HEALTH_CHECK: Message = Message {
    supported: &["path", "host", "expected_statuses"],
    unsupported: &[
        "send",
        "receive",
        "response_buffer_size",
        "request_headers_to_add",
        "request_headers_to_remove",
        "retriable_statuses",
        "codec_client_type",
        "service_name_matcher",
        "method",
    ],
};

const INT64_RANGE: Message = Message {
    supported: &["start", "end"],
    unsupported: &[],
};

const OUTLIER_DETECTION: Message = Message {
    supported: &[
        "consecutive_5xx",
        "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure",
        "interval",
        "base_ejection_time",
        "max_ejection_time",
        "max_ejection_percent",
        "enforcing_consecutive_5xx",
    ],
    unsupported: &[
        "enforcing_success_rate",
        "success_rate_minimum_hosts",
        "success_rate_request_volume",
        "success_rate_stdev_factor",
        "split_external_local_origin_errors",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_local_origin_success_rate",
        "failure_percentage_threshold",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
        "failure_percentage_minimum_hosts",
        "failure_percentage_request_volume",
        "max_ejection_time_jitter",
        "successful_active_health_check_uneject_host",
        "monitors",
        "always_eject_one_host",
        "detect_degraded_hosts",
    ],
};

/// Reads `health_checks` (a list with at most one entry); `Some(None)` for an empty list.
pub(crate) fn health_checks(cx: &mut Cx, path: &str, v: &Value) -> Option<Option<HealthCheck>> {
    let items = list(cx, path, v)?;
    let before = cx.errs.len();
    let mut out = None;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        if i > 0 {
            cx.err(
                &p,
                "only one health check per cluster is supported by Ringway",
            );
            continue;
        }
        out = health_check(cx, &p, item);
    }
    (cx.errs.len() == before).then_some(out)
}

fn health_check(cx: &mut Cx, path: &str, v: &Value) -> Option<HealthCheck> {
    let o = obj(cx, path, v, &HEALTH_CHECK)?;
    let before = cx.errs.len();
    // Envoy requires all four; they have no defaults in the proto.
    let timeout = o
        .req(cx, "timeout")
        .and_then(|d| duration::read_positive(cx, &o.at("timeout"), d));
    let interval = o
        .req(cx, "interval")
        .and_then(|d| duration::read_positive(cx, &o.at("interval"), d));
    let unhealthy_threshold = o
        .req(cx, "unhealthy_threshold")
        .and_then(|n| u32_range(cx, &o.at("unhealthy_threshold"), n, 1, u32::MAX));
    let healthy_threshold = o
        .req(cx, "healthy_threshold")
        .and_then(|n| u32_range(cx, &o.at("healthy_threshold"), n, 1, u32::MAX));
    let interval_jitter = match o.get("interval_jitter") {
        Some(d) => duration::read(cx, &o.at("interval_jitter"), d),
        None => Some(Duration::ZERO),
    };
    // Accepted and validated; the first round starts at once (see upstream::health).
    for key in ["initial_jitter", "no_traffic_interval"] {
        if let Some(d) = o.get(key) {
            duration::read(cx, &o.at(key), d);
        }
    }
    let http = match o.get("http_health_check") {
        Some(h) => http_health_check(cx, &o.at("http_health_check"), h),
        None => {
            // Another checker kind was already reported as unsupported by `obj`.
            let other = [
                "tcp_health_check",
                "grpc_health_check",
                "custom_health_check",
            ]
            .iter()
            .any(|k| o.has(k));
            if !other {
                cx.err(
                    &o.at("http_health_check"),
                    "required field is missing (Ringway supports HTTP health checks only)",
                );
            }
            None
        }
    };
    if cx.errs.len() != before {
        return None;
    }
    let (path_s, host, expected_statuses) = http?;
    Some(HealthCheck {
        timeout: timeout?,
        interval: interval?,
        interval_jitter: interval_jitter?,
        unhealthy_threshold: unhealthy_threshold?,
        healthy_threshold: healthy_threshold?,
        path: path_s,
        host,
        expected_statuses,
    })
}

type HttpCheck = (String, Option<String>, Vec<(u16, u16)>);

fn http_health_check(cx: &mut Cx, path: &str, v: &Value) -> Option<HttpCheck> {
    let o = obj(cx, path, v, &HTTP_HEALTH_CHECK)?;
    let before = cx.errs.len();
    let p = o
        .req(cx, "path")
        .and_then(|p| nonempty_string(cx, &o.at("path"), p));
    if let Some(p) = &p {
        if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
            cx.err(
                &o.at("path"),
                format!("{p:?} is not a request path (it must start with / and contain no spaces or control characters)"),
            );
        }
    }
    let host = match o.get("host") {
        Some(h) => {
            let h = nonempty_string(cx, &o.at("host"), h);
            if let Some(h) = &h {
                if h.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    cx.err(
                        &o.at("host"),
                        "must not contain spaces or control characters",
                    );
                }
            }
            h
        }
        None => None,
    };
    let mut expected = Vec::new();
    if let Some(es) = o.get("expected_statuses") {
        let ep = o.at("expected_statuses");
        for (i, r) in list(cx, &ep, es).unwrap_or_default().iter().enumerate() {
            if let Some(range) = status_range(cx, &index(&ep, i), r) {
                expected.push(range);
            }
        }
    }
    if expected.is_empty() {
        // Envoy's default: only 200 is healthy.
        expected.push((200, 201));
    }
    (cx.errs.len() == before).then_some((p?, host, expected))
}

/// An `Int64Range` of statuses, `[start, end)`, within Envoy's bounds `[100, 600)`.
fn status_range(cx: &mut Cx, path: &str, v: &Value) -> Option<(u16, u16)> {
    let o = obj(cx, path, v, &INT64_RANGE)?;
    let start = o
        .req(cx, "start")
        .and_then(|s| u32_range(cx, &o.at("start"), s, 100, 599));
    let end = o
        .req(cx, "end")
        .and_then(|e| u32_range(cx, &o.at("end"), e, 101, 600));
    let (start, end) = (start?, end?);
    if start >= end {
        cx.err(
            path,
            format!("empty range: start {start} must be less than end {end} (end is exclusive)"),
        );
        return None;
    }
    Some((start as u16, end as u16))
}

/// Reads `outlier_detection`; every field has Envoy's default.
pub(crate) fn outlier_detection(cx: &mut Cx, path: &str, v: &Value) -> Option<OutlierDetection> {
    let o = obj(cx, path, v, &OUTLIER_DETECTION)?;
    let before = cx.errs.len();
    let mut od = OutlierDetection::default();
    let counts: [(&str, &mut u32, u32); 4] = [
        ("consecutive_5xx", &mut od.consecutive_5xx, u32::MAX),
        (
            "consecutive_gateway_failure",
            &mut od.consecutive_gateway_failure,
            u32::MAX,
        ),
        ("max_ejection_percent", &mut od.max_ejection_percent, 100),
        (
            "enforcing_consecutive_5xx",
            &mut od.enforcing_consecutive_5xx,
            100,
        ),
    ];
    for (key, slot, max) in counts {
        if let Some(n) = o.get(key) {
            // consecutive_5xx of 0 would eject on every request; Envoy treats it as "never".
            let lo = u32::from(key.starts_with("consecutive"));
            if let Some(n) = u32_range(cx, &o.at(key), n, lo, max) {
                *slot = n;
            }
        }
    }
    if let Some(n) = o.get("enforcing_consecutive_gateway_failure") {
        let p = o.at("enforcing_consecutive_gateway_failure");
        if u32_range(cx, &p, n, 0, 100).is_some_and(|n| n != 0) {
            cx.err(
                &p,
                "only 0 (Envoy's default) is supported by Ringway: gateway failures count toward consecutive_5xx",
            );
        }
    }
    let durations: [(&str, &mut Duration); 3] = [
        ("interval", &mut od.interval),
        ("base_ejection_time", &mut od.base_ejection_time),
        ("max_ejection_time", &mut od.max_ejection_time),
    ];
    for (key, slot) in durations {
        if let Some(d) = o.get(key) {
            if let Some(d) = duration::read_positive(cx, &o.at(key), d) {
                *slot = d;
            }
        }
    }
    if od.max_ejection_time < od.base_ejection_time && o.has("max_ejection_time") {
        cx.err(
            &o.at("max_ejection_time"),
            "must not be shorter than base_ejection_time",
        );
    }
    (cx.errs.len() == before).then_some(od)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Runs one parser over `yaml`, returning its result and every error as "path: message".
    fn run<T>(yaml: &str, parse: impl FnOnce(&mut Cx, &Value) -> T) -> (T, Vec<String>) {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let r = parse(&mut cx, &v);
        let errs = cx
            .errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (r, errs)
    }

    fn hc(yaml: &str) -> (Option<Option<HealthCheck>>, Vec<String>) {
        run(yaml, |cx, v| health_checks(cx, "h", v))
    }

    fn od(yaml: &str) -> (Option<OutlierDetection>, Vec<String>) {
        run(yaml, |cx, v| outlier_detection(cx, "o", v))
    }

    #[test]
    fn http_check_fields() {
        let (r, e) = hc("[{timeout: 0.5s, interval: 0.2s, interval_jitter: 0.1s, no_traffic_interval: 60s, unhealthy_threshold: 2, healthy_threshold: 3, http_health_check: {path: /healthz, host: hc.local, expected_statuses: [{start: 200, end: 300}, {start: 418, end: 419}]}}]");
        assert!(e.is_empty(), "{e:?}");
        let h = r.unwrap().unwrap();
        assert_eq!(h.timeout, Duration::from_millis(500));
        assert_eq!(h.interval, Duration::from_millis(200));
        assert_eq!(h.interval_jitter, Duration::from_millis(100));
        assert_eq!((h.unhealthy_threshold, h.healthy_threshold), (2, 3));
        assert_eq!(h.path, "/healthz");
        assert_eq!(h.host.as_deref(), Some("hc.local"));
        assert!(h.expects(204) && h.expects(418) && !h.expects(300) && !h.expects(503));
    }

    #[test]
    fn default_expected_status_is_200_only() {
        let (r, e) = hc("[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /}}]");
        assert!(e.is_empty(), "{e:?}");
        let h = r.unwrap().unwrap();
        assert!(h.expects(200) && !h.expects(204) && h.host.is_none());
        assert_eq!(hc("[]").0, Some(None));
    }

    #[test]
    fn other_checkers_and_second_entries_are_refused() {
        let (r, e) = hc("[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}, {grpc_health_check: {}}]");
        assert!(r.is_none());
        assert_eq!(
            e,
            [
                "h[0].tcp_health_check: field tcp_health_check is not supported by Ringway",
                "h[1]: only one health check per cluster is supported by Ringway",
            ]
        );
        let (_, e) = hc("[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {}}]");
        assert_eq!(
            e,
            ["h[0].grpc_health_check: field grpc_health_check is not supported by Ringway"]
        );
    }

    #[test]
    fn missing_and_bad_values_name_their_paths() {
        let (_, e) = hc("[{interval: 0s, healthy_threshold: 0, http_health_check: {path: 'no slash', expected_statuses: [{start: 300, end: 200}, {start: 99, end: 200}]}}]");
        let paths: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "h[0].timeout",
                "h[0].interval",
                "h[0].unhealthy_threshold",
                "h[0].healthy_threshold",
                "h[0].http_health_check.path",
                "h[0].http_health_check.expected_statuses[0]",
                "h[0].http_health_check.expected_statuses[1].start",
            ],
            "{e:?}"
        );
        let (_, e) =
            hc("[{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1}]");
        assert!(e[0].starts_with("h[0].http_health_check: required field is missing"));
    }

    #[test]
    fn outlier_defaults_and_fields() {
        let (r, e) = od("{}");
        assert!(e.is_empty());
        assert_eq!(r.unwrap(), OutlierDetection::default());
        let (r, e) = od("{consecutive_5xx: 3, consecutive_gateway_failure: 7, enforcing_consecutive_gateway_failure: 0, interval: 1s, base_ejection_time: 2s, max_ejection_time: 4s, max_ejection_percent: 50, enforcing_consecutive_5xx: 80}");
        assert!(e.is_empty(), "{e:?}");
        let r = r.unwrap();
        assert_eq!(r.consecutive_5xx, 3);
        assert_eq!(r.consecutive_gateway_failure, 7);
        assert_eq!(r.interval, Duration::from_secs(1));
        assert_eq!(r.base_ejection_time, Duration::from_secs(2));
        assert_eq!(r.max_ejection_time, Duration::from_secs(4));
        assert_eq!(r.max_ejection_percent, 50);
        assert_eq!(r.enforcing_consecutive_5xx, 80);
    }

    #[test]
    fn outlier_refusals() {
        let (r, e) = od("{consecutive_5xx: 0, max_ejection_percent: 101, enforcing_consecutive_gateway_failure: 100, success_rate_stdev_factor: 1900, base_ejection_time: 10s, max_ejection_time: 5s}");
        assert!(r.is_none());
        let paths: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "o.success_rate_stdev_factor",
                "o.consecutive_5xx",
                "o.max_ejection_percent",
                "o.enforcing_consecutive_gateway_failure",
                "o.max_ejection_time",
            ],
            "{e:?}"
        );
    }
}
