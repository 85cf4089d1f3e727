//! `/clusters/<name>/endpoints`: Ringway's runtime membership API (Envoy has none).
//!
//! Churn drivers and operators add and remove a cluster's endpoints without a config reload:
//! `GET` lists the members, `POST` with `{"set": [...]}`, `{"add": [...]}` or `{"remove": [...]}`
//! (addresses `"ip:port"`) changes them through the [`MembershipHub`], which publishes a new
//! snapshot to every worker; removed endpoints drain. A request is checked completely before
//! anything changes, so a bad body changes nothing. DNS clusters answer 409: their members are
//! whatever the resolver says, and the next re-resolution would undo an edit. EDS clusters
//! accept edits, which last until the file next changes.
//!
//! [`MembershipHub`]: crate::upstream::membership::MembershipHub

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::http::{Request, Response};
use crate::config::{ClusterId, DiscoveryType};
use crate::server::ServerState;

/// The cluster name of a `/clusters/<name>/endpoints` path.
pub fn route(path: &str) -> Option<&str> {
    path.strip_prefix("/clusters/")?
        .strip_suffix("/endpoints")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

fn error(status: u16, msg: impl std::fmt::Display) -> Response {
    Response::text(status, format!("{msg}\n"))
}

fn discovery_name(d: DiscoveryType) -> &'static str {
    match d {
        DiscoveryType::Static => "STATIC",
        DiscoveryType::StrictDns => "STRICT_DNS",
        DiscoveryType::LogicalDns => "LOGICAL_DNS",
        DiscoveryType::Eds => "EDS",
    }
}

fn listing(state: &ServerState, id: ClusterId, name: &str, changed: Option<bool>) -> Value {
    let snap = state.membership.current();
    let endpoints: Vec<String> = snap
        .clusters
        .get(id)
        .map(|m| m.endpoints.iter().map(|e| e.addr.to_string()).collect())
        .unwrap_or_default();
    let mut v = json!({
        "cluster": name,
        "type": state.config.clusters.get(id).map_or("STATIC", |c| discovery_name(c.discovery)),
        "generation": snap.generation,
        "endpoints": endpoints,
    });
    if let (Some(changed), Some(o)) = (changed, v.as_object_mut()) {
        o.insert("changed".into(), json!(changed));
    }
    v
}

#[derive(Debug, PartialEq, Eq)]
enum Op {
    Set(Vec<SocketAddr>),
    Add(Vec<SocketAddr>),
    Remove(Vec<SocketAddr>),
}

/// Parses a POST body; the error is the whole 400 message.
fn parse_body(body: &[u8]) -> Result<Op, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "invalid JSON body ({e}); expected {{\"set\"|\"add\"|\"remove\": [\"ip:port\", ...]}}"
        )
    })?;
    let Value::Object(o) = v else {
        return Err(
            "the body must be a JSON object with one of \"set\", \"add\", \"remove\"".into(),
        );
    };
    if o.len() != 1 {
        return Err(format!(
            "the body must have exactly one of \"set\", \"add\", \"remove\" (got {} fields)",
            o.len()
        ));
    }
    let Some((key, list)) = o.iter().next() else {
        return Err("the body must have one of \"set\", \"add\", \"remove\"".into());
    };
    let Value::Array(items) = list else {
        return Err(format!("\"{key}\": expected a list of \"ip:port\" strings"));
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(format!(
                "\"{key}\"[{i}]: expected an \"ip:port\" string, got {item}"
            ));
        };
        let a: SocketAddr = s.parse().map_err(|_| {
            format!("\"{key}\"[{i}]: {s:?} is not an IP address and port (\"ip:port\", IPv6 as \"[::1]:port\")")
        })?;
        if a.port() == 0 {
            return Err(format!(
                "\"{key}\"[{i}]: {s:?}: port 0 is not a valid endpoint port"
            ));
        }
        if addrs.contains(&a) {
            return Err(format!("\"{key}\"[{i}]: {s:?} is listed twice"));
        }
        addrs.push(a);
    }
    match key.as_str() {
        "set" => Ok(Op::Set(addrs)),
        "add" => Ok(Op::Add(addrs)),
        "remove" => Ok(Op::Remove(addrs)),
        other => Err(format!(
            "unknown field \"{other}\": expected one of \"set\", \"add\", \"remove\""
        )),
    }
}

/// Answers `GET`/`POST /clusters/<name>/endpoints`.
pub fn handle(state: &ServerState, req: &Request, name: &str) -> Response {
    let Some(id) = state.config.cluster_by_name(name) else {
        return error(404, format!("unknown cluster '{name}'"));
    };
    match req.method.as_str() {
        "GET" | "HEAD" => Response::json(200, &listing(state, id, name, None)),
        "POST" => {
            let discovery = state
                .config
                .clusters
                .get(id)
                .map_or(DiscoveryType::Static, |c| c.discovery);
            if matches!(
                discovery,
                DiscoveryType::StrictDns | DiscoveryType::LogicalDns
            ) {
                return error(
                    409,
                    format!(
                        "cluster '{name}' is {}: its endpoints are owned by DNS resolution",
                        discovery_name(discovery)
                    ),
                );
            }
            let op = match parse_body(&req.body) {
                Ok(op) => op,
                Err(e) => return error(400, e),
            };
            let hub = &state.membership;
            let with_names = |a: &[SocketAddr]| -> Vec<(String, SocketAddr)> {
                a.iter().map(|a| (a.to_string(), *a)).collect()
            };
            let changed = match &op {
                Op::Set(a) => hub.set_endpoints(id, &with_names(a)),
                Op::Add(a) => hub.add_endpoints(id, &with_names(a)),
                Op::Remove(a) => hub.remove_endpoints(id, a),
            };
            if changed {
                info!("admin: cluster '{name}' endpoints changed ({op:?})");
            }
            Response::json(200, &listing(state, id, name, Some(changed)))
        }
        other => error(
            405,
            format!("Method {other} not allowed, GET or POST required."),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_only_well_formed_paths() {
        assert_eq!(route("/clusters/backend/endpoints"), Some("backend"));
        assert_eq!(route("/clusters//endpoints"), None);
        assert_eq!(route("/clusters/a/b/endpoints"), None);
        assert_eq!(route("/clusters"), None);
    }

    #[test]
    fn bodies() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse_body(br#"{"set": ["127.0.0.1:1", "[::1]:2"]}"#),
            Ok(Op::Set(vec![a("127.0.0.1:1"), a("[::1]:2")]))
        );
        assert_eq!(parse_body(br#"{"add": []}"#), Ok(Op::Add(vec![])));
        assert_eq!(
            parse_body(br#"{"remove": ["10.0.0.1:80"]}"#),
            Ok(Op::Remove(vec![a("10.0.0.1:80")]))
        );
        let bad: &[(&[u8], &str)] = &[
            (b"{", "invalid JSON body"),
            (b"[]", "the body must be a JSON object"),
            (
                br#"{"set": [], "add": []}"#,
                "the body must have exactly one",
            ),
            (br#"{"put": []}"#, "unknown field \"put\""),
            (br#"{"add": "1.2.3.4:5"}"#, "\"add\": expected a list"),
            (
                br#"{"add": [5]}"#,
                "\"add\"[0]: expected an \"ip:port\" string",
            ),
            (
                br#"{"add": ["host:80"]}"#,
                "\"add\"[0]: \"host:80\" is not an IP address",
            ),
            (
                br#"{"add": ["1.2.3.4"]}"#,
                "\"add\"[0]: \"1.2.3.4\" is not an IP address",
            ),
            (br#"{"set": ["1.2.3.4:0"]}"#, "port 0"),
            (
                br#"{"set": ["1.2.3.4:1", "1.2.3.4:1"]}"#,
                "\"set\"[1]: \"1.2.3.4:1\" is listed twice",
            ),
        ];
        for (body, want) in bad {
            let e = parse_body(body).unwrap_err();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
