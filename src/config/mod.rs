//! Configuration: Envoy v3 YAML in, Ringway's validated [`Bootstrap`] out.
//!
//! STUB (replaced by the config work): signatures are the contract.

pub mod duration;
pub mod envoy;
pub mod model;

pub use model::*;

use std::fmt;
use std::path::Path;

/// A loaded configuration: the validated model plus the file as JSON for `/config_dump`.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub bootstrap: Bootstrap,
    pub raw: serde_json::Value,
}

/// One problem, with the Envoy field path it was found at
/// (e.g. `static_resources.clusters[1].load_assignment.endpoints[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found in a file (validation goes on after the first one).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "error: {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub fn load_str(_yaml: &str) -> Result<Loaded, ConfigErrors> {
    unimplemented!("config::load_str")
}

pub fn load_file(_path: &Path) -> Result<Loaded, ConfigErrors> {
    unimplemented!("config::load_file")
}
