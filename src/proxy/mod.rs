//! The proxy proper: per-connection HTTP handling, routing, header rewrites, retries.

pub mod domains;
pub mod flags;
pub mod router;
