//! Owned-buffer I/O helpers over monoio's completion-based streams.
//!
//! io_uring takes buffers by ownership, so every helper here moves a `Vec<u8>` into the
//! operation and hands it back. Reads append into the vector's spare capacity, so the bytes
//! already there (the rest of a pipelined request, a partial head) stay put.

use std::io;
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use crate::transport::Transport;

/// Why a timed operation did not complete.
#[derive(Debug)]
pub enum IoFail {
    Io(io::Error),
    /// The peer closed (read returned 0).
    Eof,
    TimedOut,
}

/// Appends at most `max` bytes read from `stream` to `buf`. Returns the count read (0 = EOF).
pub async fn read_append(
    stream: &mut Transport,
    mut buf: Vec<u8>,
    max: usize,
) -> (io::Result<usize>, Vec<u8>) {
    let max = max.max(1);
    if buf.capacity() - buf.len() < max {
        buf.reserve(max);
    }
    let start = buf.len();
    let end = start + max.min(buf.capacity() - start);
    let (res, slice) = stream.read(buf.slice_mut(start..end)).await;
    (res, slice.into_inner())
}

/// `read_append` with an optional deadline. EOF is reported as `IoFail::Eof`.
pub async fn read_append_until(
    stream: &mut Transport,
    buf: Vec<u8>,
    max: usize,
    deadline: Option<Instant>,
) -> (Result<usize, IoFail>, Vec<u8>) {
    let result = match deadline {
        None => Some(read_append(stream, buf, max).await),
        Some(d) => {
            let now = Instant::now();
            if d <= now {
                return (Err(IoFail::TimedOut), Vec::new());
            }
            monoio::time::timeout(d - now, read_append(stream, buf, max))
                .await
                .ok()
        }
    };
    match result {
        // A timed-out read was cancelled with its buffer; the caller closes the stream, so the
        // (empty) replacement buffer is never used for this connection's data again.
        None => (Err(IoFail::TimedOut), Vec::new()),
        Some((Ok(0), buf)) => (Err(IoFail::Eof), buf),
        Some((Ok(n), buf)) => (Ok(n), buf),
        Some((Err(e), buf)) => (Err(IoFail::Io(e)), buf),
    }
}

/// Writes all of `buf[..len]`.
pub async fn write_all(
    stream: &mut Transport,
    buf: Vec<u8>,
    len: usize,
) -> (io::Result<()>, Vec<u8>) {
    let len = len.min(buf.len());
    if len == 0 {
        return (Ok(()), buf);
    }
    let (res, slice) = stream.write_all(buf.slice(0..len)).await;
    (res.map(|_| ()), slice.into_inner())
}

/// `write_all` of the whole buffer with an optional deadline.
pub async fn write_all_until(
    stream: &mut Transport,
    buf: Vec<u8>,
    deadline: Option<Instant>,
) -> (Result<(), IoFail>, Vec<u8>) {
    let len = buf.len();
    write_prefix_until(stream, buf, len, deadline).await
}

/// Writes `buf[..len]` with an optional deadline. A write cut off by the deadline was
/// cancelled with its buffer: the caller gets an empty one back and must close the stream.
pub async fn write_prefix_until(
    stream: &mut Transport,
    buf: Vec<u8>,
    len: usize,
    deadline: Option<Instant>,
) -> (Result<(), IoFail>, Vec<u8>) {
    match deadline {
        None => {
            let (r, b) = write_all(stream, buf, len).await;
            (r.map_err(IoFail::Io), b)
        }
        Some(d) => {
            let now = Instant::now();
            if d <= now {
                return (Err(IoFail::TimedOut), buf);
            }
            match monoio::time::timeout(d - now, write_all(stream, buf, len)).await {
                Ok((r, b)) => (r.map_err(IoFail::Io), b),
                Err(_) => (Err(IoFail::TimedOut), Vec::new()),
            }
        }
    }
}
