//! The few system calls Ringway makes beside monoio's operations, each behind a safe function.
//!
//! This is the crate's one home for `unsafe`: every block here has a `// SAFETY:` note and a test.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// What an idle connection's socket says about its peer, without consuming anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePeer {
    /// Nothing to read and no FIN: the connection may be used.
    Quiet,
    /// Bytes are waiting although no request is outstanding.
    Readable,
    /// The peer closed (FIN or RST) or the socket is in error.
    Closed,
}

/// Peeks at a socket that has no operation in flight (a pooled upstream connection): a
/// non-blocking one-byte `MSG_PEEK`, so an upstream that closed an idle keep-alive connection is
/// seen before a request is written into it.
pub fn peek_idle(fd: RawFd) -> IdlePeer {
    let mut byte = 0u8;
    // SAFETY: `byte` is a live, writable one-byte buffer for the whole call and `len` is 1;
    // `recv` with MSG_PEEK | MSG_DONTWAIT neither blocks nor consumes data, and on a descriptor
    // that is not a socket (or already closed) it only returns an error, which is handled.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => IdlePeer::Closed,
        n if n > 0 => IdlePeer::Readable,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => IdlePeer::Quiet,
            _ => IdlePeer::Closed,
        },
    }
}

/// Asks the allocator to give the memory it holds free back to the operating system now: the
/// calling thread's empty pages, and segments no thread uses, without waiting for mimalloc's
/// purge delay (a plain collect purges only pages freed more than that delay ago, and an idle
/// worker makes no further calls that would purge the rest). Without it, a worker that served
/// ten thousand connections keeps their freed buffers mapped after they close; the worker calls
/// this after its open connections fall steeply or to none.
pub fn return_free_memory() {
    // SAFETY: mi_collect takes no arguments besides a flag and touches only the allocator's own
    // state for the calling thread (and abandoned segments, under mimalloc's own locking); it is
    // documented as callable at any time from any thread that uses the allocator.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn freed_memory_goes_back_to_the_os() {
        // On a thread of its own, so the blocks come from a mimalloc heap no other test uses
        // (the test binary's global allocator is the system's; the proxy's is mimalloc).
        std::thread::spawn(|| {
            const BLOCK: usize = 64 * 1024;
            const BLOCKS: usize = 1024;
            let before = rss_kib();
            let blocks: Vec<*mut u8> = (0..BLOCKS)
                .map(|_| {
                    // SAFETY: a plain allocation of BLOCK bytes, checked for null, then filled
                    // within its bounds so its pages are resident.
                    let p = unsafe { libmimalloc_sys::mi_malloc(BLOCK) }.cast::<u8>();
                    assert!(!p.is_null());
                    unsafe { std::ptr::write_bytes(p, 1, BLOCK) };
                    p
                })
                .collect();
            let held = rss_kib();
            for p in blocks {
                // SAFETY: each pointer came from mi_malloc above and is freed exactly once.
                unsafe { libmimalloc_sys::mi_free(p.cast()) };
            }
            return_free_memory();
            let after = rss_kib();
            assert!(
                held >= before + 48 * 1024,
                "64 MiB written: {before} -> {held} KiB"
            );
            assert!(
                after + 32 * 1024 <= held,
                "freed memory stayed resident: held {held} KiB, after {after} KiB"
            );
        })
        .join()
        .unwrap();
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn settle(fd: RawFd, want: IdlePeer) -> IdlePeer {
        // Loopback delivery is asynchronous to the sender's return; give it a moment.
        for _ in 0..200 {
            let got = peek_idle(fd);
            if got == want {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peek_idle(fd)
    }

    #[test]
    fn quiet_connection_is_quiet() {
        let (c, _s) = pair();
        assert_eq!(peek_idle(c.as_raw_fd()), IdlePeer::Quiet);
    }

    #[test]
    fn pending_bytes_are_seen_and_not_consumed() {
        let (c, mut s) = pair();
        s.write_all(b"x").unwrap();
        assert_eq!(
            settle(c.as_raw_fd(), IdlePeer::Readable),
            IdlePeer::Readable
        );
        // Still there: peeking consumed nothing.
        assert_eq!(peek_idle(c.as_raw_fd()), IdlePeer::Readable);
    }

    #[test]
    fn peer_close_is_seen() {
        let (c, s) = pair();
        s.shutdown(Shutdown::Both).unwrap();
        drop(s);
        assert_eq!(settle(c.as_raw_fd(), IdlePeer::Closed), IdlePeer::Closed);
    }

    #[test]
    fn a_bad_descriptor_counts_as_closed() {
        assert_eq!(peek_idle(-1), IdlePeer::Closed);
    }
}
