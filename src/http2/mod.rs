//! HTTP/2 on monoio: the `h2` crate's server (downstream) and client (upstream) codecs, run over
//! [`crate::transport::Transport`] through `monoio_compat::StreamWrapper` (the measured fast
//! path; monoio's `into_poll_io` is about 5x slower for h2).
//!
//! `h2`'s defaults are not edge-safe, so every connection here is built with explicit limits
//! and the request checks `h2` leaves to its user (see `server`).

pub mod server;
