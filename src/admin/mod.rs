//! STUB (replaced by the admin work): signatures are the contract.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::server::ServerState;

/// Binds the admin listener (before returning, so a bind error stops start-up) and serves it on
/// its own thread until the process exits.
pub fn spawn(
    _addr: SocketAddr,
    _state: Arc<ServerState>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    unimplemented!()
}
