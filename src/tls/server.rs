//! TLS termination: a listener's filter chains as rustls server configs, chosen by SNI.
//!
//! A [`ListenerTls`] is immutable; a certificate reload builds a new one (with the same session
//! cache and ticket keys, see [`ChainResumption`]) and each worker swaps it in at a housekeeping
//! tick. A handshake holds an `Arc` to the snapshot it started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert,
    ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig};

use super::handshake::{self, HandshakeError};
use crate::config::{CodecType, DownstreamTls, DownstreamTlsContext};
use crate::transport::ServerTls;

/// Sessions remembered per filter chain for session-id (TLS 1.2) and stateful-ticket resumption.
/// OpenSSL's default cache holds 20,480; a chain serves one name set, so a smaller one suffices.
const SESSION_CACHE_SIZE: usize = 4096;

/// The ALPN list a listener offers when `alpn_protocols` is not set: what its codec speaks.
pub fn default_alpn(codec: CodecType) -> Vec<Vec<u8>> {
    match codec {
        CodecType::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        CodecType::Http2 => vec![b"h2".to_vec()],
        CodecType::Http1 => vec![b"http/1.1".to_vec()],
    }
}

/// One filter chain's resumption state, kept across certificate reloads.
#[derive(Clone)]
pub struct ChainResumption {
    /// Session-id cache, or rustls' no-op store when `disable_stateful_session_resumption`.
    cache: Arc<dyn StoresServerSessions>,
    /// Ticket keys (rotated by rustls every 6 h), absent when `disable_stateless_session_resumption`.
    ticketer: Option<Arc<dyn ProducesTickets>>,
}

impl ChainResumption {
    pub fn new(ctx: &DownstreamTlsContext) -> Result<ChainResumption, String> {
        let cache: Arc<dyn StoresServerSessions> = if ctx.disable_stateful_session_resumption {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)
        };
        let ticketer = if ctx.disable_stateless_session_resumption {
            None
        } else {
            Some(
                rustls::crypto::ring::Ticketer::new()
                    .map_err(|e| format!("cannot create session ticket keys: {e}"))?,
            )
        };
        Ok(ChainResumption { cache, ticketer })
    }
}

/// Picks the chain's certificate the client can verify: the first whose key signs with a scheme
/// the client offered (an RSA and an ECDSA certificate may be configured side by side).
#[derive(Debug)]
struct PickCertificate(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for PickCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(offered).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// Builds one filter chain's server config.
pub fn chain_config(
    ctx: &DownstreamTlsContext,
    codec: CodecType,
    keys: Vec<Arc<CertifiedKey>>,
    resumption: &ChainResumption,
) -> Result<Arc<ServerConfig>, String> {
    let versions = super::protocol_versions(ctx.versions);
    let mut cfg = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(PickCertificate(keys)));
    cfg.alpn_protocols = if ctx.alpn_protocols.is_empty() {
        default_alpn(codec)
    } else {
        ctx.alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect()
    };
    cfg.session_storage = resumption.cache.clone();
    match &resumption.ticketer {
        Some(t) => cfg.ticketer = t.clone(),
        None if ctx.disable_stateful_session_resumption => cfg.send_tls13_tickets = 0,
        // TLS 1.3 then resumes through tickets that name a cache entry.
        None => {}
    }
    Ok(Arc::new(cfg))
}

/// A TLS listener's filter chains, ready to pick from.
pub struct ListenerTls {
    chains: Vec<Arc<ServerConfig>>,
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored as `.example.com`.
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
    pub handshake_timeout: Duration,
}

impl ListenerTls {
    /// `configs[i]` is the server config of `tls.chains[i]`.
    pub fn new(tls: &DownstreamTls, configs: Vec<Arc<ServerConfig>>) -> ListenerTls {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for (i, chain) in tls.chains.iter().enumerate() {
            if chain.server_names.is_empty() {
                default.get_or_insert(i);
            }
            for name in &chain.server_names {
                match name.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        ListenerTls {
            chains: configs,
            exact,
            wildcard,
            default,
            handshake_timeout: tls.handshake_timeout,
        }
    }

    /// The chain for a ClientHello's server name: exact match, then the longest wildcard suffix
    /// (`*.example.com` matches `a.example.com` and `a.b.example.com`, as in Envoy), then the
    /// default chain.
    pub fn select(&self, sni: Option<&str>) -> Option<&Arc<ServerConfig>> {
        let index = sni
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                if let Some(i) = self.exact.get(&name) {
                    return Some(*i);
                }
                name.match_indices('.')
                    .find_map(|(at, _)| self.wildcard.get(&name[at..]).copied())
            })
            .or(self.default)?;
        self.chains.get(index)
    }
}

/// What the handshake agreed on, for the listener's stats.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub version: Option<ProtocolVersion>,
    pub resumed: bool,
}

/// Runs the server handshake on an accepted connection within the listener's handshake timeout.
pub async fn accept(
    tls: &ListenerTls,
    tcp: TcpStream,
) -> Result<(ServerTls, Negotiated), HandshakeError> {
    match monoio::time::timeout(tls.handshake_timeout, accept_inner(tls, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(HandshakeError::TimedOut),
    }
}

async fn accept_inner(
    tls: &ListenerTls,
    mut tcp: TcpStream,
) -> Result<(ServerTls, Negotiated), HandshakeError> {
    let accepted = handshake::read_client_hello(&mut tcp).await?;
    let Some(config) = tls.select(accepted.client_hello().server_name()) else {
        return Err(HandshakeError::NoChain);
    };
    let mut conn = match accepted.into_connection(config.clone()) {
        Ok(c) => c,
        Err((e, alert)) => {
            handshake::send_alert(&mut tcp, alert).await;
            return Err(HandshakeError::Tls(e));
        }
    };
    handshake::after_accept(&mut tcp, &mut conn).await?;
    handshake::drive(&mut tcp, &mut conn).await?;
    let negotiated = Negotiated {
        version: conn.protocol_version(),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    };
    Ok((ServerTls::new(tcp, conn), negotiated))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DataSource, TlsCertificate, TlsFilterChain, TlsVersions};

    fn ctx() -> DownstreamTlsContext {
        DownstreamTlsContext {
            certificates: vec![TlsCertificate {
                certificate_chain: DataSource::Inline(Vec::new()),
                private_key: DataSource::Inline(Vec::new()),
            }],
            alpn_protocols: Vec::new(),
            versions: TlsVersions::default(),
            disable_stateless_session_resumption: false,
            disable_stateful_session_resumption: false,
        }
    }

    fn key(name: &str) -> Arc<CertifiedKey> {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let chain = crate::tls::parse_certificates(c.pem().as_bytes()).unwrap();
        let pk = crate::tls::parse_private_key(k.serialize_pem().as_bytes()).unwrap();
        Arc::new(crate::tls::certified_key(chain, pk).unwrap())
    }

    fn listener(names: &[&[&str]]) -> ListenerTls {
        let chains: Vec<TlsFilterChain> = names
            .iter()
            .map(|n| TlsFilterChain {
                server_names: n.iter().map(|s| s.to_string()).collect(),
                context: ctx(),
            })
            .collect();
        let configs = chains
            .iter()
            .map(|c| {
                let r = ChainResumption::new(&c.context).unwrap();
                chain_config(&c.context, CodecType::Auto, vec![key("x")], &r).unwrap()
            })
            .collect();
        ListenerTls::new(
            &DownstreamTls {
                chains,
                handshake_timeout: Duration::from_secs(10),
            },
            configs,
        )
    }

    fn pick(l: &ListenerTls, sni: Option<&str>) -> Option<usize> {
        let cfg = l.select(sni)?;
        l.chains.iter().position(|c| Arc::ptr_eq(c, cfg))
    }

    #[test]
    fn sni_selection_order() {
        let l = listener(&[
            &["a.example"],
            &["*.example", "*.deep.example"],
            &[],
            &["x.deep.example"],
        ]);
        assert_eq!(pick(&l, Some("a.example")), Some(0));
        assert_eq!(pick(&l, Some("A.Example.")), Some(0));
        assert_eq!(pick(&l, Some("b.example")), Some(1));
        assert_eq!(pick(&l, Some("b.c.example")), Some(1));
        assert_eq!(pick(&l, Some("x.deep.example")), Some(3));
        assert_eq!(pick(&l, Some("y.deep.example")), Some(1));
        assert_eq!(pick(&l, Some("other.test")), Some(2));
        assert_eq!(pick(&l, Some("example")), Some(2));
        assert_eq!(pick(&l, None), Some(2));
    }

    #[test]
    fn no_default_chain_means_no_match() {
        let l = listener(&[&["a.example"]]);
        assert_eq!(pick(&l, Some("a.example")), Some(0));
        assert_eq!(pick(&l, Some("b.example")), None);
        assert_eq!(pick(&l, None), None);
    }

    #[test]
    fn alpn_and_resumption_settings() {
        let mut c = ctx();
        let r = ChainResumption::new(&c).unwrap();
        let cfg = chain_config(&c, CodecType::Http1, vec![key("x")], &r).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(cfg.ticketer.enabled());
        c.alpn_protocols = vec!["h2".into()];
        c.disable_stateless_session_resumption = true;
        c.disable_stateful_session_resumption = true;
        let r = ChainResumption::new(&c).unwrap();
        let cfg = chain_config(&c, CodecType::Auto, vec![key("x")], &r).unwrap();
        assert_eq!(cfg.alpn_protocols, [b"h2".to_vec()]);
        assert!(!cfg.ticketer.enabled());
        assert_eq!(cfg.send_tls13_tickets, 0);
        assert_eq!(
            default_alpn(CodecType::Auto),
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(default_alpn(CodecType::Http2), [b"h2".to_vec()]);
    }
}
