//! Listener sockets: one SO_REUSEPORT socket per listener per worker.
//!
//! All sockets are bound by the main thread before any worker starts, so a port conflict stops
//! start-up with a clear error and nothing half-running. Each worker then accepts on its own
//! socket and the kernel spreads new connections across them: no accept lock, no hand-off. The
//! main thread keeps a duplicate of every socket so it can stop accepting at drain time by
//! shutting the sockets' read side, which wakes the workers' pending accepts with an error.

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
    /// others join it, so all workers share one address.
    pub fn bind(name: &str, addr: SocketAddr, backlog: u32, workers: usize) -> io::Result<Self> {
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
}
