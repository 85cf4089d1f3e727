//! The byte stream under a connection: plain TCP or TLS (server or client side).
//!
//! Every codec above (HTTP/1.1 in `proxy`, HTTP/2 through `http2::pooled_io`) reads and writes through
//! [`Transport`], so TLS is a property of the connection rather than a second copy of each codec.
//! An enum rather than a generic keeps the proxy's functions monomorphic: one copy of the
//! request path in the binary, and a predictable branch per I/O call instead of code bloat.

use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

pub type ServerTls = monoio_rustls::ServerTlsStream<TcpStream>;
pub type ClientTls = monoio_rustls::ClientTlsStream<TcpStream>;

pub enum Transport {
    Plain(TcpStream),
    /// A downstream connection after a completed TLS handshake.
    ServerTls(Box<ServerTls>),
    /// An upstream connection after a completed TLS handshake.
    ClientTls(Box<ClientTls>),
}

// SAFETY: `Split` promises that reading and writing may run at the same time through the two
// halves of `into_split`. Each variant is `Split` by its own crate (monoio's `TcpStream`, and
// monoio-rustls' `Stream<IO: Split, C>`), and the enum adds no state of its own: every read
// and write is dispatched to the variant. `http2::pooled_io` relies on this; its tests run a
// read and a write in flight together over plain TCP and over TLS.
#[allow(unsafe_code)]
unsafe impl monoio::io::Split for Transport {}

impl Transport {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }

    /// The protocol the TLS handshake agreed on through ALPN (`None` for plain TCP or no ALPN).
    pub fn alpn(&self) -> Option<Vec<u8>> {
        match self {
            Transport::Plain(_) => None,
            Transport::ServerTls(s) => s.alpn_protocol(),
            Transport::ClientTls(s) => s.alpn_protocol(),
        }
    }
}

impl AsyncReadRent for Transport {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::ServerTls(s) => s.read(buf).await,
            Transport::ClientTls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.readv(buf).await,
            Transport::ServerTls(s) => s.readv(buf).await,
            Transport::ClientTls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Transport {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.write(buf).await,
            Transport::ServerTls(s) => s.write(buf).await,
            Transport::ClientTls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.writev(buf).await,
            Transport::ServerTls(s) => s.writev(buf).await,
            Transport::ClientTls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush().await,
            Transport::ServerTls(s) => s.flush().await,
            Transport::ClientTls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::ServerTls(s) => s.shutdown().await,
            Transport::ClientTls(s) => s.shutdown().await,
        }
    }
}
