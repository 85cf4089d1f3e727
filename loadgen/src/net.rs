//! The byte stream under a load connection: plain TCP or TLS (rustls driven by monoio-rustls),
//! plus the client TLS configuration built once per run from the command line.
//!
//! One enum rather than generics so that the HTTP/1.1 loop keeps its cancelable io_uring fast
//! path on plain TCP and the HTTP/2 client (through `monoio_compat::StreamWrapper`) is compiled
//! once. Session resumption uses rustls' in-memory client session store, shared by every
//! connection of the run (rustls takes its mutex at handshake time only, never per request), so
//! reconnects after the first full handshake resume.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    SignatureScheme,
};

pub type ClientTls = monoio_rustls::ClientTlsStream<TcpStream>;

/// Where the system keeps its CA bundle (Debian/Ubuntu layout).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Sessions kept for resumption: one target, so a few suffice.
const SESSION_CACHE: usize = 256;
/// One TLS record and its header per handshake read.
const READ_CHUNK: usize = 16 * 1024 + 512;

/// TLS of a run: the shared client config and the name sent (SNI) and verified.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// What `--tls-version`, `--insecure`, `--cacert` and `--no-resumption` ask for.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub tls13: bool,
    pub insecure: bool,
    pub cacert: Option<std::path::PathBuf>,
    pub resumption: bool,
}

impl Tls {
    /// Builds the client config; `alpn` is `h2` or `http/1.1`.
    pub fn new(opts: &TlsOptions, host: &str, alpn: &[u8]) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let version: &[&rustls::SupportedProtocolVersion] = if opts.tls13 {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(version)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            let (path, what) = match &opts.cacert {
                Some(p) => (p.clone(), "--cacert"),
                None => (SYSTEM_CA_BUNDLE.into(), "the system CA bundle"),
            };
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("{what} {}: {e}", path.display()))?;
                roots.add(c).map_err(|e| {
                    format!("{what} {}: unusable CA certificate: {e}", path.display())
                })?;
            }
            if roots.is_empty() {
                return Err(format!("{what} {} holds no certificate", path.display()));
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{what}: {e}"))?;
            builder.with_webpki_verifier(verifier)
        };
        let mut config = builder.with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = if opts.resumption {
            Resumption::store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE)))
        } else {
            Resumption::disabled()
        };
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// A connected stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTls>),
}

/// TCP connect (and TLS handshake) before `deadline`.
pub async fn connect(addr: SocketAddr, tls: Option<&Tls>, deadline: Instant) -> Result<Stream, ()> {
    let at = monoio::time::Instant::from_std(deadline);
    let tcp = match monoio::time::timeout_at(at, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        _ => return Err(()),
    };
    // Requests are tiny and latency-bound: never wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
        .map_err(|e| report_once(&format!("TLS handshake failed: {e}")))?;
    let mut tcp = tcp;
    match monoio::time::timeout_at(at, handshake(&mut tcp, &mut conn)).await {
        Ok(Ok(())) => {
            let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
            HANDSHAKES.with(|h| {
                let (full, res) = h.get();
                h.set(if resumed {
                    (full, res + 1)
                } else {
                    (full + 1, res)
                });
            });
            Ok(Stream::Tls(Box::new(ClientTls::new(tcp, conn))))
        }
        Ok(Err(e)) => {
            // Report once per distinct reason: a certificate problem would otherwise be a bare
            // connect-error count.
            report_once(&format!("TLS handshake failed: {e}"));
            Err(())
        }
        Err(_) => Err(()),
    }
}

thread_local! {
    /// (full, resumed) TLS handshakes completed on this worker thread.
    static HANDSHAKES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// (full, resumed) TLS handshakes completed on this thread so far.
pub fn handshakes() -> (u64, u64) {
    HANDSHAKES.with(|h| h.get())
}

/// Drive the client handshake to completion. Every byte read is handed to rustls (which buffers
/// what follows the handshake), so nothing is lost when the stream is wrapped afterwards.
async fn handshake(tcp: &mut TcpStream, conn: &mut ClientConnection) -> Result<(), String> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        while conn.wants_write() {
            let mut out = Vec::with_capacity(4096);
            while conn.wants_write() {
                conn.write_tls(&mut out).map_err(|e| e.to_string())?;
            }
            let (res, _) = tcp.write_all(out).await;
            res.map_err(|e| format!("write: {e}"))?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        buf.clear();
        let (res, b) = tcp.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            conn.read_tls(&mut rd).map_err(|e| e.to_string())?;
            if let Err(e) = conn.process_new_packets() {
                // Let the server see our alert before the connection goes.
                while conn.wants_write() {
                    let mut out = Vec::new();
                    if conn.write_tls(&mut out).is_err() {
                        break;
                    }
                    let _ = tcp.write_all(out).await;
                }
                return Err(e.to_string());
            }
        }
    }
}

/// Print a connection failure reason the first time it is seen on this thread.
pub fn report_once(msg: &str) {
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        if !s.iter().any(|m| m == msg) && s.len() < 8 {
            eprintln!("{msg}");
            s.push(msg.to_string());
        }
    });
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        }
    }
}

/// `--insecure`: any certificate chain and name, but a valid handshake signature.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
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
