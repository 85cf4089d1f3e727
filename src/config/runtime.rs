//! `layered_runtime`: the runtime keys Ringway honours, read from static layers.
//!
//! Envoy's runtime is a stack of layers whose keys override one another (later layers win). Envoy
//! sandboxes use a static layer for exactly one purpose Ringway shares: connection limits. So the
//! keys read here are `overload.global_downstream_max_connections` (every listener together) and
//! `envoy.resource_limits.listener.<listener name>.connection_limit` (one listener). Any other key
//! is an error naming it, never a silent ignore. A static layer's keys may be nested mappings or
//! dotted names; both are flattened to dotted names, as Envoy does. An `admin_layer` is accepted:
//! it only holds values set through `/runtime_modify`, which Ringway does not serve, so it is always
//! empty. Disk and RTDS layers are refused.

use serde_yaml_ng::Value;

use super::walk::*;

const LAYERED_RUNTIME: Message = Message {
    supported: &["layers"],
    unsupported: &[],
};

const LAYER: Message = Message {
    supported: &["name", "static_layer", "admin_layer"],
    unsupported: &["disk_layer", "rtds_layer"],
};

const GLOBAL_MAX: &str = "overload.global_downstream_max_connections";
const LISTENER_PREFIX: &str = "envoy.resource_limits.listener.";
const LISTENER_SUFFIX: &str = ".connection_limit";

/// The limits the runtime layers set; later layers have already overridden earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// `overload.global_downstream_max_connections`.
    pub global_downstream_max_connections: Option<u64>,
    /// `envoy.resource_limits.listener.<name>.connection_limit`, by listener name, with the key's
    /// field path (for the error when no listener has that name).
    pub listener_connection_limits: Vec<(String, u64, String)>,
}

impl RuntimeLimits {
    fn set_listener(&mut self, name: &str, limit: u64, path: String) {
        self.listener_connection_limits
            .retain(|(n, _, _)| n != name);
        self.listener_connection_limits
            .push((name.to_owned(), limit, path));
    }
}

pub(crate) fn layered_runtime(cx: &mut Cx, path: &str, v: &Value) -> RuntimeLimits {
    let mut out = RuntimeLimits::default();
    let Some(o) = obj(cx, path, v, &LAYERED_RUNTIME) else {
        return out;
    };
    let Some(layers) = o.get("layers") else {
        return out;
    };
    let lp = o.at("layers");
    for (i, l) in list(cx, &lp, layers).unwrap_or_default().iter().enumerate() {
        let p = index(&lp, i);
        let Some(l) = obj(cx, &p, l, &LAYER) else {
            continue;
        };
        if let Some(n) = l.get("name") {
            string(cx, &l.at("name"), n);
        }
        if let Some(sl) = l.get("static_layer") {
            let mut keys = Vec::new();
            flatten(cx, &l.at("static_layer"), "", sl, &mut keys);
            for (key, kpath, value) in keys {
                static_key(cx, &kpath, &key, value, &mut out);
            }
        }
    }
    out
}

/// Flattens nested mappings into (dotted key, field path, leaf value).
fn flatten<'a>(
    cx: &mut Cx,
    path: &str,
    prefix: &str,
    v: &'a Value,
    out: &mut Vec<(String, String, &'a Value)>,
) {
    let Value::Mapping(m) = v else {
        cx.err(path, format!("expected an object, got {}", kind(v)));
        return;
    };
    for (k, val) in m {
        let Some(k) = k.as_str() else {
            cx.err(path, "runtime keys must be strings");
            continue;
        };
        let key = if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        };
        let kpath = join(path, k);
        match val {
            Value::Mapping(_) => flatten(cx, &kpath, &key, val, out),
            _ => out.push((key, kpath, val)),
        }
    }
}

fn static_key(cx: &mut Cx, path: &str, key: &str, v: &Value, out: &mut RuntimeLimits) {
    if key == GLOBAL_MAX {
        if let Some(n) = uint(cx, path, v, u64::from(u32::MAX)) {
            out.global_downstream_max_connections = Some(n);
        }
        return;
    }
    let listener = key
        .strip_prefix(LISTENER_PREFIX)
        .and_then(|r| r.strip_suffix(LISTENER_SUFFIX))
        .filter(|n| !n.is_empty());
    if let Some(name) = listener {
        if let Some(n) = uint(cx, path, v, u64::from(u32::MAX)) {
            out.set_listener(name, n, path.to_owned());
        }
        return;
    }
    cx.err(
        path,
        format!(
            "runtime key {key} is not supported by Ringway (supported: {GLOBAL_MAX}, {LISTENER_PREFIX}<listener name>{LISTENER_SUFFIX})"
        ),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(yaml: &str) -> (RuntimeLimits, Vec<String>) {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let r = layered_runtime(&mut cx, "layered_runtime", &v);
        let errs = cx
            .errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (r, errs)
    }

    #[test]
    fn reads_limits_nested_or_dotted_later_layers_win() {
        let (r, errs) = run("layers:
- name: a
  static_layer:
    overload: {global_downstream_max_connections: 100}
    envoy.resource_limits.listener.main.connection_limit: 7
- name: b
  static_layer:
    overload.global_downstream_max_connections: '50'
    envoy: {resource_limits: {listener: {main: {connection_limit: 9}}}}
- name: admin
  admin_layer: {}
");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(r.global_downstream_max_connections, Some(50));
        assert_eq!(r.listener_connection_limits.len(), 1);
        assert_eq!(r.listener_connection_limits[0].0, "main");
        assert_eq!(r.listener_connection_limits[0].1, 9);
    }

    #[test]
    fn unknown_keys_and_layers_are_errors_with_paths() {
        let (_, errs) = run("layers:
- name: a
  static_layer: {re2: {max_program_size: {error_level: 1000}}, overload: {global_downstream_max_connections: -1}}
- name: d
  disk_layer: {symlink_root: /srv}
");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with(
            "layered_runtime.layers[0].static_layer.re2.max_program_size.error_level: runtime key re2.max_program_size.error_level is not supported"
        ), "{errs:?}");
        assert!(errs[1].starts_with(
            "layered_runtime.layers[0].static_layer.overload.global_downstream_max_connections: "
        ), "{errs:?}");
        assert_eq!(
            errs[2],
            "layered_runtime.layers[1].disk_layer: field disk_layer is not supported by Ringway"
        );
    }
}
