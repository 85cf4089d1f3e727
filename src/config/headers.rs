//! Header names and the `request_headers_to_add/remove`, `response_headers_to_add/remove` lists
//! shared by route configurations, virtual hosts and routes.
//!
//! Names are validated and lowercased here once, so the proxy can compare them byte for byte;
//! Envoy's rules on what may not be touched (pseudo-headers, `host`) are enforced at load time.

use serde_yaml_ng::Value;

use super::model::*;
use super::walk::*;

const HEADER_VALUE_OPTION: Message = Message {
    supported: &["header", "append", "append_action"],
    unsupported: &["keep_empty_value"],
};

const HEADER_VALUE: Message = Message {
    supported: &["key", "value"],
    unsupported: &["raw_value"],
};

/// Reads the four header-mutation lists of a route configuration, virtual host or route.
pub(crate) fn header_mutations(cx: &mut Cx, o: &Obj<'_>) -> HeaderMutations {
    HeaderMutations {
        request_add: header_adds(cx, o, "request_headers_to_add", true),
        request_remove: header_removes(cx, o, "request_headers_to_remove", true),
        response_add: header_adds(cx, o, "response_headers_to_add", false),
        response_remove: header_removes(cx, o, "response_headers_to_remove", false),
    }
}

/// A header name: non-empty token characters, lowercased. Pseudo-headers (`:path`) are allowed
/// only where `pseudo_ok` (matchers); mutations may not touch them.
pub(crate) fn header_name(cx: &mut Cx, path: &str, v: &Value, pseudo_ok: bool) -> Option<String> {
    let s = string(cx, path, v)?;
    if s.is_empty() {
        cx.err(path, "header name must not be empty");
        return None;
    }
    let (pseudo, body) = match s.strip_prefix(':') {
        Some(b) => (true, b),
        None => (false, s.as_str()),
    };
    if pseudo && !pseudo_ok {
        cx.err(path, format!("pseudo-header {s} may not be modified"));
        return None;
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if body.is_empty() || !body.bytes().all(token) {
        cx.err(path, format!("invalid header name {s:?}"));
        return None;
    }
    Some(s.to_ascii_lowercase())
}

fn header_adds(cx: &mut Cx, o: &Obj<'_>, key: &str, request: bool) -> Vec<HeaderValueOption> {
    let mut out = Vec::new();
    let Some(v) = o.get(key) else { return out };
    let lp = o.at(key);
    for (i, item) in list(cx, &lp, v).unwrap_or_default().iter().enumerate() {
        let p = index(&lp, i);
        let Some(hvo) = obj(cx, &p, item, &HEADER_VALUE_OPTION) else {
            continue;
        };
        let Some(hv) = hvo.req(cx, "header") else {
            continue;
        };
        let Some(h) = obj(cx, &hvo.at("header"), hv, &HEADER_VALUE) else {
            continue;
        };
        let name = h
            .req(cx, "key")
            .and_then(|k| header_name(cx, &h.at("key"), k, false));
        if request && name.as_deref() == Some("host") {
            cx.err(
                &h.at("key"),
                "the host header may not be modified here (use host_rewrite_literal)",
            );
            continue;
        }
        let value = match h.get("value") {
            Some(v) => string(cx, &h.at("value"), v).and_then(|s| {
                if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                    cx.err(
                        &h.at("value"),
                        "header value must not contain CR, LF or NUL",
                    );
                    None
                } else {
                    Some(s)
                }
            }),
            None => Some(String::new()),
        };
        let action = match (hvo.get("append"), hvo.get("append_action")) {
            (Some(_), Some(_)) => {
                cx.err(&p, "append and append_action are mutually exclusive");
                None
            }
            (Some(a), None) => boolean(cx, &hvo.at("append"), a).map(|a| {
                if a {
                    AppendAction::AppendIfExistsOrAdd
                } else {
                    AppendAction::OverwriteIfExistsOrAdd
                }
            }),
            (None, Some(a)) => enumeration(
                cx,
                &hvo.at("append_action"),
                a,
                &[
                    ("APPEND_IF_EXISTS_OR_ADD", AppendAction::AppendIfExistsOrAdd),
                    ("ADD_IF_ABSENT", AppendAction::AddIfAbsent),
                    (
                        "OVERWRITE_IF_EXISTS_OR_ADD",
                        AppendAction::OverwriteIfExistsOrAdd,
                    ),
                ],
                &["OVERWRITE_IF_EXISTS"],
            ),
            (None, None) => Some(AppendAction::AppendIfExistsOrAdd),
        };
        if let (Some(name), Some(value), Some(action)) = (name, value, action) {
            out.push(HeaderValueOption {
                name,
                value,
                action,
            });
        }
    }
    out
}

fn header_removes(cx: &mut Cx, o: &Obj<'_>, key: &str, request: bool) -> Vec<String> {
    let mut out = Vec::new();
    let Some(v) = o.get(key) else { return out };
    let lp = o.at(key);
    for (i, item) in list(cx, &lp, v).unwrap_or_default().iter().enumerate() {
        let p = index(&lp, i);
        let Some(name) = header_name(cx, &p, item, false) else {
            continue;
        };
        if request && name == "host" {
            cx.err(&p, "the host header may not be removed");
            continue;
        }
        out.push(name);
    }
    out
}
