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
///
/// The check compares the key's public half with the leaf's SubjectPublicKeyInfo, read straight
/// from the DER: rustls' own check parses the certificate with webpki, which refuses X.509 v1
/// certificates, and those are still what `openssl req -x509` made for years (Envoy's own
/// front-proxy example serves one). A server only sends its certificate, so v1 is fine to serve.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| "no certificate in the chain".to_string())?;
    let spki = leaf_spki(leaf.as_ref())
        .ok_or_else(|| "the first certificate is not a DER X.509 certificate".to_string())?;
    if let Some(public) = signer.public_key() {
        if public.as_ref() != spki {
            return Err("the private key does not match the certificate's public key".into());
        }
    }
    Ok(CertifiedKey::new(chain, signer))
}

/// One DER element of a larger input.
struct Der<'a> {
    tag: u8,
    content: &'a [u8],
    /// The element with its tag and length.
    whole: &'a [u8],
    /// What follows the element.
    rest: &'a [u8],
}

fn der_element(input: &[u8]) -> Option<Der<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some(Der {
        tag,
        content: input.get(header..end)?,
        whole: input.get(..end)?,
        rest: input.get(end..)?,
    })
}

/// The SubjectPublicKeyInfo element of a certificate (any X.509 version).
fn leaf_spki(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let certificate = der_element(cert).filter(|d| d.tag == SEQUENCE)?;
    let tbs = der_element(certificate.content).filter(|d| d.tag == SEQUENCE)?;
    let mut rest = tbs.content;
    let first = der_element(rest)?;
    if first.tag == VERSION {
        rest = first.rest;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der_element(rest)?.rest;
    }
    der_element(rest)
        .filter(|d| d.tag == SEQUENCE)
        .map(|d| d.whole)
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
        // Valid base64 that is no certificate.
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        let e = certified_key(
            parse_certificates(junk.as_bytes()).unwrap(),
            parse_private_key(k1.as_bytes()).unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("not a DER X.509"), "{e}");
    }

    #[test]
    fn x509_v1_certificates_are_served() {
        // Envoy's front-proxy example: an X.509 v1 certificate (no extensions) and its RSA key.
        let yaml = include_str!("../../examples/envoy-front-proxy.yaml");
        let block = |begin: &str, end: &str| -> String {
            let start = yaml.find(begin).unwrap();
            let stop = yaml.find(end).unwrap() + end.len();
            yaml[start..stop]
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let cert = block("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
        let key = block("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----");
        let chain = parse_certificates(cert.as_bytes()).unwrap();
        assert!(leaf_spki(chain[0].as_ref()).is_some());
        certified_key(chain.clone(), parse_private_key(key.as_bytes()).unwrap()).unwrap();
        let (_, other) = leaf("x");
        let e = certified_key(chain, parse_private_key(other.as_bytes()).unwrap()).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
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
