//! The byte tunnel behind an accepted HTTP/1.1 upgrade (WebSocket): after the upstream's
//! `101 Switching Protocols` has been relayed, bytes are copied both ways until both sides are
//! done, then both connections close. The upstream connection is never pooled again.
//!
//! Why the streams are split rather than raced in one `select!` loop: on io_uring a read that
//! is dropped (the losing branch of a select) is not cancelled; the kernel may still complete
//! it into the buffer the dropped future owned, and those bytes are lost. Each direction must
//! therefore keep one read in flight until it completes, while the opposite direction writes to
//! the same stream. monoio's `Splitable::into_split` gives exactly that: an owned read half and
//! an owned write half of one stream (for TLS, monoio-rustls declares its stream splittable,
//! reading and writing the TLS session independently). `Transport` is an enum, so the halves are
//! enums too, matched once per call. Both directions run as two futures of one task, so nothing
//! is shared across threads and no read is ever dropped while the tunnel lives.
//!
//! Half-close: when one side sends FIN (a read returns 0), the write side of the other is shut
//! down and the opposite direction carries on until it ends too, which is how a WebSocket close
//! handshake followed by TCP close plays out. An error in either direction (reset, failed write)
//! ends both at once. The connection manager's `stream_idle_timeout` bounds how long the tunnel
//! may go without a byte moving in either direction; it is a watchdog over both directions
//! rather than a timeout on each read, because a one-way stream (a server pushing to an idle
//! client) is not idle, and a timed-out read could not be resumed anyway.

use std::cell::Cell;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::exchange::admission::ClusterRequest;
use crate::exchange::request_log::RequestLog;
use crate::exchange::watchdog::{idle_watchdog, Activity};
use crate::proxy::flags::ResponseFlags;
use crate::proxy::worker::Worker;
use crate::stats::{ClusterStat, HttpStat};
use crate::transport::{ClientTls, ServerTls, Transport};
use crate::upstream::pool::UpstreamConn;

/// An upgrade the upstream accepted: the upstream connection, and the request's hold on its
/// cluster, which the tunnel keeps until it ends (dropping it releases the admission).
pub struct Upgraded<'w> {
    pub conn: UpstreamConn,
    pub request: ClusterRequest<'w>,
}

enum ReadHalf {
    Plain(OwnedReadHalf<TcpStream>),
    Server(OwnedReadHalf<ServerTls>),
    Client(OwnedReadHalf<ClientTls>),
}

enum WriteHalf {
    Plain(OwnedWriteHalf<TcpStream>),
    Server(OwnedWriteHalf<ServerTls>),
    Client(OwnedWriteHalf<ClientTls>),
}

fn split(t: Transport) -> (ReadHalf, WriteHalf) {
    match t {
        Transport::Plain(s) => {
            let (r, w) = s.into_split();
            (ReadHalf::Plain(r), WriteHalf::Plain(w))
        }
        Transport::ServerTls(s) => {
            let (r, w) = (*s).into_split();
            (ReadHalf::Server(r), WriteHalf::Server(w))
        }
        Transport::ClientTls(s) => {
            let (r, w) = (*s).into_split();
            (ReadHalf::Client(r), WriteHalf::Client(w))
        }
    }
}

/// Puts a stream back together (the halves always come from one `split`, so this only fails
/// if they were mixed up, which the types here cannot do; `None` then).
fn reunite(r: ReadHalf, w: WriteHalf) -> Option<Transport> {
    match (r, w) {
        (ReadHalf::Plain(r), WriteHalf::Plain(w)) => r.reunite(w).ok().map(Transport::Plain),
        (ReadHalf::Server(r), WriteHalf::Server(w)) => {
            r.reunite(w).ok().map(|s| Transport::ServerTls(Box::new(s)))
        }
        (ReadHalf::Client(r), WriteHalf::Client(w)) => {
            r.reunite(w).ok().map(|s| Transport::ClientTls(Box::new(s)))
        }
        _ => None,
    }
}

impl ReadHalf {
    /// Reads into `buf` from its start (its previous contents are discarded).
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        buf.clear();
        let cap = buf.capacity();
        let slice = buf.slice_mut(0..cap);
        let (res, slice) = match self {
            ReadHalf::Plain(s) => s.read(slice).await,
            ReadHalf::Server(s) => s.read(slice).await,
            ReadHalf::Client(s) => s.read(slice).await,
        };
        (res, slice.into_inner())
    }
}

impl WriteHalf {
    async fn write_all(&mut self, buf: Vec<u8>, len: usize) -> (io::Result<()>, Vec<u8>) {
        use monoio::buf::IoBuf;
        let len = len.min(buf.len());
        if len == 0 {
            return (Ok(()), buf);
        }
        let slice = buf.slice(0..len);
        let (res, slice) = match self {
            WriteHalf::Plain(s) => s.write_all(slice).await,
            WriteHalf::Server(s) => s.write_all(slice).await,
            WriteHalf::Client(s) => s.write_all(slice).await,
        };
        (res.map(|_| ()), slice.into_inner())
    }

    /// Sends FIN (and, for TLS, close_notify first) so the peer sees the other side's close.
    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(s) => s.shutdown().await,
            WriteHalf::Server(s) => s.shutdown().await,
            WriteHalf::Client(s) => s.shutdown().await,
        }
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirEnd {
    /// The reading side closed cleanly; the other side's write half was shut down.
    Closed,
    /// Reading failed (reset): the side we read from broke.
    ReadFailed,
    /// Writing failed: the side we write to broke.
    WriteFailed,
}

/// Copies `from` → `to`, starting with `pending` (bytes that arrived with the HTTP exchange).
async fn pump(
    from: &mut ReadHalf,
    to: &mut WriteHalf,
    pending: Vec<u8>,
    chunk: usize,
    activity: &Activity,
    moved: &Cell<u64>,
) -> DirEnd {
    let mut buf = pending;
    if !buf.is_empty() {
        let len = buf.len();
        let (res, b) = to.write_all(buf, len).await;
        buf = b;
        if res.is_err() {
            return DirEnd::WriteFailed;
        }
        moved.set(moved.get() + len as u64);
        activity.stamp();
    }
    if buf.capacity() < chunk {
        buf.reserve(chunk - buf.len());
    }
    loop {
        let (res, b) = from.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) => {
                // Half-close: pass the FIN on; the other direction keeps going.
                let _ = to.shutdown().await;
                return DirEnd::Closed;
            }
            Ok(n) => n,
            Err(_) => return DirEnd::ReadFailed,
        };
        activity.stamp();
        let (res, b) = to.write_all(buf, n).await;
        buf = b;
        if res.is_err() {
            return DirEnd::WriteFailed;
        }
        moved.set(moved.get() + n as u64);
        activity.stamp();
    }
}

enum First {
    Up(DirEnd),
    Down(DirEnd),
    Idle,
}

/// Runs the tunnel to its end and does the request's final cluster and endpoint accounting.
/// `client_pending`: client bytes read past the request head; `upstream_pending`: upstream bytes
/// read past the 101 head. Moved bytes are added to `log` (received = client → upstream).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    w: &Rc<Worker>,
    listener: usize,
    client: Transport,
    client_pending: Vec<u8>,
    up: Upgraded<'_>,
    upstream_pending: Vec<u8>,
    idle: Duration,
    log: &mut RequestLog<'_>,
) {
    let Upgraded { mut conn, request } = up;
    let cluster = request.cluster;
    let chunk = w.shared.tuning.body_chunk_bytes.max(4096);
    let (mut cr, mut cw) = split(client);
    let (mut ur, mut uw) = split(conn.stream);
    let activity = Activity::default();
    let (to_upstream, to_client) = (Cell::new(0u64), Cell::new(0u64));
    let ended_clean = {
        let mut upward = pin!(pump(
            &mut cr,
            &mut uw,
            client_pending,
            chunk,
            &activity,
            &to_upstream
        ));
        let mut downward = pin!(pump(
            &mut ur,
            &mut cw,
            upstream_pending,
            chunk,
            &activity,
            &to_client
        ));
        let mut watchdog = pin!(idle_watchdog(&activity, idle));
        let first = monoio::select! {
            e = &mut upward => First::Up(e),
            e = &mut downward => First::Down(e),
            _ = &mut watchdog => First::Idle,
        };
        // A clean close in one direction waits for the other; anything else ends both (the
        // dropped future's in-flight read no longer matters: both connections close).
        let rest = match first {
            First::Up(DirEnd::Closed) => monoio::select! {
                e = &mut downward => Some(e),
                _ = &mut watchdog => None,
            },
            First::Down(DirEnd::Closed) => monoio::select! {
                e = &mut upward => Some(e),
                _ = &mut watchdog => None,
            },
            First::Up(e) | First::Down(e) => Some(e),
            First::Idle => None,
        };
        match (first, rest) {
            (First::Idle, _) | (_, None) => {
                log.flags.insert(ResponseFlags::STREAM_IDLE_TIMEOUT);
                false
            }
            (_, Some(DirEnd::Closed)) => true,
            (First::Up(DirEnd::ReadFailed), _) | (First::Down(DirEnd::WriteFailed), _) => {
                log.flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                false
            }
            (_, Some(_)) => {
                log.flags.insert(ResponseFlags::UPSTREAM_REMOTE_RESET);
                false
            }
        }
    };
    drop((cr, cw));

    let (up_bytes, down_bytes) = (to_upstream.get(), to_client.get());
    log.bytes_received += up_bytes;
    log.bytes_sent += down_bytes;
    let stats = w.stats();
    if let Some(hs) = stats.http.get(listener) {
        hs.add(w.index, HttpStat::DownstreamCxRxBytesTotal, up_bytes);
    }
    if let Some(cs) = stats.clusters.get(cluster) {
        cs.add(w.index, ClusterStat::UpstreamCxTxBytesTotal, up_bytes);
        cs.add(w.index, ClusterStat::UpstreamCxRxBytesTotal, down_bytes);
    }
    drop(request);
    let why = if ended_clean {
        ClusterStat::UpstreamCxDestroyRemote
    } else {
        ClusterStat::UpstreamCxDestroyLocal
    };
    // The stream goes back into its connection only so the pool can count it closed.
    if let Some(stream) = reunite(ur, uw) {
        conn.stream = stream;
        conn.finish_request();
        w.pool.borrow_mut().discard(conn, why);
    }
}
