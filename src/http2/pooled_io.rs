//! The tokio byte-stream traits `h2` is written against, over a [`Transport`]'s completion-based
//! I/O, holding large buffers only while bytes move.
//!
//! io_uring reads and writes own their buffer until the kernel is done with it, so an adapter
//! keeps one buffer per operation in flight. `monoio_compat::StreamWrapper` allocates two 16 KiB
//! buffers with each connection and keeps them for its life, which made them most of an idle
//! HTTP/2 connection's memory. Here:
//!
//! - an idle connection's pending read holds a small buffer of its own ([`IDLE_READ`] bytes);
//!   a read that fills it is followed by reads into a buffer borrowed from the worker's
//!   [`BufPool`], until one comes back short (the socket is drained) and the buffer goes back;
//! - a write copies `h2`'s bytes into a pooled buffer, which returns to the pool as soon as the
//!   kernel has written all of it. `poll_write` answers `Ready` once the copy is made (the write
//!   runs behind, as `StreamWrapper`'s did), so `h2` can encode its next frames meanwhile;
//!   `poll_flush` waits for it.
//!
//! Reads and writes run at once (`h2` polls both), on the two halves of the transport: each
//! operation is one boxed future, reused from one operation to the next, that owns its half and
//! its buffer and hands both back when it completes.
//!
//! [`BufPool`]: crate::bufpool::BufPool

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use reusable_box_future::ReusableLocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::bufpool::SharedBufPool;
use crate::transport::Transport;

/// The buffer an idle connection's pending read holds: enough for a request's HEADERS frame
/// after the first (HPACK makes them small), so a quiet connection's requests are read in one
/// go without a pooled buffer.
pub const IDLE_READ: usize = 1024;

type ReadHalf = OwnedReadHalf<Transport>;
type WriteHalf = OwnedWriteHalf<Transport>;

/// A finished read: the half and buffer come back with the result.
struct ReadDone {
    half: ReadHalf,
    buf: Vec<u8>,
    result: io::Result<usize>,
}

async fn read_into(mut half: ReadHalf, mut buf: Vec<u8>) -> ReadDone {
    buf.clear();
    let (result, buf) = half.read(buf).await;
    ReadDone { half, buf, result }
}

/// What the write side runs; one future type for all three so the reused box keeps its layout.
enum WriteOp {
    Write(Vec<u8>),
    Flush,
    Shutdown,
}

struct WriteDone {
    half: WriteHalf,
    buf: Option<Vec<u8>>,
    result: io::Result<()>,
}

async fn run_write(mut half: WriteHalf, op: WriteOp) -> WriteDone {
    match op {
        WriteOp::Write(buf) => {
            let (result, buf) = half.write_all(buf).await;
            WriteDone {
                half,
                buf: Some(buf),
                result: result.map(drop),
            }
        }
        WriteOp::Flush => {
            let result = half.flush().await;
            WriteDone {
                half,
                buf: None,
                result,
            }
        }
        WriteOp::Shutdown => {
            let result = half.shutdown().await;
            WriteDone {
                half,
                buf: None,
                result,
            }
        }
    }
}

/// The read side: its half and buffer are either here or inside the in-flight future.
struct Reader {
    half: Option<ReadHalf>,
    /// Bytes read and not yet handed to the codec are `buf[pos..]`.
    buf: Option<Vec<u8>>,
    pos: usize,
    /// `buf` is borrowed from the pool (else it is the connection's own small buffer).
    lent: bool,
    /// The connection's small buffer, parked while a pooled one is in use.
    own: Option<Vec<u8>>,
    op: ReusableLocalBoxFuture<ReadDone>,
    in_flight: bool,
}

struct Writer {
    half: Option<WriteHalf>,
    op: ReusableLocalBoxFuture<WriteDone>,
    in_flight: bool,
}

/// A transport as `AsyncRead + AsyncWrite`, borrowing large buffers from its worker's pool.
pub struct PooledIo {
    reader: Reader,
    writer: Writer,
    bufs: SharedBufPool,
    /// TLS keeps records above the socket that a flush must push out; plain TCP does not.
    tls: bool,
}

impl PooledIo {
    pub fn new(stream: Transport, bufs: SharedBufPool) -> PooledIo {
        let tls = stream.is_tls();
        let (read_half, write_half) = stream.into_split();
        PooledIo {
            reader: Reader {
                half: Some(read_half),
                buf: Some(Vec::with_capacity(IDLE_READ)),
                pos: 0,
                lent: false,
                own: None,
                op: ReusableLocalBoxFuture::new(async { unreachable_read() }),
                in_flight: false,
            },
            writer: Writer {
                half: Some(write_half),
                op: ReusableLocalBoxFuture::new(async { unreachable_write() }),
                in_flight: false,
            },
            bufs,
            tls,
        }
    }

    /// Whether a pooled buffer is held right now (read burst or write in flight); for tests.
    #[cfg(test)]
    fn holds_pooled(&self) -> bool {
        self.reader.lent || self.writer.in_flight
    }

    /// Chooses the buffer for the next read, once everything read so far was handed out: a
    /// read that filled its buffer suggests more is waiting (read into a pooled one); a short
    /// read means the socket was drained (go back to the small one, give the pooled one back).
    fn next_read_buffer(&mut self) -> Vec<u8> {
        let r = &mut self.reader;
        let buf = r.buf.take().unwrap_or_default();
        let filled = !buf.is_empty() && buf.len() == buf.capacity();
        r.pos = 0;
        match (r.lent, filled) {
            (true, false) => {
                self.bufs.borrow_mut().give(buf);
                r.lent = false;
                r.own
                    .take()
                    .unwrap_or_else(|| Vec::with_capacity(IDLE_READ))
            }
            (false, true) => {
                r.own = Some(buf);
                r.lent = true;
                self.bufs.borrow_mut().take()
            }
            _ => buf,
        }
    }

    /// Drives the write side's operation in flight to its end; `Ready(Ok)` when none is left.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.writer.in_flight {
            return Poll::Ready(Ok(()));
        }
        let done = match self.writer.op.poll(cx) {
            Poll::Ready(done) => done,
            Poll::Pending => return Poll::Pending,
        };
        self.writer.in_flight = false;
        self.writer.half = Some(done.half);
        if let Some(buf) = done.buf {
            self.bufs.borrow_mut().give(buf);
        }
        Poll::Ready(done.result)
    }

    /// Starts `op` on the write side (nothing may be in flight) and polls it once.
    fn start_write(&mut self, op: WriteOp, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(half) = self.writer.half.take() else {
            return Poll::Ready(Err(io::Error::other("write side closed")));
        };
        self.writer.op.set(run_write(half, op));
        self.writer.in_flight = true;
        self.poll_write_side(cx)
    }
}

fn unreachable_read() -> ReadDone {
    // The initial futures only give the reusable boxes a value; `in_flight` is false until a
    // real operation replaces them, so they are never polled.
    unreachable!("placeholder read polled")
}

fn unreachable_write() -> WriteDone {
    unreachable!("placeholder write polled")
}

impl AsyncRead for PooledIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.reader.in_flight {
                let r = &mut this.reader;
                if let Some(buf) = &r.buf {
                    if r.pos < buf.len() {
                        let n = (buf.len() - r.pos).min(out.remaining());
                        out.put_slice(&buf[r.pos..r.pos + n]);
                        r.pos += n;
                        return Poll::Ready(Ok(()));
                    }
                }
                let buf = this.next_read_buffer();
                let Some(half) = this.reader.half.take() else {
                    return Poll::Ready(Err(io::Error::other("read side closed")));
                };
                this.reader.op.set(read_into(half, buf));
                this.reader.in_flight = true;
            }
            let done = match this.reader.op.poll(cx) {
                Poll::Ready(done) => done,
                Poll::Pending => return Poll::Pending,
            };
            let r = &mut this.reader;
            r.in_flight = false;
            r.half = Some(done.half);
            r.buf = Some(done.buf);
            r.pos = 0;
            match done.result {
                // End of stream: nothing put in `out` tells the codec so.
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for PooledIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        match this.poll_write_side(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let mut buf = this.bufs.borrow_mut().take();
        let n = data.len().min(buf.capacity().max(1));
        buf.extend_from_slice(&data[..n]);
        match this.start_write(WriteOp::Write(buf), cx) {
            // Written already, or running behind: the bytes are ours either way.
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_write_side(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        // Plain TCP has nothing buffered above the socket; TLS may hold records to send.
        if !this.tls {
            return Poll::Ready(Ok(()));
        }
        this.start_write(WriteOp::Flush, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_write_side(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.start_write(WriteOp::Shutdown, cx)
    }
}

#[cfg(test)]
mod tests {
    //! The adapter over real sockets: a read and a write in flight together (the `Split`
    //! promise `Transport` makes), over plain TCP and over TLS, and the buffer lending an idle
    //! connection's memory depends on.
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use monoio::net::{TcpListener, TcpStream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::bufpool::BufPool;

    const POOLED: usize = 16 * 1024;

    fn pool() -> SharedBufPool {
        Rc::new(RefCell::new(BufPool::new(POOLED, 8)))
    }

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = monoio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// The peer echoes everything; the adapter writes `data` while reading the echo back, so
    /// the write side and read side are in flight at once. Returns what came back.
    async fn echo_through(io: &mut PooledIo, data: &[u8]) -> Vec<u8> {
        let mut back = Vec::with_capacity(data.len());
        let mut chunk = vec![0u8; 7000];
        let mut sent = 0;
        while back.len() < data.len() {
            let want_write = sent < data.len();
            let (r, w) = {
                let (rd, wr) = tokio::io::split(&mut *io);
                let mut rd = rd;
                let mut wr = wr;
                let read = async { rd.read(&mut chunk).await };
                let write = async {
                    if want_write {
                        let end = (sent + 5000).min(data.len());
                        wr.write_all(&data[sent..end]).await.map(|_| end)
                    } else {
                        std::future::pending().await
                    }
                };
                monoio::select! {
                    r = read => (Some(r), None),
                    w = write => (None, Some(w)),
                }
            };
            if let Some(r) = r {
                let n = r.expect("read");
                assert!(n > 0, "peer closed early");
                back.extend_from_slice(&chunk[..n]);
            }
            if let Some(w) = w {
                sent = w.expect("write");
            }
        }
        io.flush().await.expect("flush");
        back
    }

    async fn echo_peer<S: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent>(mut s: S) {
        let mut buf = vec![0u8; 3000];
        loop {
            let (r, b) = s.read(buf).await;
            buf = b;
            let n = match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let (r, b) = s.write_all(buf.split_off(0)[..n].to_vec()).await;
            if r.is_err() {
                return;
            }
            buf = b;
            buf.resize(3000, 0);
        }
    }

    #[test]
    fn plain_read_and_write_in_flight_together() {
        runtime().block_on(async {
            let (client, server) = tcp_pair().await;
            monoio::spawn(echo_peer(server));
            let bufs = pool();
            let mut io = PooledIo::new(Transport::Plain(client), bufs.clone());
            let data = pattern(1 << 20);
            assert_eq!(echo_through(&mut io, &data).await, data);
            // Nothing in flight but the idle read: no pooled buffer held, and the ones lent
            // came back to the pool.
            assert!(!io.writer.in_flight);
            assert!(
                bufs.borrow().idle() >= 1,
                "pooled buffers were not given back"
            );
        });
    }

    #[test]
    fn tls_read_and_write_in_flight_together() {
        runtime().block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["pooled.test".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let chain = crate::tls::parse_certificates(cert.pem().as_bytes()).unwrap();
            let pk = crate::tls::parse_private_key(key.serialize_pem().as_bytes()).unwrap();
            let server_cfg = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain.clone(), pk)
                .unwrap();
            let mut roots = rustls::RootCertStore::empty();
            roots.add(chain[0].clone()).unwrap();
            let client_cfg = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let acceptor = monoio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
            let connector = monoio_rustls::TlsConnector::from(Arc::new(client_cfg));
            let (client, server) = tcp_pair().await;
            let name = rustls::pki_types::ServerName::try_from("pooled.test").unwrap();
            let (c, s) = monoio::join!(connector.connect(name, client), acceptor.accept(server));
            monoio::spawn(echo_peer(s.expect("server handshake")));
            let bufs = pool();
            let transport = Transport::ClientTls(Box::new(c.expect("client handshake")));
            let mut io = PooledIo::new(transport, bufs.clone());
            let data = pattern(1 << 20);
            assert_eq!(echo_through(&mut io, &data).await, data);
            assert!(!io.writer.in_flight);
        });
    }

    #[test]
    fn a_quiet_connection_holds_only_its_small_buffer() {
        runtime().block_on(async {
            let (client, server) = tcp_pair().await;
            let bufs = pool();
            let mut io = PooledIo::new(Transport::Plain(client), bufs.clone());
            let mut peer = server;
            let mut got = vec![0u8; 64 * 1024];

            // A burst larger than the small buffer: the first read fills it, the next ones go
            // into a pooled buffer.
            let burst = pattern(40 * 1024);
            let (r, _) = peer.write_all(burst.clone()).await;
            r.unwrap();
            let mut seen = Vec::new();
            while seen.len() < burst.len() {
                let n = io.read(&mut got).await.unwrap();
                seen.extend_from_slice(&got[..n]);
            }
            assert_eq!(seen, burst);
            assert!(io.reader.lent, "a burst is read into a pooled buffer");

            // Then a small message and quiet: a short read means the socket was drained, so
            // the read that waits while the connection is quiet uses the small buffer, and the
            // one pooled buffer lent for the burst is back in the pool.
            let (r, _) = peer.write_all(b"ping".to_vec()).await;
            r.unwrap();
            let mut small = Vec::new();
            while small.len() < 4 {
                let n = io.read(&mut got).await.unwrap();
                small.extend_from_slice(&got[..n]);
            }
            assert_eq!(small, b"ping");
            let waiting =
                monoio::time::timeout(std::time::Duration::from_millis(50), io.read(&mut got))
                    .await;
            assert!(waiting.is_err(), "nothing was sent, the read must wait");
            assert!(
                !io.holds_pooled(),
                "a quiet connection holds a pooled buffer"
            );
            assert_eq!(bufs.borrow().idle(), 1);
            assert!(io.reader.own.is_none() && io.reader.in_flight);
        });
    }
}
