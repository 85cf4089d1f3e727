//! The proxy proper: downstream connections, routing, forwarding, and the worker they run on.
//!
//! A request's path, by file:
//! - `worker_loop.rs`: the worker thread's accept loops; `worker.rs`: the state it lends to
//!   every request (pools, balancers, stats shard, buffers).
//! - `connection.rs`: one accepted connection: TLS handshake, then the codec (ALPN, or the
//!   HTTP/2 preface on a plain AUTO listener).
//! - HTTP/1.1 clients: `http1_conn.rs` (the connection loop: read a head, route, answer or
//!   forward) with `h1_downstream.rs` (the client's connection, request, local replies, body).
//! - HTTP/2 clients: `http2::server` drives the codec and yields streams to `h2_conn.rs` (one
//!   stream: check, route, answer or forward) with `h2_downstream.rs` (the stream's head and
//!   local replies).
//! - Forwarding: `forward.rs` (HTTP/1.1 client to HTTP/1.1 cluster), `h1_to_h2.rs` (HTTP/1.1
//!   client to HTTP/2 cluster, through the stream forwarder), `stream_forward.rs` (HTTP/2 client
//!   to either), `tunnel.rs` (after an upgrade). Their shared phases (admission, endpoint and
//!   connection, the one attempt loop with its retry decision, failure replies, the stream
//!   watchdog, the request log) are `crate::exchange`; a forwarder supplies its codec's try.
//! - `router.rs`, `domains.rs`: virtual hosts and routes; `headers.rs`: header mutations and
//!   framing; `grpc.rs`: gRPC-shaped local replies; `flags.rs`: Envoy's response flags;
//!   `io.rs`: reads and writes with deadlines.
//! - `cancellation_tests.rs` (tests only): a real worker built from YAML serves real clients,
//!   its connection future is dropped after every possible number of polls, and every count
//!   that gates admission or feeds a gauge must come back.

pub mod connection;
pub mod domains;
pub mod flags;
pub mod forward;
pub mod grpc;
pub mod h1_downstream;
pub mod h1_to_h2;
pub mod h2_conn;
pub mod h2_downstream;
pub mod headers;
pub mod http1_conn;
pub mod io;
pub mod router;
pub mod stream_forward;
pub mod tunnel;
pub mod worker;
pub mod worker_loop;

#[cfg(test)]
mod cancellation_tests;
