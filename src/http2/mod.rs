//! HTTP/2 on monoio: the `h2` crate's server (downstream) and client (upstream) codecs, run over
//! [`crate::transport::Transport`] through our own completion-to-poll adapter (`pooled_io`,
//! which borrows its large buffers from the worker only while bytes move; monoio's
//! `into_poll_io` is about 5x slower for h2).
//!
//! `h2`'s defaults are not edge-safe, so every connection here is built with explicit limits
//! (`server` for the downstream side, `client` for the upstream pool), `guard` counts the frames
//! `h2` hides from us, and `io` bounds how much one connection may read per wake-up.

pub mod client;
pub mod drain_notice;
pub mod guard;
pub mod io;
pub mod pooled_io;
pub mod send;
pub mod server;

/// `SETTINGS_MAX_HEADER_LIST_SIZE` we advertise and enforce: 16 KiB, where `h2`'s default of
/// 16 MiB lets one header block (and a CONTINUATION flood) grow huge.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Response data `h2` may buffer per stream beyond what the peer's window allows; the relay
/// waits for window before reading more from the other side, so this bounds memory per stream.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;
