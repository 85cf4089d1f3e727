//! HTTP protocol options shared by listeners and clusters: Envoy's `Http2ProtocolOptions` (on the
//! connection manager and on clusters) and a cluster's upstream protocol choice.
//!
//! A cluster can say what it speaks in three spellings Envoy accepts: the current
//! `typed_extension_protocol_options` entry (`envoy.extensions.upstreams.http.v3.HttpProtocolOptions`
//! with `explicit_http_config`), and the older cluster-level `http_protocol_options` /
//! `http2_protocol_options`. They live here, together, so the rule "one spelling per cluster" is
//! checked in one place. The connection options (`idle_timeout`, `max_requests_per_connection`)
//! that the typed entry can carry are read by the cluster walker, which already reads the older
//! top-level spelling of the same fields.

use serde_yaml_ng::Value;

use super::model::{Http2Options, UpstreamProtocol};
use super::walk::*;

/// Envoy's name for the upstream HTTP protocol options extension, used both as the
/// `typed_extension_protocol_options` key and (with the type prefix) as its `@type`.
pub(crate) const HTTP_PROTOCOL_OPTIONS_NAME: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The extension's older name, which Envoy still accepts as the map key.
const HTTP_PROTOCOL_OPTIONS_LEGACY_NAME: &str = "envoy.upstreams.http.http_protocol_options";
const HTTP_PROTOCOL_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Envoy's bounds for the three settings Ringway honours (from the proto's validation rules).
const MAX_STREAMS_RANGE: (u32, u32) = (1, 2_147_483_647);
const WINDOW_RANGE: (u32, u32) = (65_535, 2_147_483_647);

const HTTP2_OPTIONS: Message = Message {
    supported: &[
        "max_concurrent_streams",
        "initial_stream_window_size",
        "initial_connection_window_size",
        // Accepted only as `false` (their default): Ringway offers neither extended CONNECT nor
        // METADATA frames, so `false` is honoured trivially and `true` is refused below.
        "allow_connect",
        "allow_metadata",
    ],
    unsupported: &[
        "hpack_table_size",
        "max_outbound_frames",
        "max_outbound_control_frames",
        "max_consecutive_inbound_frames_with_empty_payload",
        "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent",
        "stream_error_on_invalid_http_messaging",
        "override_stream_error_on_invalid_http_message",
        "custom_settings_parameters",
        "connection_keepalive",
        "use_oghttp2_codec",
        "max_metadata_size",
        "enable_huffman_encoding",
        "max_header_field_size_kb",
    ],
};

/// `Http1ProtocolOptions` as an upstream choice: the empty message selects HTTP/1.1; none of its
/// tunables is implemented for upstream connections.
const HTTP1_OPTIONS: Message = Message {
    supported: &[],
    unsupported: &[
        "allow_absolute_url",
        "accept_http_10",
        "default_host_for_http_10",
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

const HTTP_PROTOCOL_OPTIONS: Message = Message {
    supported: &[
        "@type",
        "common_http_protocol_options",
        "explicit_http_config",
    ],
    unsupported: &[
        "upstream_http_protocol_options",
        "use_downstream_protocol_config",
        "auto_config",
        "http_filters",
        "header_validation_config",
        "outlier_detection",
    ],
};

const EXPLICIT_HTTP_CONFIG: Message = Message {
    supported: &["http_protocol_options", "http2_protocol_options"],
    unsupported: &["http3_protocol_options"],
};

/// `Http2ProtocolOptions` at `path`, with Ringway's edge defaults for whatever is unset.
pub(crate) fn http2_options(cx: &mut Cx, path: &str, v: &Value) -> Option<Http2Options> {
    let o = obj(cx, path, v, &HTTP2_OPTIONS)?;
    let before = cx.errs.len();
    let mut out = Http2Options::default();
    let read = |cx: &mut Cx, key: &str, (lo, hi): (u32, u32), slot: &mut u32| {
        if let Some(n) = o.get(key) {
            if let Some(n) = u32_range(cx, &o.at(key), n, lo, hi) {
                *slot = n;
            }
        }
    };
    read(
        cx,
        "max_concurrent_streams",
        MAX_STREAMS_RANGE,
        &mut out.max_concurrent_streams,
    );
    read(
        cx,
        "initial_stream_window_size",
        WINDOW_RANGE,
        &mut out.initial_stream_window_size,
    );
    read(
        cx,
        "initial_connection_window_size",
        WINDOW_RANGE,
        &mut out.initial_connection_window_size,
    );
    for key in ["allow_connect", "allow_metadata"] {
        if let Some(b) = o.get(key) {
            if boolean(cx, &o.at(key), b) == Some(true) {
                cx.err(
                    &o.at(key),
                    format!("{key}: true is not supported by Ringway (only false)"),
                );
            }
        }
    }
    (cx.errs.len() == before).then_some(out)
}

/// What the cluster's protocol fields say, before the cluster walker merges the connection options.
#[derive(Default)]
pub(crate) struct ClusterProtocol<'a> {
    /// `None` when no spelling chose a protocol (HTTP/1.1 then, as in Envoy).
    pub protocol: Option<UpstreamProtocol>,
    /// `common_http_protocol_options` inside the typed entry, with its path, for the cluster
    /// walker to read exactly as it reads the top-level field.
    pub common: Option<(String, &'a Value)>,
}

/// Reads `typed_extension_protocol_options` and the older `http_protocol_options` /
/// `http2_protocol_options` of the cluster object `o`. Mixing the typed entry with an older
/// field, or choosing both HTTP/1.1 and HTTP/2 in the older fields, is an error (Envoy refuses
/// both too).
pub(crate) fn cluster_protocol<'a>(cx: &mut Cx, o: &Obj<'a>) -> Option<ClusterProtocol<'a>> {
    let before = cx.errs.len();
    let mut out = ClusterProtocol::default();
    let mut typed_entry = false;
    if let Some(t) = o.get("typed_extension_protocol_options") {
        let tp = o.at("typed_extension_protocol_options");
        match t {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let Some(key) = k.as_str() else {
                        cx.err(&tp, format!("object keys must be strings, got {}", kind(k)));
                        continue;
                    };
                    let kp = join(&tp, key);
                    if key != HTTP_PROTOCOL_OPTIONS_NAME && key != HTTP_PROTOCOL_OPTIONS_LEGACY_NAME
                    {
                        cx.err(
                            &kp,
                            format!(
                                "protocol options {key} are not supported by Ringway (only {HTTP_PROTOCOL_OPTIONS_NAME})"
                            ),
                        );
                        continue;
                    }
                    if typed_entry {
                        cx.err(
                            &kp,
                            "HttpProtocolOptions given twice (under its current and its legacy name); keep one",
                        );
                        continue;
                    }
                    typed_entry = true;
                    let Some(h) = typed(
                        cx,
                        &kp,
                        v,
                        HTTP_PROTOCOL_OPTIONS_TYPE,
                        &HTTP_PROTOCOL_OPTIONS,
                    ) else {
                        continue;
                    };
                    if let Some(c) = h.get("common_http_protocol_options") {
                        out.common = Some((h.at("common_http_protocol_options"), c));
                    }
                    match h.get("explicit_http_config") {
                        Some(e) => {
                            out.protocol = explicit_http_config(cx, &h.at("explicit_http_config"), e);
                        }
                        None if h.has("use_downstream_protocol_config") || h.has("auto_config") => {}
                        None => cx.err(
                            &h.at("explicit_http_config"),
                            "required field is missing (Ringway needs explicit_http_config with http_protocol_options or http2_protocol_options)",
                        ),
                    }
                }
            }
            other => cx.err(&tp, format!("expected an object, got {}", kind(other))),
        }
    }
    let old_h1 = o.get("http_protocol_options");
    let old_h2 = o.get("http2_protocol_options");
    for (key, present) in [
        ("http_protocol_options", old_h1.is_some()),
        ("http2_protocol_options", old_h2.is_some()),
        (
            "common_http_protocol_options",
            o.has("common_http_protocol_options"),
        ),
    ] {
        if present && typed_entry {
            cx.err(
                &o.at(key),
                format!(
                    "set both here and in typed_extension_protocol_options ({HTTP_PROTOCOL_OPTIONS_NAME}); keep one"
                ),
            );
        }
    }
    if old_h1.is_some() && old_h2.is_some() {
        cx.err(
            &o.at("http2_protocol_options"),
            "both http_protocol_options and http2_protocol_options are set; keep the one the endpoints speak",
        );
    }
    if !typed_entry {
        if let Some(h1) = old_h1 {
            if obj(cx, &o.at("http_protocol_options"), h1, &HTTP1_OPTIONS).is_some() {
                out.protocol = Some(UpstreamProtocol::Http1);
            }
        }
        if let Some(h2) = old_h2 {
            out.protocol =
                http2_options(cx, &o.at("http2_protocol_options"), h2).map(UpstreamProtocol::Http2);
        }
    }
    (cx.errs.len() == before).then_some(out)
}

/// `explicit_http_config`: exactly one of `http_protocol_options` or `http2_protocol_options`.
fn explicit_http_config(cx: &mut Cx, path: &str, v: &Value) -> Option<UpstreamProtocol> {
    let e = obj(cx, path, v, &EXPLICIT_HTTP_CONFIG)?;
    match (
        e.get("http_protocol_options"),
        e.get("http2_protocol_options"),
    ) {
        (Some(_), Some(_)) => {
            cx.err(
                path,
                "http_protocol_options and http2_protocol_options are alternatives; set one",
            );
            None
        }
        (Some(h1), None) => {
            obj(cx, &e.at("http_protocol_options"), h1, &HTTP1_OPTIONS)?;
            Some(UpstreamProtocol::Http1)
        }
        (None, Some(h2)) => {
            http2_options(cx, &e.at("http2_protocol_options"), h2).map(UpstreamProtocol::Http2)
        }
        (None, None) => {
            if !e.has("http3_protocol_options") {
                cx.err(
                    path,
                    "expected http_protocol_options or http2_protocol_options",
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    fn h2(s: &str) -> (Option<Http2Options>, Vec<String>) {
        let mut cx = Cx::default();
        let o = http2_options(&mut cx, "h", &y(s));
        let e = cx
            .errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (o, e)
    }

    #[test]
    fn http2_defaults_and_values() {
        assert_eq!(h2("{}").0, Some(Http2Options::default()));
        let (o, e) = h2(
            "{max_concurrent_streams: 7, initial_stream_window_size: 65535, initial_connection_window_size: 2147483647, allow_connect: false}",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            o,
            Some(Http2Options {
                max_concurrent_streams: 7,
                initial_stream_window_size: 65535,
                initial_connection_window_size: 2_147_483_647,
            })
        );
    }

    #[test]
    fn http2_ranges_and_unsupported_fields() {
        let (o, e) = h2(
            "{max_concurrent_streams: 0, initial_stream_window_size: 65534, initial_connection_window_size: 2147483648, hpack_table_size: 0, allow_connect: true}",
        );
        assert!(o.is_none());
        let paths: Vec<_> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "h.hpack_table_size",
                "h.max_concurrent_streams",
                "h.initial_stream_window_size",
                "h.initial_connection_window_size",
                "h.allow_connect"
            ],
            "{e:?}"
        );
        assert!(e[0].contains("not supported by Ringway"), "{e:?}");
        assert!(e[1].contains("1..=2147483647"), "{e:?}");
        assert!(e[2].contains("65535..=2147483647"), "{e:?}");
    }
}
