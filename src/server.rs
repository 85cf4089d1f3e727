//! The process-wide state that the admin and control threads share with the main thread.
//!
//! Workers get what they need at start (config snapshot, stats objects, membership channel) and
//! never touch this struct on the request path. The admin thread reads it to answer
//! `/server_info`, `/ready`, `/stats`, `/clusters` and `/config_dump`, and flips the lifecycle
//! flags for `/healthcheck/fail|ok` and `/quitquitquit`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use crate::config::Bootstrap;
use crate::stats::Stats;
use crate::upstream::membership::MembershipHub;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Facts about this process shown by `/server_info`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: &'static str,
    pub concurrency: usize,
    /// "io_uring" or "epoll".
    pub io_driver: &'static str,
    /// The command line as given (argv).
    pub command_line: Vec<String>,
    /// Parsed options as (flag, value) pairs, for `command_line_options` in `/server_info`.
    pub options: Vec<(&'static str, String)>,
}

/// Draining, health-check failure and shutdown requests.
pub struct Lifecycle {
    draining: AtomicBool,
    health_failed: AtomicBool,
    shutdown: AtomicBool,
    main_thread: Thread,
}

impl Lifecycle {
    pub fn new(main_thread: Thread) -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            health_failed: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            main_thread,
        }
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
    /// `/drain_listeners` (and the start of a shutdown): the main thread wakes, closes the
    /// listeners and tells the workers to drain their connections.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.main_thread.unpark();
    }
    pub fn health_failed(&self) -> bool {
        self.health_failed.load(Ordering::Acquire)
    }
    pub fn set_health_failed(&self, failed: bool) {
        self.health_failed.store(failed, Ordering::Release);
    }
    /// `/quitquitquit`, SIGTERM and SIGINT all end here: the main thread wakes and drains.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.main_thread.unpark();
    }
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
    /// Envoy's `/server_info` state: LIVE, DRAINING.
    pub fn state_name(&self) -> &'static str {
        if self.is_draining() {
            "DRAINING"
        } else {
            "LIVE"
        }
    }
}

pub struct ServerState {
    pub info: ServerInfo,
    pub config: Arc<Bootstrap>,
    /// The configuration file as JSON, for `/config_dump`.
    pub raw_config: serde_json::Value,
    pub stats: Arc<Stats>,
    pub lifecycle: Lifecycle,
    pub membership: Arc<MembershipHub>,
}
