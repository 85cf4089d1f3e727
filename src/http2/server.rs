//! Downstream HTTP/2 connections.

use std::net::SocketAddr;
use std::rc::Rc;

use crate::proxy::worker::Worker;
use crate::transport::Transport;

pub async fn serve(
    _w: &Rc<Worker>,
    _listener: usize,
    _stream: Transport,
    _peer: SocketAddr,
    _local: SocketAddr,
    _initial: Vec<u8>,
) {
}
