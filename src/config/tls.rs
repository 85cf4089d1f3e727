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

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("aGV*").is_none());
        assert!(base64_decode("aG=Vs").is_none());
    }
}
