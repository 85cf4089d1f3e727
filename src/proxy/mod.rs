//! The proxy proper: per-connection HTTP handling, routing, header rewrites, retries.

pub mod connection;
pub mod domains;
pub mod flags;
pub mod forward;
pub mod grpc;
pub mod h1_to_h2;
pub mod headers;
pub mod http1_conn;
pub mod io;
pub mod router;
pub mod stream_forward;
pub mod tunnel;
pub mod worker;
