//! Ringway: a thread-per-core edge and service proxy speaking Envoy's v3 configuration.
//!
//! The crate is laid out the way a request travels (see `../shared/DESIGN.md` in the team's
//! workspace and README.md): `runtime` starts one pinned io_uring worker per core, each with its own
//! SO_REUSEPORT `listener`; `proxy` drives each downstream connection through the `http1` codec,
//! the router and the `upstream` pools; `stats`, `access_log` and `admin` make it observable;
//! `config` turns Envoy YAML into the typed model everything else reads.

// First, so its macros are in scope for every module below.
#[macro_use]
pub mod logging;

pub mod access_log;
pub mod admin;
pub mod app;
pub mod bufpool;
pub mod cli;
pub mod config;
pub mod control;
pub mod cooperative;
pub mod exchange;
/// Fuzz entry points (called by the targets in `fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http1;
pub mod http2;
pub mod listener;
pub mod proxy;
pub mod rng;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod sys;
pub mod tls;
pub mod transport;
pub mod upstream;
