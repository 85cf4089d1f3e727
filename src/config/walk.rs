//! The tree walker's toolkit: field-path bookkeeping, error collection and typed scalar readers.
//!
//! Every reader takes the path of the value it reads and, on a bad value, records an error at
//! that path and returns `None` instead of stopping, so one run over a file reports every
//! problem in it. Objects are checked against a table of the Envoy message's field names, which
//! is how "Envoy knows this field but Ringway does not support it" is told apart from a typo.

use serde_yaml_ng::{Mapping, Value};
use std::net::IpAddr;

use super::{ConfigError, DOCUMENT};

/// Collects errors while the walk goes on.
#[derive(Default)]
pub(crate) struct Cx {
    pub errs: Vec<ConfigError>,
}

impl Cx {
    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        // The root's path is empty; it is reported as the document, so every error names a
        // place (found by the config fuzz target: a bare string as the whole file).
        let path = if path.is_empty() { DOCUMENT } else { path };
        self.errs.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// The field names of one Envoy message: those Ringway reads, and those Envoy knows that Ringway
/// rejects (so the error can say "not supported" rather than "unknown").
pub(crate) struct Message {
    pub supported: &'static [&'static str],
    pub unsupported: &'static [&'static str],
}

/// Joins a field name onto a path (`a.b` + `c` → `a.b.c`; the root has an empty path).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Why a known field is refused; the common ones get a message that says what to do instead.
fn unsupported_message(key: &str) -> String {
    match key {
        "dynamic_resources" => {
            "dynamic configuration (xDS) is not supported by Ringway; use static_resources"
                .to_string()
        }
        "rds" => {
            "RDS is not supported by Ringway; put the routes inline in route_config".to_string()
        }
        "safe_regex" | "safe_regex_match" => {
            format!(
                "field {key} is not supported by Ringway (regular expressions are not supported)"
            )
        }
        _ => format!("field {key} is not supported by Ringway"),
    }
}

/// `portValue` → `port_value`: Envoy also accepts protobuf's camelCase names; Ringway asks for
/// the snake_case spelling, and this lets the error say which one.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A checked YAML mapping at a known path.
pub(crate) struct Obj<'a> {
    pub path: String,
    map: &'a Mapping,
}

impl<'a> Obj<'a> {
    /// The value of `key`; an explicit `null` counts as absent, as in protobuf JSON.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of a field that must be present; records an error when it is not.
    pub fn req(&self, cx: &mut Cx, key: &str) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() {
            cx.err(&self.at(key), "required field is missing");
        }
        v
    }

    /// The path of one of this object's fields.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Checks that `v` is a mapping whose keys all belong to `msg`; unsupported and unknown keys are
/// reported (each at its own path) and the object is still returned so its good fields get read.
pub(crate) fn obj<'a>(cx: &mut Cx, path: &str, v: &'a Value, msg: &Message) -> Option<Obj<'a>> {
    let map = match v {
        Value::Mapping(m) => m,
        other => {
            cx.err(path, format!("expected an object, got {}", kind(other)));
            return None;
        }
    };
    for (k, _) in map {
        let Value::String(key) = k else {
            cx.err(
                path,
                format!("object keys must be strings, got {}", kind(k)),
            );
            continue;
        };
        if msg.supported.contains(&key.as_str()) {
            continue;
        }
        let kp = join(path, key);
        if msg.unsupported.contains(&key.as_str()) {
            cx.err(&kp, unsupported_message(key));
            continue;
        }
        let snake = snake_case(key);
        if snake != *key
            && (msg.supported.contains(&snake.as_str())
                || msg.unsupported.contains(&snake.as_str()))
        {
            cx.err(
                &kp,
                format!("unknown field {key} (Ringway reads snake_case names: write {snake})"),
            );
        } else {
            cx.err(&kp, format!("unknown field {key}"));
        }
    }
    Some(Obj {
        path: path.to_string(),
        map,
    })
}

/// A short name for the type of a YAML value, for "expected X, got Y" messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(crate) fn string(cx: &mut Cx, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            cx.err(path, format!("expected a string, got {}", kind(other)));
            None
        }
    }
}

pub(crate) fn nonempty_string(cx: &mut Cx, path: &str, v: &Value) -> Option<String> {
    let s = string(cx, path, v)?;
    if s.is_empty() {
        cx.err(path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(crate) fn boolean(cx: &mut Cx, path: &str, v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => {
            cx.err(path, format!("expected true or false, got {}", kind(other)));
            None
        }
    }
}

/// An unsigned integer; protobuf JSON also allows it quoted ("8080"), so that is accepted too.
pub(crate) fn uint(cx: &mut Cx, path: &str, v: &Value, max: u64) -> Option<u64> {
    let n = match v {
        Value::Number(n) if !n.is_f64() => match n.as_u64() {
            Some(n) => n,
            None => {
                cx.err(path, "must not be negative");
                return None;
            }
        },
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            match s.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    cx.err(path, format!("{s} is too large (at most {max})"));
                    return None;
                }
            }
        }
        other => {
            cx.err(
                path,
                format!("expected an unsigned integer, got {}", kind(other)),
            );
            return None;
        }
    };
    if n > max {
        cx.err(path, format!("{n} is too large (at most {max})"));
        return None;
    }
    Some(n)
}

pub(crate) fn u32_val(cx: &mut Cx, path: &str, v: &Value) -> Option<u32> {
    uint(cx, path, v, u64::from(u32::MAX)).and_then(|n| u32::try_from(n).ok())
}

/// A u32 within `lo..=hi`.
pub(crate) fn u32_range(cx: &mut Cx, path: &str, v: &Value, lo: u32, hi: u32) -> Option<u32> {
    let n = u32_val(cx, path, v)?;
    if n < lo || n > hi {
        cx.err(path, format!("{n} is out of range (expected {lo}..={hi})"));
        return None;
    }
    Some(n)
}

pub(crate) fn list<'a>(cx: &mut Cx, path: &str, v: &'a Value) -> Option<&'a [Value]> {
    match v {
        Value::Sequence(s) => Some(s),
        other => {
            cx.err(path, format!("expected a list, got {}", kind(other)));
            None
        }
    }
}

/// An enum by its Envoy name. `unsupported` names are values Envoy knows that Ringway refuses.
pub(crate) fn enumeration<T: Copy>(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    supported: &[(&str, T)],
    unsupported: &[&str],
) -> Option<T> {
    let s = string(cx, path, v)?;
    if let Some((_, t)) = supported.iter().find(|(n, _)| *n == s) {
        return Some(*t);
    }
    let names: Vec<&str> = supported.iter().map(|(n, _)| *n).collect();
    if unsupported.contains(&s.as_str()) {
        cx.err(
            path,
            format!(
                "{s} is not supported by Ringway (supported: {})",
                names.join(", ")
            ),
        );
    } else {
        cx.err(
            path,
            format!("unknown value {s} (expected one of {})", names.join(", ")),
        );
    }
    None
}

/// Checks a `typed_config`'s `"@type"` and returns the object (whose remaining fields the caller
/// checks against its own message table, which must list `@type`).
pub(crate) fn typed<'a>(
    cx: &mut Cx,
    path: &str,
    v: &'a Value,
    want: &str,
    msg: &Message,
) -> Option<Obj<'a>> {
    let Value::Mapping(m) = v else {
        cx.err(path, format!("expected an object, got {}", kind(v)));
        return None;
    };
    let tpath = join(path, "@type");
    match m.get("@type") {
        None | Some(Value::Null) => {
            cx.err(
                &tpath,
                format!("required field is missing (expected {want})"),
            );
            None
        }
        Some(Value::String(t)) if t == want => obj(cx, path, v, msg),
        Some(Value::String(t)) => {
            cx.err(
                &tpath,
                format!("{t} is not supported here (expected {want})"),
            );
            None
        }
        Some(other) => {
            cx.err(&tpath, format!("expected a string, got {}", kind(other)));
            None
        }
    }
}

/// The `"@type"` of a typed_config, if it has one (used where the type picks the behaviour).
pub(crate) fn type_url(v: &Value) -> Option<&str> {
    match v {
        Value::Mapping(m) => m.get("@type").and_then(Value::as_str),
        _ => None,
    }
}

const ADDRESS: Message = Message {
    supported: &["socket_address"],
    unsupported: &["pipe", "envoy_internal_address"],
};

const SOCKET_ADDRESS: Message = Message {
    supported: &["address", "port_value", "protocol"],
    unsupported: &[
        "named_port",
        "resolver_name",
        "ipv4_compat",
        "network_namespace_filepath",
    ],
};

/// An `Address` message (`{socket_address: {address, port_value, protocol}}`) as host and port.
/// The host is returned as written; callers decide whether it must be an IP literal.
pub(crate) fn socket_address(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    min_port: u16,
) -> Option<(String, u16)> {
    let a = obj(cx, path, v, &ADDRESS)?;
    let sv = a.req(cx, "socket_address")?;
    let s = obj(cx, &a.at("socket_address"), sv, &SOCKET_ADDRESS)?;
    if let Some(p) = s.get("protocol") {
        enumeration(cx, &s.at("protocol"), p, &[("TCP", ())], &["UDP"]);
    }
    let host = s
        .req(cx, "address")
        .and_then(|h| nonempty_string(cx, &s.at("address"), h));
    let port = match s.get("port_value") {
        Some(p) => u32_range(cx, &s.at("port_value"), p, u32::from(min_port), 65535)
            .and_then(|p| u16::try_from(p).ok()),
        None if s.has("named_port") => None,
        None => {
            cx.err(&s.at("port_value"), "required field is missing");
            None
        }
    };
    Some((host?, port?))
}

/// Parses an IP literal (IPv6 with or without brackets).
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// Converts the YAML tree to JSON for `/config_dump`. Non-string keys are written as their YAML
/// text; tags are dropped (the loader has already rejected documents that use them).
pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                J::from(u)
            } else if let Some(i) = n.as_i64() {
                J::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(J::Null, J::Number)
            }
        }
        Value::String(s) => J::String(s.clone()),
        Value::Sequence(s) => J::Array(s.iter().map(to_json).collect()),
        Value::Mapping(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_default(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}

/// Finds the first YAML tag in the tree (Envoy's YAML has none; a tag is a mistake).
pub(crate) fn find_tag(path: &str, v: &Value) -> Option<(String, String)> {
    match v {
        Value::Tagged(t) => Some((path.to_string(), t.tag.to_string())),
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .find_map(|(i, e)| find_tag(&index(path, i), e)),
        Value::Mapping(m) => m.iter().find_map(|(k, e)| {
            let key = k.as_str().unwrap_or("?");
            find_tag(&join(path, key), e)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    const M: Message = Message {
        supported: &["port_value", "a"],
        unsupported: &["named_port"],
    };

    #[test]
    fn obj_reports_unknown_unsupported_and_camel_case() {
        let mut cx = Cx::default();
        let v = y("{a: 1, named_port: x, bogus: 2, portValue: 3}");
        let o = obj(&mut cx, "root", &v, &M).unwrap();
        assert!(o.has("a"));
        let got: Vec<_> = cx
            .errs
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got[0],
            (
                "root.named_port",
                "field named_port is not supported by Ringway"
            )
        );
        assert_eq!(got[1], ("root.bogus", "unknown field bogus"));
        assert_eq!(got[2].0, "root.portValue");
        assert!(got[2].1.contains("write port_value"), "{}", got[2].1);
    }

    #[test]
    fn uint_accepts_quoted_and_rejects_negative_float_and_large() {
        let mut cx = Cx::default();
        assert_eq!(u32_val(&mut cx, "p", &y("\"80\"")), Some(80));
        assert_eq!(u32_val(&mut cx, "p", &y("-1")), None);
        assert_eq!(u32_val(&mut cx, "p", &y("1.5")), None);
        assert_eq!(u32_val(&mut cx, "p", &y("4294967296")), None);
        assert_eq!(u32_range(&mut cx, "p", &y("0"), 1, 10), None);
        assert_eq!(cx.errs.len(), 4);
    }

    #[test]
    fn enumeration_distinguishes_unsupported_from_unknown() {
        let mut cx = Cx::default();
        let s = [("A", 1), ("B", 2)];
        assert_eq!(enumeration(&mut cx, "e", &y("B"), &s, &["C"]), Some(2));
        assert_eq!(enumeration(&mut cx, "e", &y("C"), &s, &["C"]), None);
        assert_eq!(enumeration(&mut cx, "e", &y("D"), &s, &["C"]), None);
        assert!(cx.errs[0].message.contains("not supported"));
        assert!(cx.errs[1].message.contains("unknown value D"));
    }

    #[test]
    fn socket_address_reports_each_bad_field() {
        let mut cx = Cx::default();
        let v = y("socket_address: {address: '', port_value: 70000, protocol: UDP}");
        assert_eq!(socket_address(&mut cx, "a", &v, 1), None);
        let paths: Vec<_> = cx.errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a.socket_address.protocol",
                "a.socket_address.address",
                "a.socket_address.port_value"
            ]
        );
    }

    #[test]
    fn ip_literals() {
        assert!(ip_literal("127.0.0.1").is_some());
        assert!(ip_literal("[::1]").is_some());
        assert!(ip_literal("::1").is_some());
        assert!(ip_literal("service1").is_none());
    }

    #[test]
    fn json_conversion_keeps_shape() {
        let j = to_json(&y("{a: [1, -2, 1.5, x, true, null]}"));
        assert_eq!(j, serde_json::json!({"a": [1, -2, 1.5, "x", true, null]}));
    }
}
