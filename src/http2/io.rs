//! The byte stream `h2` runs on: a [`Transport`] behind [`PooledIo`] (the poll-style adapter
//! that borrows buffers from the worker), plus what the edge needs between the socket and the
//! codec.
//!
//! - bytes already read while sniffing for the connection preface are replayed first;
//! - a read budget: monoio has no cooperative budget like tokio's, and with the epoll driver a
//!   socket that always has data would let one connection's `h2` loop run forever. After
//!   [`READ_BUDGET`] bytes the read yields once (`cooperative::poll_yield`: behind every task
//!   ready at that moment) so the worker's other connections get their turn;
//! - on the server side, a [`FrameGuard`] that sees every frame header the client sends and
//!   trips on floods; a tripped connection reads nothing more;
//! - on the server side, the drain's shutdown notice (`drain_notice`), written between two of
//!   `h2`'s frames when the connection loop asks for it.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::drain_notice::{Notice, NoticeHandle, OutboundFrames, SHUTDOWN_NOTICE};
use super::guard::{Abuse, FrameGuard};
use super::pooled_io::PooledIo;
use crate::bufpool::SharedBufPool;
use crate::transport::Transport;

/// Bytes one connection may read before it yields to the worker's other tasks.
pub const READ_BUDGET: usize = 64 * 1024;

/// Shared between the I/O adapter and the connection loop, which sends GOAWAY when it trips.
pub type AbuseFlag = Rc<Cell<Option<Abuse>>>;

pub struct H2Io {
    inner: PooledIo,
    replay: Vec<u8>,
    replay_pos: usize,
    since_yield: usize,
    guard: Option<(FrameGuard, AbuseFlag)>,
    rx_bytes: Rc<Cell<u64>>,
    /// Server side: where the outgoing frames are, and the drain notice to put between them.
    notice: Option<(OutboundFrames, NoticeHandle)>,
}

impl H2Io {
    /// A client-side (upstream) stream: no replay, no guard.
    pub fn client(stream: Transport, bufs: SharedBufPool) -> H2Io {
        H2Io {
            inner: PooledIo::new(stream, bufs),
            replay: Vec::new(),
            replay_pos: 0,
            since_yield: 0,
            guard: None,
            rx_bytes: Rc::new(Cell::new(0)),
            notice: None,
        }
    }

    /// A server-side (downstream) stream: `initial` holds bytes already read (the preface, when
    /// it was sniffed); the guard watches everything the client sends, preface included.
    pub fn server(
        stream: Transport,
        bufs: SharedBufPool,
        initial: Vec<u8>,
        flag: AbuseFlag,
    ) -> H2Io {
        H2Io {
            inner: PooledIo::new(stream, bufs),
            replay: initial,
            replay_pos: 0,
            since_yield: 0,
            guard: Some((FrameGuard::new(true), flag)),
            rx_bytes: Rc::new(Cell::new(0)),
            notice: Some((OutboundFrames::default(), Rc::default())),
        }
    }

    /// The drain notice's state (server side), to ask for it after the stream moved into `h2`.
    pub fn notice_handle(&self) -> Option<NoticeHandle> {
        self.notice.as_ref().map(|(_, n)| n.clone())
    }

    /// Writes the drain notice when it is wanted and the outgoing bytes are between frames.
    /// `Ready(Ok)`: nothing of ours is left to write before `h2`'s next bytes.
    fn poll_notice(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((frames, notice)) = &self.notice else {
            return Poll::Ready(Ok(()));
        };
        let Notice::Writing(mut done) = notice.get() else {
            return Poll::Ready(Ok(()));
        };
        if !frames.at_boundary() {
            return Poll::Ready(Ok(()));
        }
        while done < SHUTDOWN_NOTICE.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &SHUTDOWN_NOTICE[done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    done += n;
                    notice.set(Notice::Writing(done));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        notice.set(Notice::Sent);
        Poll::Ready(Ok(()))
    }

    /// Bytes received so far (for stats), readable after the stream moved into `h2`.
    pub fn rx_counter(&self) -> Rc<Cell<u64>> {
        self.rx_bytes.clone()
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((guard, _)) = &this.guard {
            if guard.tripped().is_some() {
                // The connection loop is sending GOAWAY; nothing more is read from this client.
                return Poll::Pending;
            }
        }
        if this.since_yield >= READ_BUDGET {
            this.since_yield = 0;
            // Not `wake_by_ref`: monoio would poll this task again before any other.
            return crate::cooperative::poll_yield(cx).map(Ok);
        }
        let before = buf.filled().len();
        if this.replay_pos < this.replay.len() {
            let n = (this.replay.len() - this.replay_pos).min(buf.remaining());
            buf.put_slice(&this.replay[this.replay_pos..this.replay_pos + n]);
            this.replay_pos += n;
            if this.replay_pos == this.replay.len() {
                this.replay = Vec::new();
                this.replay_pos = 0;
            }
        } else {
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        let got = &buf.filled()[before..];
        this.since_yield += got.len();
        this.rx_bytes.set(this.rx_bytes.get() + got.len() as u64);
        if let Some((guard, flag)) = &mut this.guard {
            if let Some(abuse) = guard.observe(got, Instant::now()) {
                flag.set(Some(abuse));
                // Hide these bytes from h2 and let the connection loop notice the flag.
                buf.set_filled(before);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.notice.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        match this.poll_notice(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some((frames, _))) = (&written, &mut this.notice) {
            frames.observe(buf.get(..*n).unwrap_or(buf));
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_notice(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
