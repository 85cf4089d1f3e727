//! TLS with rustls (ring provider): termination on listeners, origination to clusters, and
//! certificate reload, all built off the request path.
//!
//! - `server.rs`: one [`server::ListenerTls`] per TLS listener, an immutable snapshot holding one
//!   rustls `ServerConfig` per filter chain. The handshake reads the ClientHello first (rustls'
//!   `Acceptor`), picks the chain by SNI (exact name, then `*.suffix` wildcards from the longest
//!   suffix, then the chain without `server_names`) and only then commits to that chain's config,
//!   so chains may differ in certificates, ALPN, versions and resumption settings.
//! - `client.rs`: one `ClientConfig` per TLS cluster and the upstream handshake, callable from any
//!   pool (HTTP/1 here, HTTP/2 elsewhere) and, blocking, from the health checker.
//! - `reload.rs`: the `ringway-tls` thread re-reads certificate files every second and publishes
//!   rebuilt snapshots to each worker over its own channel; workers adopt them in housekeeping.
//! - `handshake.rs`: the handshake loop itself, over monoio's owned-buffer TCP stream.
//!
//! Session resumption is shared per filter chain across workers: a returning client is hashed by
//! SO_REUSEPORT to an arbitrary worker, so a per-worker cache would miss most of the time. rustls'
//! session cache and ticket-key rotator each take a mutex, but only during a handshake and only for
//! a lookup or an insert, never per request; contention is bounded by the handshake rate. The
//! cache and ticket keys outlive certificate reloads, so clients resume across a reload.
//!
//! rustls speaks TLS 1.2 and 1.3 only; the config walk refuses lower versions.

pub mod client;
pub mod handshake;
pub mod reload;
pub mod server;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{DataSource, TlsVersion, TlsVersions};

/// The process-wide crypto provider (ring), built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls versions between `v.min` and `v.max`.
pub fn protocol_versions(v: TlsVersions) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::with_capacity(2);
    if v.min <= TlsVersion::Tls13 && v.max >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    if v.min <= TlsVersion::Tls12 && v.max >= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The bytes of a `DataSource` (a file is read now; inline data as written).
pub fn read_source(src: &DataSource) -> Result<Vec<u8>, String> {
    match src {
        DataSource::Inline(b) => Ok(b.clone()),
        DataSource::File(p) => {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        }
    }
}

/// Every `CERTIFICATE` block of a PEM document, in order (leaf first for a chain).
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        out.push(c.map_err(|e| format!("invalid PEM certificate: {e}"))?);
    }
    if out.is_empty() {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(out)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM document.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM PRIVATE KEY block found (PKCS#8, RSA or EC)".to_string()
        }
        other => format!("invalid PEM private key: {other}"),
    })
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate's public key".to_string()
        }
        other => format!("unusable certificate or key: {other}"),
    })
}

/// Reads and checks a `TlsCertificate` (used at start-up and on every reload).
pub fn load_certificate(c: &crate::config::TlsCertificate) -> Result<CertifiedKey, String> {
    let chain = read_source(&c.certificate_chain)
        .and_then(|b| parse_certificates(&b))
        .map_err(|e| format!("certificate_chain: {e}"))?;
    let key = read_source(&c.private_key)
        .and_then(|b| parse_private_key(&b))
        .map_err(|e| format!("private_key: {e}"))?;
    certified_key(chain, key)
}

/// A trust store from PEM CA certificates.
pub fn parse_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in parse_certificates(pem)? {
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// The system's trust store (`/etc/ssl/certs/ca-certificates.crt`), or the Mozilla roots that
/// webpki-roots carries when the system has none; read once per process.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let from_system = std::fs::read(SYSTEM_CA_BUNDLE)
                .ok()
                .and_then(|pem| parse_roots(&pem).ok())
                .filter(|r| !r.is_empty());
            Arc::new(from_system.unwrap_or_else(|| RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }))
        })
        .clone()
}

pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaf(name: &str) -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    }

    #[test]
    fn pem_parsing_and_key_matching() {
        let (c1, k1) = leaf("a.example");
        let (_, k2) = leaf("b.example");
        let chain = parse_certificates(c1.as_bytes()).unwrap();
        assert_eq!(chain.len(), 1);
        certified_key(chain.clone(), parse_private_key(k1.as_bytes()).unwrap()).unwrap();
        let e = certified_key(chain, parse_private_key(k2.as_bytes()).unwrap()).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(parse_certificates(b"hello")
            .unwrap_err()
            .contains("no PEM CERTIFICATE"));
        assert!(parse_private_key(c1.as_bytes())
            .unwrap_err()
            .contains("no PEM PRIVATE KEY"));
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(parse_certificates(bad.as_bytes()).is_err());
    }

    #[test]
    fn versions() {
        let both = protocol_versions(TlsVersions::default());
        assert_eq!(both.len(), 2);
        let only13 = protocol_versions(TlsVersions {
            min: TlsVersion::Tls13,
            max: TlsVersion::Tls13,
        });
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
    }

    #[test]
    fn system_roots_are_never_empty() {
        assert!(!system_roots().is_empty());
    }
}
