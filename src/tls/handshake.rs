//! The TLS handshake loop over a monoio TCP stream, for both sides.
//!
//! monoio-rustls keeps its own handshake private and takes the server config before the first
//! byte is read; Ringway needs the ClientHello first (to pick a filter chain by SNI) and needs to
//! tell a certificate verification failure from a reset for its stats. So the loop is ours: read
//! into an owned buffer, feed rustls, write what it wants written, until the handshake is done.
//! The finished rustls connection and the TCP stream are then handed to monoio-rustls' stream
//! type, which carries application data. Deadlines are applied by the callers around the whole
//! handshake (dropping the future cancels the pending read: monoio's `async-cancel`).

use std::io;
use std::ops::DerefMut;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::{Accepted, Acceptor};
use rustls::{ConnectionCommon, SideData};

/// Bytes read per handshake read: a full TLS record plus its header and tag.
const READ_CHUNK: usize = 16 * 1024 + 512;

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer closed the connection before the handshake finished.
    Closed,
    Io(io::Error),
    /// The TLS protocol failed (bad message, no common version or cipher, alert received, ...).
    Tls(rustls::Error),
    /// The peer's certificate did not verify (client side only).
    Verify(rustls::Error),
    /// No filter chain matches the client's SNI and the listener has no default chain.
    NoChain,
    TimedOut,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Closed => write!(f, "peer closed during the TLS handshake"),
            HandshakeError::Io(e) => write!(f, "I/O error during the TLS handshake: {e}"),
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::Verify(e) => write!(f, "certificate verification failed: {e}"),
            HandshakeError::NoChain => write!(f, "no filter chain matches the server name"),
            HandshakeError::TimedOut => write!(f, "TLS handshake timed out"),
        }
    }
}

fn classify(e: rustls::Error) -> HandshakeError {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            HandshakeError::Verify(e)
        }
        other => HandshakeError::Tls(other),
    }
}

/// One read from `tcp`; `Closed` on EOF.
async fn read_some(tcp: &mut TcpStream, buf: Vec<u8>) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = buf;
    buf.clear();
    let (res, buf) = tcp.read(buf).await;
    match res {
        Ok(0) => Err(HandshakeError::Closed),
        Ok(_) => Ok(buf),
        Err(e) => Err(HandshakeError::Io(e)),
    }
}

async fn write_bytes(tcp: &mut TcpStream, out: Vec<u8>) -> Result<(), HandshakeError> {
    if out.is_empty() {
        return Ok(());
    }
    let (res, _) = tcp.write_all(out).await;
    res.map(|_| ()).map_err(HandshakeError::Io)
}

/// Writes everything rustls has queued (handshake messages, tickets, alerts).
async fn flush<C, SD>(tcp: &mut TcpStream, conn: &mut C) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    while conn.wants_write() {
        let mut out = Vec::with_capacity(4096);
        while conn.wants_write() {
            conn.write_tls(&mut out).map_err(HandshakeError::Io)?;
        }
        write_bytes(tcp, out).await?;
    }
    Ok(())
}

/// Feeds `bytes` to rustls, processing records as they complete so its buffers stay small.
async fn feed<C, SD>(tcp: &mut TcpStream, conn: &mut C, bytes: &[u8]) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut rd = bytes;
    while !rd.is_empty() {
        conn.read_tls(&mut rd).map_err(HandshakeError::Io)?;
        if let Err(e) = conn.process_new_packets() {
            // rustls queued an alert saying why; the peer deserves to see it.
            let _ = flush(tcp, conn).await;
            return Err(classify(e));
        }
    }
    Ok(())
}

/// Drives `conn` until its handshake is complete (and whatever it wants sent then is sent).
pub async fn drive<C, SD>(tcp: &mut TcpStream, conn: &mut C) -> Result<(), HandshakeError>
where
    C: DerefMut<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        flush(tcp, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        buf = read_some(tcp, buf).await?;
        feed(tcp, conn, &buf).await?;
    }
}

/// Reads until the client's ClientHello is complete.
pub async fn read_client_hello(tcp: &mut TcpStream) -> Result<Accepted, HandshakeError> {
    let mut acceptor = Acceptor::default();
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        buf = read_some(tcp, buf).await?;
        let mut rd = &buf[..];
        while !rd.is_empty() {
            acceptor.read_tls(&mut rd).map_err(HandshakeError::Io)?;
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => return Ok(accepted),
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                let _ = write_bytes(tcp, out).await;
                return Err(classify(e));
            }
        }
    }
}

/// Sends the alert rustls prepared when a chosen config refused the ClientHello.
pub async fn send_alert(tcp: &mut TcpStream, mut alert: rustls::server::AcceptedAlert) {
    let mut out = Vec::new();
    let _ = alert.write_all(&mut out);
    let _ = write_bytes(tcp, out).await;
}

/// Processes whatever arrived together with the ClientHello, before the server's first flight.
pub async fn after_accept(
    tcp: &mut TcpStream,
    conn: &mut rustls::ServerConnection,
) -> Result<(), HandshakeError> {
    if let Err(e) = conn.process_new_packets() {
        let _ = flush(tcp, conn).await;
        return Err(classify(e));
    }
    Ok(())
}
