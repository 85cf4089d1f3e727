//! The proxy proper: per-connection HTTP handling, routing, header rewrites, retries.

pub mod connection;
pub mod domains;
pub mod flags;
pub mod forward;
pub mod grpc;
pub mod headers;
pub mod http1_conn;
pub mod io;
pub mod router;
pub mod tunnel;
pub mod worker;
