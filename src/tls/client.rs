//! TLS origination: a cluster's `UpstreamTlsContext` as a rustls client config, and the handshake
//! any upstream pool (HTTP/1 or HTTP/2) or the health checker runs on a fresh TCP connection.
//!
//! Verification: the chain is checked against `trusted_ca` (or the system's roots) and the
//! certificate must name the server we asked for: the configured `sni`, else the endpoint's host
//! name, else (IP-literal endpoints) its IP address. This is stricter than Envoy, which checks
//! names only with `match_typed_subject_alt_names`; set `sni` when a certificate names a host other
//! than the endpoint address. `trust_chain_verification: ACCEPT_UNTRUSTED` turns chain and name
//! checks off, but the handshake signatures are still verified (the peer must hold the key of
//! the certificate it sent). Client session resumption uses rustls' in-memory store, one per
//! cluster, shared by workers (a mutex taken at handshake time only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};

use super::handshake::{self, HandshakeError};
use crate::config::{UpstreamProtocol, UpstreamTls};
use crate::transport::ClientTls;

/// A TLS cluster's client side: its rustls config and the configured `sni`.
pub struct ClusterTls {
    pub config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
}

impl ClusterTls {
    /// Builds the client config (roots, verifier, ALPN, versions, client certificate).
    pub fn new(tls: &UpstreamTls, protocol: UpstreamProtocol) -> Result<ClusterTls, String> {
        let provider = super::provider();
        let versions = super::protocol_versions(tls.versions);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if tls.verify {
            let roots = match &tls.trusted_ca {
                Some(src) => Arc::new(
                    super::read_source(src)
                        .and_then(|pem| super::parse_roots(&pem))
                        .map_err(|e| format!("trusted_ca: {e}"))?,
                ),
                None => super::system_roots(),
            };
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("trusted_ca: {e}"))?;
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptUntrusted(provider)))
        };
        let mut config = match &tls.client_certificate {
            Some(c) => {
                let key = super::load_certificate(c)?;
                builder
                    .with_client_auth_cert(key.cert.clone(), load_key_der(c)?)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if tls.alpn_protocols.is_empty() {
            match protocol {
                UpstreamProtocol::Http2(_) => vec![b"h2".to_vec()],
                UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            }
        } else {
            tls.alpn_protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect()
        };
        let sni = match &tls.sni {
            Some(s) => {
                Some(ServerName::try_from(s.clone()).map_err(|e| format!("sni {s:?}: {e}"))?)
            }
            None => None,
        };
        Ok(ClusterTls {
            config: Arc::new(config),
            sni,
        })
    }

    /// The name to send and verify for an endpoint: `sni`, else its host name, else its address.
    pub fn server_name(&self, hostname: &str, addr: SocketAddr) -> ServerName<'static> {
        if let Some(s) = &self.sni {
            return s.clone();
        }
        ServerName::try_from(hostname.to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
    }
}

/// The private key of a client certificate, read again: `CertifiedKey` keeps only a signer.
fn load_key_der(
    c: &crate::config::TlsCertificate,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    super::read_source(&c.private_key)
        .and_then(|b| super::parse_private_key(&b))
        .map_err(|e| format!("private_key: {e}"))
}

/// What the upstream handshake agreed on, for the cluster's stats.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub resumed: bool,
}

/// Runs the client handshake on a connected TCP stream within `timeout`.
pub async fn handshake(
    config: &Arc<ClientConfig>,
    server_name: ServerName<'static>,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<(ClientTls, Negotiated), HandshakeError> {
    let mut conn =
        ClientConnection::new(config.clone(), server_name).map_err(HandshakeError::Tls)?;
    match monoio::time::timeout(timeout, handshake::drive(&mut tcp, &mut conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(HandshakeError::TimedOut),
    }
    let negotiated = Negotiated {
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    };
    Ok((ClientTls::new(tcp, conn), negotiated))
}

/// A blocking TLS stream for the health checker (its socket timeouts bound the handshake).
pub fn blocking(
    config: &Arc<ClientConfig>,
    server_name: ServerName<'static>,
    mut tcp: std::net::TcpStream,
) -> Result<rustls::StreamOwned<ClientConnection, std::net::TcpStream>, std::io::Error> {
    let mut conn = ClientConnection::new(config.clone(), server_name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// `ACCEPT_UNTRUSTED`: any certificate chain and name, but a valid handshake signature.
#[derive(Debug)]
struct AcceptUntrusted(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptUntrusted {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DataSource, TlsVersions};

    fn upstream(sni: Option<&str>, verify: bool) -> UpstreamTls {
        UpstreamTls {
            sni: sni.map(str::to_string),
            trusted_ca: None,
            verify,
            alpn_protocols: Vec::new(),
            versions: TlsVersions::default(),
            client_certificate: None,
        }
    }

    #[test]
    fn alpn_follows_the_cluster_protocol() {
        let t = ClusterTls::new(&upstream(None, true), UpstreamProtocol::Http1).unwrap();
        assert_eq!(t.config.alpn_protocols, [b"http/1.1".to_vec()]);
        let h2 = UpstreamProtocol::Http2(Default::default());
        let t = ClusterTls::new(&upstream(None, false), h2).unwrap();
        assert_eq!(t.config.alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn server_name_choice() {
        let addr: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let t = ClusterTls::new(&upstream(None, true), UpstreamProtocol::Http1).unwrap();
        assert_eq!(
            t.server_name("api.example", addr),
            ServerName::try_from("api.example").unwrap()
        );
        assert!(matches!(
            t.server_name("10.0.0.1", addr),
            ServerName::IpAddress(_)
        ));
        let t = ClusterTls::new(
            &upstream(Some("pinned.example"), true),
            UpstreamProtocol::Http1,
        )
        .unwrap();
        assert_eq!(
            t.server_name("10.0.0.1", addr),
            ServerName::try_from("pinned.example").unwrap()
        );
    }

    #[test]
    fn bad_trusted_ca_is_an_error() {
        let mut u = upstream(None, true);
        u.trusted_ca = Some(DataSource::Inline(b"not pem".to_vec()));
        let e = ClusterTls::new(&u, UpstreamProtocol::Http1).err().unwrap();
        assert!(e.starts_with("trusted_ca: "), "{e}");
    }
}
