//! The worker's pool of large I/O buffers, lent to connections only while bytes move.
//!
//! An idle connection should cost little more than its socket, so the big buffers are not owned
//! by connections: an HTTP/1.1 connection borrows its upstream read buffer, its outgoing buffer
//! and a grown read buffer while it has a request in hand (`proxy::http1_conn`), and an HTTP/2
//! connection's I/O adapter borrows one per read burst and per write in flight
//! (`http2::pooled_io`). One pool per worker thread, so taking and giving is a `Vec` push/pop
//! behind a `RefCell`, never shared between threads.

use std::cell::RefCell;
use std::rc::Rc;

/// One worker's pool, shared by the worker and its connections' I/O adapters.
pub type SharedBufPool = Rc<RefCell<BufPool>>;

/// Large buffers lent to connections while bytes move and given back when they go idle. Bounded: at
/// most `max_free` buffers wait here, and oversized ones are freed rather than kept.
pub struct BufPool {
    free: Vec<Vec<u8>>,
    size: usize,
    max_free: usize,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            size,
            max_free,
        }
    }

    /// An empty buffer of at least the pool's size.
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Returns a buffer for reuse (dropped when the pool is full or the buffer grew past 4x
    /// the standard size, so one large body does not pin its memory forever).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap >= self.size && cap <= self.size * 4 && self.free.len() < self.max_free {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}
