//! File-based EDS: an EDS cluster's members come from a `DiscoveryResponse` file, as in Envoy's
//! `path_config_source`.
//!
//! The file (YAML or JSON) holds `version_info` and `resources[]` of
//! `type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment`; the one whose
//! `cluster_name` is the cluster's `service_name` gives the members. Envoy learns of a new file
//! from an inotify move-into (an atomic rename); Ringway's control thread instead polls the
//! file's (device, inode, mtime, size) every [`POLL`], which sees a rename, an in-place rewrite
//! and a symlink swap alike, without a platform watcher. The file is read when that stamp
//! changes. At start-up a missing or bad file stops the process; later a bad file is logged and
//! counted (`update_rejected`) and the last good members stay, since a half-written or mistyped
//! file must never empty a cluster.
//!
//! The file is checked strictly, like the bootstrap: unknown fields and fields Ringway would
//! have to ignore wrongly (weights, priorities) are errors naming their path in the file.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use crate::config::{Bootstrap, ClusterId, DiscoveryType};
use crate::upstream::membership::MembershipHub;

/// How often the control thread looks at each EDS file; well under the 1 s reload promise.
pub const POLL: Duration = Duration::from_millis(150);

/// The resource type every entry of `resources[]` must have.
pub const CLA_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// What identifies one version of a file on disk; any change means "read it again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    // `metadata` follows symlinks, so a swapped symlink target counts as a change too.
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        size: m.size(),
    })
}

/// One EDS cluster's file and what was last read from it.
pub struct EdsSource {
    pub cluster: ClusterId,
    pub cluster_name: String,
    pub path: PathBuf,
    pub service_name: String,
    /// `None` while the file is missing (or before the first read).
    stamp: Option<Stamp>,
    /// `version_info` of the last accepted file.
    pub version: String,
}

/// The EDS sources of every EDS cluster in `cfg`, not yet read.
pub fn sources(cfg: &Bootstrap) -> Vec<EdsSource> {
    cfg.clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.discovery == DiscoveryType::Eds)
        .filter_map(|(id, c)| {
            Some(EdsSource {
                cluster: id,
                cluster_name: c.name.clone(),
                path: c.eds_path.clone()?,
                service_name: c.eds_service_name.clone().unwrap_or_else(|| c.name.clone()),
                stamp: None,
                version: String::new(),
            })
        })
        .collect()
}

impl EdsSource {
    /// Reads and parses the file; the error names the file and, when the content is bad, the field.
    fn read(&self) -> Result<(Stamp, Update), String> {
        let file = self.path.display();
        let before = stamp(&self.path).map_err(|e| format!("EDS file {file}: cannot read: {e}"))?;
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("EDS file {file}: cannot read: {e}"))?;
        let update =
            parse(&text, &self.service_name).map_err(|e| format!("EDS file {file}: {e}"))?;
        Ok((before, update))
    }

    /// The first read, before workers serve: any problem is a start-up error.
    pub fn load(&mut self, hub: &MembershipHub) -> Result<(), String> {
        let (st, update) = self
            .read()
            .map_err(|e| format!("cluster '{}': {e}", self.cluster_name))?;
        self.accept(hub, st, update);
        Ok(())
    }

    /// Re-reads the file if its stamp changed. A bad file keeps the last good members.
    pub fn poll(&mut self, hub: &MembershipHub) {
        let now = match stamp(&self.path) {
            Ok(s) => Some(s),
            Err(e) => {
                if self.stamp.is_some() {
                    // Once per disappearance, not once per poll.
                    warn!(
                        "cluster '{}': EDS file {}: {e}; keeping the last good endpoints",
                        self.cluster_name,
                        self.path.display()
                    );
                    hub.record_update(self.cluster, false);
                }
                None
            }
        };
        if now.is_none() || now == self.stamp {
            self.stamp = now;
            return;
        }
        match self.read() {
            Ok((st, update)) => self.accept(hub, st, update),
            Err(e) => {
                // Remember the bad version's stamp so it is reported once, not every poll.
                self.stamp = now;
                warn!(
                    "cluster '{}': {e}; update rejected, keeping the last good endpoints",
                    self.cluster_name
                );
                hub.record_update(self.cluster, false);
            }
        }
    }

    fn accept(&mut self, hub: &MembershipHub, st: Stamp, update: Update) {
        self.stamp = Some(st);
        hub.record_update(self.cluster, true);
        if hub.set_endpoints(self.cluster, &update.endpoints) {
            info!(
                "cluster '{}': EDS version '{}' from {}: {} endpoint(s)",
                self.cluster_name,
                update.version,
                self.path.display(),
                update.endpoints.len()
            );
        }
        self.version = update.version;
    }
}

/// What one good file says about one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub version: String,
    /// (hostname, address): the hostname is `endpoint.hostname` or the address text.
    pub endpoints: Vec<(String, SocketAddr)>,
}

type Res<T> = Result<T, String>;

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping whose keys are all in `allowed`.
fn object<'a>(path: &str, v: &'a Value, allowed: &[&str]) -> Res<&'a Mapping> {
    let Value::Mapping(m) = v else {
        return Err(format!(
            "{}: expected an object",
            if path.is_empty() { "(document)" } else { path }
        ));
    };
    for k in m.keys() {
        match k.as_str() {
            Some(k) if allowed.contains(&k) => {}
            Some(k) => return Err(format!("{}: unknown or unsupported field {k}", at(path, k))),
            None => return Err(format!("{path}: object keys must be strings")),
        }
    }
    Ok(m)
}

fn field<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn string<'a>(path: &str, v: &'a Value) -> Res<&'a str> {
    v.as_str()
        .ok_or_else(|| format!("{path}: expected a string"))
}

fn seq<'a>(path: &str, v: Option<&'a Value>) -> Res<&'a [Value]> {
    match v {
        None => Ok(&[]),
        Some(Value::Sequence(s)) => Ok(s),
        Some(_) => Err(format!("{path}: expected a list")),
    }
}

/// Parses a `DiscoveryResponse` and returns the members of the `ClusterLoadAssignment` named
/// `service_name`. Errors are `field.path: what is wrong`.
pub fn parse(text: &str, service_name: &str) -> Res<Update> {
    // The same guard as the bootstrap's: a deeply nested file would stall the control thread in
    // the YAML scanner (quadratic in depth) before serde_yaml_ng's own depth limit refuses it.
    if let Err(at) = crate::config::depth::check(text) {
        return Err(format!(
            "(document): nesting deeper than {} levels at line {} column {}",
            crate::config::depth::MAX_DEPTH,
            at.line,
            at.column
        ));
    }
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("(document): invalid YAML/JSON: {e}"))?;
    let top = object(
        "",
        &root,
        &["version_info", "resources", "type_url", "nonce", "canary"],
    )?;
    let version = match field(top, "version_info") {
        Some(v) => match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err("version_info: expected a string".into()),
        },
        None => String::new(),
    };
    if let Some(t) = field(top, "type_url") {
        if string("type_url", t)? != CLA_TYPE {
            return Err(format!("type_url: expected {CLA_TYPE}"));
        }
    }
    if field(top, "resources").is_none() {
        return Err("resources: required field is missing".into());
    }
    let mut found: Option<(String, Vec<(String, SocketAddr)>)> = None;
    for (i, r) in seq("resources", field(top, "resources"))?
        .iter()
        .enumerate()
    {
        let rp = format!("resources[{i}]");
        let m = object(
            &rp,
            r,
            &[
                "@type",
                "cluster_name",
                "endpoints",
                "named_endpoints",
                "policy",
            ],
        )?;
        match field(m, "@type") {
            None => {
                return Err(format!(
                    "{}: required field is missing (expected {CLA_TYPE})",
                    at(&rp, "@type")
                ))
            }
            Some(t) if string(&at(&rp, "@type"), t)? == CLA_TYPE => {}
            Some(t) => {
                return Err(format!(
                    "{}: {} is not supported here (expected {CLA_TYPE})",
                    at(&rp, "@type"),
                    t.as_str().unwrap_or_default()
                ))
            }
        }
        let name = match field(m, "cluster_name") {
            Some(n) => string(&at(&rp, "cluster_name"), n)?,
            None => {
                return Err(format!(
                    "{}: required field is missing",
                    at(&rp, "cluster_name")
                ))
            }
        };
        for unsupported in ["named_endpoints", "policy"] {
            if field(m, unsupported).is_some() {
                return Err(format!(
                    "{}: field {unsupported} is not supported by Ringway",
                    at(&rp, unsupported)
                ));
            }
        }
        if name != service_name {
            // Files may describe several clusters; the others are not ours to check further.
            continue;
        }
        if let Some((first, _)) = &found {
            return Err(format!(
                "{}: a second ClusterLoadAssignment for {service_name} (the first is {first})",
                at(&rp, "cluster_name")
            ));
        }
        found = Some((rp.clone(), assignment(&rp, m)?));
    }
    match found {
        Some((_, endpoints)) => Ok(Update { version, endpoints }),
        None => Err(format!(
            "resources: no ClusterLoadAssignment with cluster_name {service_name}"
        )),
    }
}

/// `endpoints[].lb_endpoints[]` of one assignment, in file order, without duplicates.
fn assignment(rp: &str, m: &Mapping) -> Res<Vec<(String, SocketAddr)>> {
    let mut out: Vec<(String, SocketAddr)> = Vec::new();
    let ep = at(rp, "endpoints");
    for (i, g) in seq(&ep, field(m, "endpoints"))?.iter().enumerate() {
        let gp = format!("{ep}[{i}]");
        let g = object(&gp, g, &["lb_endpoints", "locality", "priority"])?;
        if let Some(p) = field(g, "priority") {
            if p.as_u64() != Some(0) {
                return Err(format!(
                    "{}: priorities other than 0 are not supported by Ringway",
                    at(&gp, "priority")
                ));
            }
        }
        let lp = at(&gp, "lb_endpoints");
        for (j, lbe) in seq(&lp, field(g, "lb_endpoints"))?.iter().enumerate() {
            let p = format!("{lp}[{j}]");
            if let Some(member) = lb_endpoint(&p, lbe)? {
                if !out.iter().any(|(_, a)| *a == member.1) {
                    out.push(member);
                }
            }
        }
    }
    Ok(out)
}

/// One `LbEndpoint`; `None` when its `health_status` takes it out of load balancing.
fn lb_endpoint(p: &str, v: &Value) -> Res<Option<(String, SocketAddr)>> {
    let m = object(p, v, &["endpoint", "health_status", "metadata"])?;
    if let Some(h) = field(m, "health_status") {
        let hp = at(p, "health_status");
        match string(&hp, h)? {
            "UNKNOWN" | "HEALTHY" | "DEGRADED" => {}
            // Envoy sends these no new requests; leaving them out of the members does the same.
            "UNHEALTHY" | "DRAINING" | "TIMEOUT" => return Ok(None),
            other => return Err(format!("{hp}: unknown value {other}")),
        }
    }
    let epp = at(p, "endpoint");
    let e = match field(m, "endpoint") {
        Some(e) => object(&epp, e, &["address", "hostname"])?,
        None => return Err(format!("{epp}: required field is missing")),
    };
    let ap = at(&epp, "address");
    let a = match field(e, "address") {
        Some(a) => object(&ap, a, &["socket_address"])?,
        None => return Err(format!("{ap}: required field is missing")),
    };
    let sp = at(&ap, "socket_address");
    let s = match field(a, "socket_address") {
        Some(s) => object(&sp, s, &["address", "port_value", "protocol"])?,
        None => return Err(format!("{sp}: required field is missing")),
    };
    if let Some(proto) = field(s, "protocol") {
        if string(&at(&sp, "protocol"), proto)? != "TCP" {
            return Err(format!("{}: only TCP is supported", at(&sp, "protocol")));
        }
    }
    let hp = at(&sp, "address");
    let host = match field(s, "address") {
        Some(h) => string(&hp, h)?,
        None => return Err(format!("{hp}: required field is missing")),
    };
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("{hp}: EDS endpoints need IP addresses, got {host:?}"))?;
    let pp = at(&sp, "port_value");
    let port = match field(s, "port_value") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(t)) => t.parse::<u64>().ok(),
        Some(_) => None,
        None => return Err(format!("{pp}: required field is missing")),
    }
    .and_then(|n| u16::try_from(n).ok())
    .filter(|n| *n != 0)
    .ok_or_else(|| format!("{pp}: expected a port number 1..=65535"))?;
    let addr = SocketAddr::new(ip, port);
    let hostname = match field(e, "hostname") {
        Some(h) => string(&at(&epp, "hostname"), h)?.to_owned(),
        None => addr.to_string(),
    };
    Ok(Some((hostname, addr)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addrs(u: &Update) -> Vec<String> {
        u.endpoints.iter().map(|(_, a)| a.to_string()).collect()
    }

    #[test]
    fn yaml_and_json_files() {
        let yaml = "
version_info: '7'
resources:
- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: other
  endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.9, port_value: 1}}}}]}]
- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: svc
  endpoints:
  - locality: {zone: a}
    lb_endpoints:
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9101}}}
    - endpoint: {hostname: b, address: {socket_address: {address: '::1', port_value: '9102'}}}
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9101}}}
    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9103}}}
      health_status: DRAINING
";
        let u = parse(yaml, "svc").unwrap();
        assert_eq!(u.version, "7");
        assert_eq!(addrs(&u), ["127.0.0.1:9101", "[::1]:9102"]);
        assert_eq!(u.endpoints[1].0, "b");
        let json = r#"{"version_info": "v1", "resources": [{"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": "svc", "endpoints": []}]}"#;
        let u = parse(json, "svc").unwrap();
        assert_eq!((u.version.as_str(), u.endpoints.len()), ("v1", 0));
    }

    #[test]
    fn errors_name_the_field() {
        let cla = CLA_TYPE;
        let cases = [
            ("a: [", "(document): invalid YAML/JSON"),
            (
                &*format!("resources: {}", "[".repeat(100_000)),
                "(document): nesting deeper than 128 levels at line 1 column 140",
            ),
            ("version_info: x", "resources: required field is missing"),
            (
                "resources: [{cluster_name: svc}]",
                "resources[0].@type: required field is missing",
            ),
            (
                "resources: [{'@type': x.Cluster, cluster_name: svc}]",
                "resources[0].@type: x.Cluster is not supported here",
            ),
            (
                &format!("resources: [{{'@type': {cla}, cluster_name: other}}]"),
                "resources: no ClusterLoadAssignment with cluster_name svc",
            ),
            (
                &format!("resources: [{{'@type': {cla}, cluster_name: svc, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: host.local, port_value: 1}}}}}}}}]}}]}}]"),
                "resources[0].endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: EDS endpoints need IP addresses",
            ),
            (
                &format!("resources: [{{'@type': {cla}, cluster_name: svc, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 70000}}}}}}}}]}}]}}]"),
                "resources[0].endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: expected a port number",
            ),
            (
                &format!("resources: [{{'@type': {cla}, cluster_name: svc, endpoints: [{{lb_endpoints: [{{load_balancing_weight: 2}}]}}]}}]"),
                "resources[0].endpoints[0].lb_endpoints[0].load_balancing_weight: unknown or unsupported field",
            ),
            (
                &format!("resources: [{{'@type': {cla}, cluster_name: svc}}, {{'@type': {cla}, cluster_name: svc}}]"),
                "resources[1].cluster_name: a second ClusterLoadAssignment for svc",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text, "svc").unwrap_err();
            assert!(e.starts_with(want), "{text}\n  got:  {e}\n  want: {want}");
        }
    }
}
