//! Test PKI: a CA made with rcgen per test, leaf certificates it signs, written as PEM files, and
//! the Envoy YAML that points a listener or a cluster at them. Nothing is cached between tests,
//! so a test that rotates a certificate cannot disturb another.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    /// A self-signed CA whose subject CN is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf with subject CN `cn` and the given subject alternative names (DNS names or IPs).
    pub fn leaf(&self, cn: &str, sans: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.pem).expect("write CA pem");
        p
    }
}

impl Leaf {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{stem}.crt"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, &self.cert).expect("write leaf cert");
        std::fs::write(&k, &self.key).expect("write leaf key");
        (c, k)
    }

    /// Replaces the files written by [`Leaf::write`] the way a careful operator (or a secret
    /// mounter) does: write beside, then rename over, key first, then certificate.
    pub fn replace(&self, cert: &Path, key: &Path) {
        for (path, text) in [(key, &self.key), (cert, &self.cert)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("write replacement");
            std::fs::rename(&tmp, path).expect("rename replacement into place");
        }
    }
}

/// A filter chain's `transport_socket` for `cert`/`key` files (unindented; `common_extra` goes
/// into `common_tls_context`, `extra` into the `DownstreamTlsContext`).
pub fn downstream_tls(cert: &Path, key: &Path, common_extra: &str, extra: &str) -> String {
    format!(
        "transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
    common_tls_context:
      tls_certificates:
      - certificate_chain: {{ filename: {c} }}
        private_key: {{ filename: {k} }}
{common}{extra}",
        c = cert.display(),
        k = key.display(),
        common = indent(common_extra, 6),
        extra = indent(extra, 4),
    )
}

/// A cluster's `transport_socket` (unindented) with `body` inside the `UpstreamTlsContext`.
pub fn upstream_tls(body: &str) -> String {
    format!(
        "transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{}",
        indent(body, 4)
    )
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}
