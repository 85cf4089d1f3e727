//! `transport_socket` (`envoy.transport_sockets.tls`): Envoy's `DownstreamTlsContext` on filter
//! chains and `UpstreamTlsContext` on clusters, into [`DownstreamTlsContext`] and [`UpstreamTls`].
//!
//! Certificates, keys and CA bundles are read and parsed here, at load time, so a missing file, a
//! file without a PEM block or a key that does not belong to its certificate is an error with the
//! field path, and the process exits before binding anything. The runtime (`crate::tls`) reads the
//! files again when it builds (and later reloads) its rustls configs.

use serde_yaml_ng::Value;

use super::model::*;
use super::walk::*;

pub(crate) const TLS_SOCKET_NAME: &str = "envoy.transport_sockets.tls";
pub(crate) const DOWNSTREAM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub(crate) const UPSTREAM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

const TRANSPORT_SOCKET: Message = Message {
    supported: &["name", "typed_config"],
    unsupported: &[],
};

const DOWNSTREAM: Message = Message {
    supported: &[
        "@type",
        "common_tls_context",
        "require_client_certificate",
        "disable_stateless_session_resumption",
        "disable_stateful_session_resumption",
    ],
    unsupported: &[
        "require_sni",
        "session_ticket_keys",
        "session_ticket_keys_sds_secret_config",
        "session_timeout",
        "ocsp_staple_policy",
        "full_scan_certs_on_sni_mismatch",
        "prefer_client_ciphers",
    ],
};

const UPSTREAM: Message = Message {
    supported: &["@type", "common_tls_context", "sni"],
    unsupported: &[
        "auto_host_sni",
        "auto_sni_san_validation",
        "allow_renegotiation",
        "max_session_keys",
        "enforce_rsa_key_usage",
    ],
};

const COMMON: Message = Message {
    supported: &[
        "tls_certificates",
        "alpn_protocols",
        "tls_params",
        "validation_context",
    ],
    unsupported: &[
        "tls_certificate_sds_secret_configs",
        "tls_certificate_provider_instance",
        "custom_tls_certificate_selector",
        "tls_certificate_certificate_provider",
        "tls_certificate_certificate_provider_instance",
        "validation_context_sds_secret_config",
        "combined_validation_context",
        "validation_context_certificate_provider",
        "validation_context_certificate_provider_instance",
        "custom_handshaker",
        "key_log",
    ],
};

const TLS_CERTIFICATE: Message = Message {
    supported: &["certificate_chain", "private_key"],
    unsupported: &[
        "pkcs12",
        "watched_directory",
        "private_key_provider",
        "password",
        "ocsp_staple",
        "signed_certificate_timestamp",
    ],
};

const DATA_SOURCE: Message = Message {
    supported: &["filename", "inline_string", "inline_bytes"],
    unsupported: &["environment_variable", "watched_directory"],
};

const TLS_PARAMS: Message = Message {
    supported: &[
        "tls_minimum_protocol_version",
        "tls_maximum_protocol_version",
    ],
    unsupported: &[
        "cipher_suites",
        "ecdh_curves",
        "signature_algorithms",
        "compliance_policies",
    ],
};

const VALIDATION_CONTEXT: Message = Message {
    supported: &["trusted_ca", "trust_chain_verification"],
    unsupported: &[
        "watched_directory",
        "ca_certificate_provider_instance",
        "system_root_certs",
        "verify_certificate_spki",
        "verify_certificate_hash",
        "match_typed_subject_alt_names",
        "match_subject_alt_names",
        "require_signed_certificate_timestamp",
        "crl",
        "allow_expired_certificate",
        "custom_validator_config",
        "only_verify_leaf_cert_crl",
        "max_verify_depth",
    ],
};

/// The typed_config of a `transport_socket`, after checking it names the TLS socket.
fn socket_config<'a>(cx: &mut Cx, path: &str, v: &'a Value) -> Option<&'a Value> {
    let o = obj(cx, path, v, &TRANSPORT_SOCKET)?;
    if let Some(n) = o.get("name") {
        let name = string(cx, &o.at("name"), n)?;
        if name != TLS_SOCKET_NAME {
            cx.err(
                &o.at("name"),
                format!(
                    "transport socket {name} is not supported by Ringway (only {TLS_SOCKET_NAME})"
                ),
            );
            return None;
        }
    }
    o.req(cx, "typed_config")
}

/// A filter chain's `transport_socket`.
pub(crate) fn downstream(cx: &mut Cx, path: &str, v: &Value) -> Option<DownstreamTlsContext> {
    let tc = socket_config(cx, path, v)?;
    let tp = join(path, "typed_config");
    let o = typed(cx, &tp, tc, DOWNSTREAM_TYPE, &DOWNSTREAM)?;
    let before = cx.errs.len();
    if let Some(r) = o.get("require_client_certificate") {
        if boolean(cx, &o.at("require_client_certificate"), r) == Some(true) {
            cx.err(
                &o.at("require_client_certificate"),
                "client certificates (mutual TLS) are not supported by Ringway",
            );
        }
    }
    let flag = |cx: &mut Cx, key: &str| match o.get(key) {
        Some(b) => boolean(cx, &o.at(key), b),
        None => Some(false),
    };
    let stateless = flag(cx, "disable_stateless_session_resumption");
    let stateful = flag(cx, "disable_stateful_session_resumption");
    let common = match o.get("common_tls_context") {
        Some(c) => common(cx, &o.at("common_tls_context"), c, Side::Downstream),
        None => {
            cx.err(
                &o.at("common_tls_context.tls_certificates"),
                "required field is missing (a TLS listener needs a certificate)",
            );
            None
        }
    };
    if cx.errs.len() != before {
        return None;
    }
    let common = common?;
    Some(DownstreamTlsContext {
        certificates: common.certificates,
        alpn_protocols: common.alpn,
        versions: common.versions,
        disable_stateless_session_resumption: stateless?,
        disable_stateful_session_resumption: stateful?,
    })
}

/// A cluster's `transport_socket`.
pub(crate) fn upstream(cx: &mut Cx, path: &str, v: &Value) -> Option<UpstreamTls> {
    let tc = socket_config(cx, path, v)?;
    let tp = join(path, "typed_config");
    let o = typed(cx, &tp, tc, UPSTREAM_TYPE, &UPSTREAM)?;
    let before = cx.errs.len();
    let sni = match o.get("sni") {
        Some(s) => nonempty_string(cx, &o.at("sni"), s).and_then(|s| {
            if rustls::pki_types::ServerName::try_from(s.as_str()).is_err() {
                cx.err(&o.at("sni"), format!("{s:?} is not a valid server name"));
                None
            } else {
                Some(Some(s))
            }
        }),
        None => Some(None),
    };
    let common = match o.get("common_tls_context") {
        Some(c) => common(cx, &o.at("common_tls_context"), c, Side::Upstream),
        None => Some(Common::default()),
    };
    if cx.errs.len() != before {
        return None;
    }
    let common = common?;
    Some(UpstreamTls {
        sni: sni?,
        trusted_ca: common.trusted_ca,
        verify: common.verify,
        alpn_protocols: common.alpn,
        versions: common.versions,
        client_certificate: common.certificates.into_iter().next(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Downstream,
    Upstream,
}

struct Common {
    certificates: Vec<TlsCertificate>,
    alpn: Vec<String>,
    versions: TlsVersions,
    trusted_ca: Option<DataSource>,
    verify: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            certificates: Vec::new(),
            alpn: Vec::new(),
            versions: TlsVersions::default(),
            trusted_ca: None,
            verify: true,
        }
    }
}

fn common(cx: &mut Cx, path: &str, v: &Value, side: Side) -> Option<Common> {
    let o = obj(cx, path, v, &COMMON)?;
    let before = cx.errs.len();
    let mut out = Common::default();
    let cp = o.at("tls_certificates");
    match o.get("tls_certificates").and_then(|c| list(cx, &cp, c)) {
        Some(certs) => {
            if certs.is_empty() && side == Side::Downstream {
                cx.err(&cp, "at least one certificate is required");
            }
            if certs.len() > 1 && side == Side::Upstream {
                cx.err(&cp, "at most one client certificate is allowed");
            }
            for (i, c) in certs.iter().enumerate() {
                if let Some(c) = certificate(cx, &index(&cp, i), c) {
                    out.certificates.push(c);
                }
            }
        }
        None if side == Side::Downstream && !o.has("tls_certificates") => {
            cx.err(
                &cp,
                "required field is missing (a TLS listener needs a certificate)",
            );
        }
        None => {}
    }
    if let Some(a) = o.get("alpn_protocols") {
        let ap = o.at("alpn_protocols");
        for (i, p) in list(cx, &ap, a).unwrap_or_default().iter().enumerate() {
            let pp = index(&ap, i);
            if let Some(p) = nonempty_string(cx, &pp, p) {
                if p.len() > 255 {
                    cx.err(&pp, "an ALPN protocol name is at most 255 bytes");
                } else {
                    out.alpn.push(p);
                }
            }
        }
    }
    if let Some(p) = o.get("tls_params") {
        if let Some(v) = tls_params(cx, &o.at("tls_params"), p) {
            out.versions = v;
        }
    }
    if let Some(vc) = o.get("validation_context") {
        let vp = o.at("validation_context");
        match side {
            Side::Downstream => cx.err(
                &vp,
                "client certificate validation (mutual TLS) is not supported by Ringway",
            ),
            Side::Upstream => {
                if let Some((ca, verify)) = validation_context(cx, &vp, vc) {
                    out.trusted_ca = ca;
                    out.verify = verify;
                }
            }
        }
    }
    (cx.errs.len() == before).then_some(out)
}

/// One `tls_certificates[]` entry; both files are read and must hold a matching pair.
fn certificate(cx: &mut Cx, path: &str, v: &Value) -> Option<TlsCertificate> {
    let o = obj(cx, path, v, &TLS_CERTIFICATE)?;
    let chain = o.req(cx, "certificate_chain").and_then(|c| {
        let (src, at) = data_source(cx, &o.at("certificate_chain"), c)?;
        let parsed = crate::tls::read_source(&src).and_then(|b| crate::tls::parse_certificates(&b));
        match parsed {
            Ok(certs) => Some((src, certs)),
            Err(e) => {
                cx.err(&at, e);
                None
            }
        }
    });
    let key = o.req(cx, "private_key").and_then(|k| {
        let (src, at) = data_source(cx, &o.at("private_key"), k)?;
        match crate::tls::read_source(&src).and_then(|b| crate::tls::parse_private_key(&b)) {
            Ok(key) => Some((src, key)),
            Err(e) => {
                cx.err(&at, e);
                None
            }
        }
    });
    let ((chain_src, certs), (key_src, key)) = (chain?, key?);
    if let Err(e) = crate::tls::certified_key(certs, key) {
        cx.err(path, e);
        return None;
    }
    Some(TlsCertificate {
        certificate_chain: chain_src,
        private_key: key_src,
    })
}

/// A `DataSource` and the path of the field that held it (for errors about its content).
fn data_source(cx: &mut Cx, path: &str, v: &Value) -> Option<(DataSource, String)> {
    let o = obj(cx, path, v, &DATA_SOURCE)?;
    let set: Vec<&str> = DATA_SOURCE
        .supported
        .iter()
        .copied()
        .filter(|k| o.has(k))
        .collect();
    if set.len() != 1 {
        if set.is_empty() {
            cx.err(
                path,
                "one of filename, inline_string or inline_bytes is required",
            );
        } else {
            cx.err(
                path,
                format!(
                    "set only one of {} (found {})",
                    DATA_SOURCE.supported.join(", "),
                    set.join(", ")
                ),
            );
        }
        return None;
    }
    let key = set[0];
    let at = o.at(key);
    let v = o.get(key)?;
    let src = match key {
        "filename" => DataSource::File(nonempty_string(cx, &at, v)?.into()),
        "inline_string" => DataSource::Inline(nonempty_string(cx, &at, v)?.into_bytes()),
        _ => {
            let s = nonempty_string(cx, &at, v)?;
            match base64_decode(&s) {
                Some(b) => DataSource::Inline(b),
                None => {
                    cx.err(&at, "expected base64 data");
                    return None;
                }
            }
        }
    };
    Some((src, at))
}

/// Standard base64 (protobuf JSON's encoding of `bytes`), padding optional, whitespace ignored.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = false;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            _ => return None,
        };
        if padding {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn tls_params(cx: &mut Cx, path: &str, v: &Value) -> Option<TlsVersions> {
    let o = obj(cx, path, v, &TLS_PARAMS)?;
    let mut versions = TlsVersions::default();
    let read = |cx: &mut Cx, key: &str| -> Option<Option<TlsVersion>> {
        let Some(v) = o.get(key) else {
            return Some(None);
        };
        let at = o.at(key);
        let s = string(cx, &at, v)?;
        match s.as_str() {
            "TLS_AUTO" => Some(None),
            "TLSv1_2" => Some(Some(TlsVersion::Tls12)),
            "TLSv1_3" => Some(Some(TlsVersion::Tls13)),
            "TLSv1_0" | "TLSv1_1" => {
                cx.err(
                    &at,
                    format!(
                        "{s} is not supported by Ringway (rustls speaks only TLSv1_2 and TLSv1_3)"
                    ),
                );
                None
            }
            _ => {
                cx.err(
                    &at,
                    format!("unknown value {s} (expected one of TLS_AUTO, TLSv1_2, TLSv1_3)"),
                );
                None
            }
        }
    };
    let min = read(cx, "tls_minimum_protocol_version")?;
    let max = read(cx, "tls_maximum_protocol_version")?;
    if let Some(min) = min {
        versions.min = min;
    }
    if let Some(max) = max {
        versions.max = max;
    }
    if versions.min > versions.max {
        cx.err(
            &o.at("tls_minimum_protocol_version"),
            "the minimum version is above tls_maximum_protocol_version",
        );
        return None;
    }
    Some(versions)
}

/// An upstream `validation_context`: the CA bundle (read and parsed now) and whether to verify.
fn validation_context(cx: &mut Cx, path: &str, v: &Value) -> Option<(Option<DataSource>, bool)> {
    let o = obj(cx, path, v, &VALIDATION_CONTEXT)?;
    let verify = match o.get("trust_chain_verification") {
        Some(t) => enumeration(
            cx,
            &o.at("trust_chain_verification"),
            t,
            &[("VERIFY_TRUST_CHAIN", true), ("ACCEPT_UNTRUSTED", false)],
            &[],
        )?,
        None => true,
    };
    let ca = match o.get("trusted_ca") {
        Some(ca) => {
            let (src, at) = data_source(cx, &o.at("trusted_ca"), ca)?;
            let parsed = crate::tls::read_source(&src).and_then(|b| crate::tls::parse_roots(&b));
            if let Err(e) = parsed {
                cx.err(&at, e);
                return None;
            }
            Some(src)
        }
        None => None,
    };
    Some((ca, verify))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("aGV*").is_none());
        assert!(base64_decode("aG=Vs").is_none());
    }

    /// A directory with a CA-less self-signed pair `a.crt`/`a.key` and a second key `b.key`.
    struct Files(PathBuf);

    impl Files {
        fn new() -> Files {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("ringway-config-tls-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let k = rcgen::KeyPair::generate().unwrap();
            let c = rcgen::CertificateParams::new(vec!["a.example".into()])
                .unwrap()
                .self_signed(&k)
                .unwrap();
            std::fs::write(dir.join("a.crt"), c.pem()).unwrap();
            std::fs::write(dir.join("a.key"), k.serialize_pem()).unwrap();
            let other = rcgen::KeyPair::generate().unwrap();
            std::fs::write(dir.join("b.key"), other.serialize_pem()).unwrap();
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }

        /// A `tls_certificates` entry from files.
        fn cert(&self) -> String {
            format!(
                "{{certificate_chain: {{filename: '{}'}}, private_key: {{filename: '{}'}}}}",
                self.path("a.crt"),
                self.path("a.key")
            )
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const HCM: &str = "      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config: {virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: c}}]}]}
          http_filters: [{name: envoy.filters.http.router}]
";

    /// A downstream transport socket with `common` as its common_tls_context body (and `extra`
    /// fields of the DownstreamTlsContext).
    fn ts(common: &str, extra: &str) -> String {
        format!(
            "      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          '@type': {DOWNSTREAM_TYPE}
          common_tls_context: {{{common}}}
{extra}"
        )
    }

    /// A listener whose filter chains are `chains` (each: text after `filters`), plus `cluster`
    /// fields for cluster `c`.
    fn config(listener_extra: &str, chains: &[String], cluster: &str) -> String {
        let mut out = format!(
            "static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: 8443}}}}
{listener_extra}    filter_chains:
"
        );
        for c in chains {
            out.push_str("    - filters:\n");
            out.push_str(HCM);
            out.push_str(c);
        }
        out.push_str(&format!("  clusters:\n  - name: c\n{cluster}"));
        out
    }

    fn run(yaml: &str) -> Result<Bootstrap, Vec<String>> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut cx = Cx::default();
        let b = super::super::envoy::bootstrap(&mut cx, &v);
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

    fn errors(yaml: &str) -> Vec<String> {
        run(yaml).map(|_| ()).unwrap_err()
    }

    const L: &str = "static_resources.listeners[0].filter_chains";

    #[test]
    fn downstream_chains_and_every_field() {
        let f = Files::new();
        let inline_crt = std::fs::read_to_string(f.path("a.crt")).unwrap();
        let inline_key = std::fs::read_to_string(f.path("a.key")).unwrap();
        let a = format!(
            "      filter_chain_match: {{server_names: [A.Example, '*.wild.example'], transport_protocol: tls}}
      transport_socket_connect_timeout: 3s
{}",
            ts(
                &format!(
                    "tls_certificates: [{}], alpn_protocols: [http/1.1], tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}}",
                    f.cert()
                ),
                "          disable_stateless_session_resumption: true
          disable_stateful_session_resumption: true
          require_client_certificate: false
"
            )
        );
        let default = format!(
            "      transport_socket_connect_timeout: 5s\n{}",
            ts(
                &format!(
                    "tls_certificates: [{{certificate_chain: {{inline_string: {}}}, private_key: {{inline_string: {}}}}}]",
                    serde_json::to_string(&inline_crt).unwrap(),
                    serde_json::to_string(&inline_key).unwrap()
                ),
                ""
            )
        );
        let b = run(&config(
            "    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]\n",
            &[a, default],
            "",
        ))
        .unwrap();
        let tls = b.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.handshake_timeout, Duration::from_secs(5));
        assert_eq!(tls.chains.len(), 2);
        let (a, d) = (&tls.chains[0], &tls.chains[1]);
        assert_eq!(a.server_names, ["a.example", "*.wild.example"]);
        assert_eq!(
            a.context.certificates[0].certificate_chain,
            DataSource::File(f.path("a.crt").into())
        );
        assert_eq!(a.context.alpn_protocols, ["http/1.1"]);
        assert_eq!(
            a.context.versions,
            TlsVersions {
                min: TlsVersion::Tls13,
                max: TlsVersion::Tls13
            }
        );
        assert!(a.context.disable_stateless_session_resumption);
        assert!(a.context.disable_stateful_session_resumption);
        assert!(d.server_names.is_empty());
        assert_eq!(
            d.context.certificates[0].private_key,
            DataSource::Inline(inline_key.into_bytes())
        );
        assert!(d.context.alpn_protocols.is_empty());
        assert_eq!(d.context.versions, TlsVersions::default());
        assert!(!d.context.disable_stateless_session_resumption);
    }

    #[test]
    fn handshake_timeout_default_and_plain_listener() {
        let f = Files::new();
        let b = run(&config(
            "",
            &[ts(&format!("tls_certificates: [{}]", f.cert()), "")],
            "",
        ))
        .unwrap();
        let tls = b.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert!(run(&config("", &[String::new()], "")).unwrap().listeners[0]
            .tls
            .is_none());
    }

    #[test]
    fn certificate_errors_name_the_field() {
        let f = Files::new();
        let missing = format!(
            "tls_certificates: [{{certificate_chain: {{filename: /nonexistent/x.crt}}, private_key: {{filename: '{}'}}}}]",
            f.path("a.key")
        );
        let e = errors(&config("", &[ts(&missing, "")], ""));
        let base =
            format!("{L}[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].starts_with(&format!(
                "{base}.certificate_chain.filename: cannot read /nonexistent/x.crt"
            )),
            "{e:#?}"
        );

        let bad_key = format!(
            "tls_certificates: [{{certificate_chain: {{filename: '{}'}}, private_key: {{inline_string: nope}}}}]",
            f.path("a.crt")
        );
        let e = errors(&config("", &[ts(&bad_key, "")], ""));
        assert_eq!(
            e,
            [format!("{base}.private_key.inline_string: no PEM PRIVATE KEY block found (PKCS#8, RSA or EC)")]
        );

        let not_pem = format!(
            "tls_certificates: [{{certificate_chain: {{inline_bytes: aGVsbG8=}}, private_key: {{filename: '{}'}}}}]",
            f.path("a.key")
        );
        let e = errors(&config("", &[ts(&not_pem, "")], ""));
        assert_eq!(
            e,
            [format!(
                "{base}.certificate_chain.inline_bytes: no PEM CERTIFICATE block found"
            )]
        );

        let mismatch = format!(
            "tls_certificates: [{{certificate_chain: {{filename: '{}'}}, private_key: {{filename: '{}'}}}}]",
            f.path("a.crt"),
            f.path("b.key")
        );
        let e = errors(&config("", &[ts(&mismatch, "")], ""));
        assert_eq!(
            e,
            [format!(
                "{base}: the private key does not match the certificate's public key"
            )]
        );

        let both = format!(
            "tls_certificates: [{{certificate_chain: {{filename: '{}', inline_string: x}}, private_key: {{}}}}]",
            f.path("a.crt")
        );
        let e = errors(&config("", &[ts(&both, "")], ""));
        assert_eq!(
            e,
            [
                format!("{base}.certificate_chain: set only one of filename, inline_string, inline_bytes (found filename, inline_string)"),
                format!("{base}.private_key: one of filename, inline_string or inline_bytes is required"),
            ]
        );

        let e = errors(&config("", &[ts("tls_certificates: []", "")], ""));
        assert_eq!(
            e,
            [format!("{L}[0].transport_socket.typed_config.common_tls_context.tls_certificates: at least one certificate is required")]
        );
        let e = errors(&config("", &[ts("alpn_protocols: [h2]", "")], ""));
        assert_eq!(
            e,
            [format!("{L}[0].transport_socket.typed_config.common_tls_context.tls_certificates: required field is missing (a TLS listener needs a certificate)")]
        );
    }

    #[test]
    fn unsupported_downstream_fields() {
        let f = Files::new();
        let common = format!(
            "tls_certificates: [{}], tls_params: {{tls_minimum_protocol_version: TLSv1_1, cipher_suites: [x]}}, validation_context: {{}}",
            f.cert()
        );
        let e = errors(&config(
            "",
            &[ts(
                &common,
                "          require_client_certificate: true\n          session_ticket_keys: {}\n",
            )],
            "",
        ));
        let base = format!("{L}[0].transport_socket.typed_config");
        assert_eq!(
            e,
            [
                format!("{base}.session_ticket_keys: field session_ticket_keys is not supported by Ringway"),
                format!("{base}.require_client_certificate: client certificates (mutual TLS) are not supported by Ringway"),
                format!("{base}.common_tls_context.tls_params.cipher_suites: field cipher_suites is not supported by Ringway"),
                format!("{base}.common_tls_context.tls_params.tls_minimum_protocol_version: TLSv1_1 is not supported by Ringway (rustls speaks only TLSv1_2 and TLSv1_3)"),
                format!("{base}.common_tls_context.validation_context: client certificate validation (mutual TLS) is not supported by Ringway"),
            ]
        );
        let inverted = format!(
            "tls_certificates: [{}], tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_2}}",
            f.cert()
        );
        let e = errors(&config("", &[ts(&inverted, "")], ""));
        assert_eq!(
            e,
            [format!("{base}.common_tls_context.tls_params.tls_minimum_protocol_version: the minimum version is above tls_maximum_protocol_version")]
        );
        let raw = "      transport_socket: {name: envoy.transport_sockets.raw_buffer, typed_config: {}}\n";
        let e = errors(&config("", &[raw.to_string()], ""));
        assert_eq!(
            e,
            [format!("{L}[0].transport_socket.name: transport socket envoy.transport_sockets.raw_buffer is not supported by Ringway (only envoy.transport_sockets.tls)")]
        );
        let upstream_type = format!(
            "      transport_socket: {{name: envoy.transport_sockets.tls, typed_config: {{'@type': {UPSTREAM_TYPE}}}}}\n"
        );
        let e = errors(&config("", &[upstream_type], ""));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(&format!(
                "{L}[0].transport_socket.typed_config.@type: {UPSTREAM_TYPE} is not supported here"
            )),
            "{e:#?}"
        );
        let e = errors(&config(
            "    listener_filters: [{name: envoy.filters.listener.http_inspector}]\n",
            &[String::new()],
            "",
        ));
        assert_eq!(
            e,
            ["static_resources.listeners[0].listener_filters[0]: listener filter envoy.filters.listener.http_inspector is not supported by Ringway (only envoy.filters.listener.tls_inspector)"]
        );
    }

    #[test]
    fn filter_chain_rules() {
        let f = Files::new();
        let tls = |names: &str| {
            format!(
                "      filter_chain_match: {{server_names: [{names}]}}\n{}",
                ts(&format!("tls_certificates: [{}]", f.cert()), "")
            )
        };
        // Same server name twice, and two default chains.
        let e = errors(&config(
            "",
            &[
                tls("a.example"),
                tls("b.example, a.example"),
                ts(&format!("tls_certificates: [{}]", f.cert()), ""),
                ts(&format!("tls_certificates: [{}]", f.cert()), ""),
            ],
            "",
        ));
        assert_eq!(
            e,
            [
                format!("{L}[1].filter_chain_match.server_names[1]: server name a.example is already matched by {L}[0]"),
                format!("{L}[3]: {L}[2] already matches every server name (no filter_chain_match.server_names); only one such default chain is allowed"),
            ]
        );
        // TLS and plain chains mixed; server_names without TLS; other match fields.
        let e = errors(&config(
            "",
            &[
                tls("a.example"),
                "      filter_chain_match: {server_names: [b.example], destination_port: 443}\n"
                    .to_string(),
            ],
            "",
        ));
        assert_eq!(
            e,
            [
                format!("{L}[1].filter_chain_match.destination_port: field destination_port is not supported by Ringway"),
                format!("{L}[1].filter_chain_match.server_names[0]: matching on server names needs a TLS transport_socket on this filter chain"),
                format!("{L}[1]: {L}[0] terminates TLS but this chain has no transport_socket; Ringway does not mix TLS and plain filter chains on one listener (use two listeners)"),
            ]
        );
        // Different connection managers.
        let mut yaml = config("", &[tls("a.example"), tls("b.example")], "");
        let second = yaml.rfind("stat_prefix: ingress").unwrap();
        yaml.replace_range(
            second..second + "stat_prefix: ingress".len(),
            "stat_prefix: other",
        );
        let e = errors(&yaml);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].starts_with(&format!("{L}[1].filters: differs from {L}[0].filters")),
            "{e:#?}"
        );
        let e = errors(&config("", &[tls("'*'"), tls("'a.*.example'")], ""));
        assert_eq!(
            e,
            [
                format!("{L}[0].filter_chain_match.server_names[0]: \"*\" is not a server name (expected a host name or *.suffix)"),
                format!("{L}[1].filter_chain_match.server_names[0]: \"a.*.example\" is not a server name (expected a host name or *.suffix)"),
            ]
        );
    }

    fn upstream_ts(body: &str) -> String {
        format!(
            "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        '@type': {UPSTREAM_TYPE}
{body}"
        )
    }

    #[test]
    fn upstream_contexts() {
        let f = Files::new();
        let b = run(&config(
            "",
            &[String::new()],
            &upstream_ts(&format!(
                "        sni: API.example
        common_tls_context:
          alpn_protocols: [h2]
          tls_certificates: [{}]
          tls_params: {{tls_maximum_protocol_version: TLSv1_2}}
          validation_context: {{trusted_ca: {{filename: '{}'}}}}
",
                f.cert(),
                f.path("a.crt")
            )),
        ))
        .unwrap();
        let t = b.clusters[0].tls.as_ref().unwrap();
        assert_eq!(t.sni.as_deref(), Some("API.example"));
        assert_eq!(t.trusted_ca, Some(DataSource::File(f.path("a.crt").into())));
        assert!(t.verify);
        assert_eq!(t.alpn_protocols, ["h2"]);
        assert_eq!(t.versions.max, TlsVersion::Tls12);
        assert!(t.client_certificate.is_some());

        let b = run(&config(
            "",
            &[String::new()],
            &upstream_ts("        common_tls_context: {validation_context: {trust_chain_verification: ACCEPT_UNTRUSTED}}\n"),
        ))
        .unwrap();
        let t = b.clusters[0].tls.as_ref().unwrap();
        assert!(!t.verify && t.trusted_ca.is_none() && t.sni.is_none());

        // No common_tls_context at all: verification on, system roots.
        let b = run(&config("", &[String::new()], &upstream_ts(""))).unwrap();
        let t = b.clusters[0].tls.as_ref().unwrap();
        assert!(t.verify && t.trusted_ca.is_none() && t.alpn_protocols.is_empty());
        assert!(b.clusters[1..].is_empty() && b.clusters[0].tls.is_some());
    }

    #[test]
    fn upstream_errors() {
        let f = Files::new();
        let e = errors(&config(
            "",
            &[String::new()],
            &upstream_ts(&format!(
                "        sni: 'bad name'
        auto_host_sni: true
        common_tls_context:
          tls_certificates: [{c}, {c}]
          validation_context:
            trusted_ca: {{inline_string: nothing}}
            match_subject_alt_names: [{{exact: x}}]
            trust_chain_verification: MAYBE
",
                c = f.cert()
            )),
        ));
        let base = "static_resources.clusters[0].transport_socket.typed_config";
        assert_eq!(
            e,
            [
                format!("{base}.auto_host_sni: field auto_host_sni is not supported by Ringway"),
                format!("{base}.sni: \"bad name\" is not a valid server name"),
                format!("{base}.common_tls_context.tls_certificates: at most one client certificate is allowed"),
                format!("{base}.common_tls_context.validation_context.match_subject_alt_names: field match_subject_alt_names is not supported by Ringway"),
                format!("{base}.common_tls_context.validation_context.trust_chain_verification: unknown value MAYBE (expected one of VERIFY_TRUST_CHAIN, ACCEPT_UNTRUSTED)"),
            ]
        );
        let e = errors(&config(
            "",
            &[String::new()],
            &upstream_ts("        common_tls_context: {validation_context: {trusted_ca: {inline_string: nothing}}}\n"),
        ));
        assert_eq!(
            e,
            [format!("{base}.common_tls_context.validation_context.trusted_ca.inline_string: no PEM CERTIFICATE block found")]
        );
    }
}
