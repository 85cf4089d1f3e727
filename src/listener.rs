//! Listener sockets: one SO_REUSEPORT socket per listener per worker.
//!
//! All sockets are bound by the main thread before any worker starts, so a port conflict stops
//! start-up with a clear error and nothing half-running. Each worker then accepts on its own
//! socket and the kernel spreads new connections across them: no accept lock, no hand-off. The
//! main thread keeps a duplicate of every socket so it can stop accepting at drain time by
//! shutting the sockets' read side, which wakes the workers' pending accepts with an error.
//!
//! SO_REUSEPORT lets any socket of the same user join a port, so a second Ringway (or any other
//! process) started on our address would silently take part of the traffic. Before binding a
//! fixed port we therefore bind a probe socket without SO_REUSEPORT: the kernel refuses it while
//! anyone else holds the address, and start-up stops naming the listener. The probe is closed
//! before our sockets bind; a process that joins later with SO_REUSEPORT of its own cannot be
//! stopped this way, but it would in turn fail the same probe if it is a Ringway.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Binds one listening socket with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_reuseport(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.clamp(1, i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Fails with `AddrInUse` when another socket already holds `addr`, whether or not it set
/// SO_REUSEPORT: the probe does not set it, so the kernel cannot let it join a reuseport group.
/// SO_REUSEADDR is set so connections of an earlier run still in TIME_WAIT do not count as a
/// holder (the kernel ignores SO_REUSEADDR against a listening socket). Port 0 asks the kernel for
/// a fresh port, which nobody holds, so it is not probed.
pub fn ensure_unclaimed(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the address is already in use by another socket (another Ringway or another process); \
             Ringway shares a port only among its own workers",
        )),
        Err(e) => Err(e),
    }
}

/// The sockets of one configured listener: `per_worker[w]` is worker `w`'s.
pub struct BoundListener {
    pub name: String,
    /// The address actually bound (resolves port 0).
    pub local_addr: SocketAddr,
    pub per_worker: Vec<TcpListener>,
    /// Duplicates kept by the main thread to stop accepting at drain time.
    drain_handles: Vec<TcpListener>,
}

impl BoundListener {
    /// Binds `workers` sockets for `addr`. With port 0, the first socket picks the port and the
    /// others join it, so all workers share one address. A fixed port held by anyone else is an
    /// error (see `ensure_unclaimed`).
    pub fn bind(name: &str, addr: SocketAddr, backlog: u32, workers: usize) -> io::Result<Self> {
        ensure_unclaimed(addr)?;
        let first = bind_reuseport(addr, backlog)?;
        let local_addr = first.local_addr()?;
        let mut per_worker = vec![first];
        for _ in 1..workers {
            per_worker.push(bind_reuseport(local_addr, backlog)?);
        }
        let drain_handles = per_worker
            .iter()
            .map(|l| l.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        Ok(BoundListener {
            name: name.to_owned(),
            local_addr,
            per_worker,
            drain_handles,
        })
    }

    /// Takes the worker sockets out (they move to the worker threads).
    pub fn take_sockets(&mut self) -> Vec<TcpListener> {
        std::mem::take(&mut self.per_worker)
    }

    /// Stops accepting: pending and future accepts on every worker's socket fail.
    pub fn stop_accepting(&self) {
        for l in &self.drain_handles {
            let _ = SockRef::from(l).shutdown(Shutdown::Read);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn workers_share_one_port_and_stop_accepting() {
        let mut l = BoundListener::bind("t", "127.0.0.1:0".parse().unwrap(), 16, 3).unwrap();
        assert_ne!(l.local_addr.port(), 0);
        let socks = l.take_sockets();
        assert_eq!(socks.len(), 3);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), l.local_addr);
        }
        l.stop_accepting();
        for s in &socks {
            s.set_nonblocking(false).unwrap();
            assert!(s.accept().is_err());
        }
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        assert!(BoundListener::bind("t", addr, 16, 1).is_err());
    }

    /// A foreign SO_REUSEPORT socket of the same user would be joined silently by a plain
    /// reuseport bind; the probe must refuse it.
    #[test]
    fn a_port_held_with_reuseport_by_someone_else_is_an_error() {
        let holder = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = holder.local_addr().unwrap();
        assert!(
            bind_reuseport(addr, 16).is_ok(),
            "kernel lets reuseport join"
        );
        let err = BoundListener::bind("t", addr, 16, 2).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("another process"), "{err}");
    }

    #[test]
    fn a_freed_port_can_be_bound_again() {
        let addr = {
            let l = BoundListener::bind("t", "127.0.0.1:0".parse().unwrap(), 16, 2).unwrap();
            l.local_addr
        };
        let l = BoundListener::bind("t", addr, 16, 2).unwrap();
        assert_eq!(l.local_addr, addr);
    }
}
