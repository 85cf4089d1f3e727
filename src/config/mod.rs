//! Configuration: Envoy v3 YAML (or JSON) in, Ringway's validated [`Bootstrap`] out.
//!
//! The file is parsed into a generic YAML tree and then walked by hand (not derived with serde)
//! so that every problem is reported with its Envoy field path and the walk carries on after it:
//! an operator fixing a config sees all of its mistakes at once. `walk.rs` holds the toolkit,
//! `envoy.rs` the bootstrap/listener/HCM walk, `routes.rs`, `headers.rs`, `access_logs.rs`,
//! `cluster.rs`, `tls.rs` and `protocol.rs` (HTTP/2 and upstream protocol options) the rest;
//! `duration.rs` reads Envoy's durations; `depth.rs` refuses pathologically nested text before
//! the YAML parser (whose scanner is quadratic in nesting depth) sees it.

mod access_logs;
mod cluster;
pub(crate) mod depth;
pub mod duration;
pub mod envoy;
mod headers;
mod health;
pub mod model;
mod protocol;
mod routes;
pub mod runtime;
mod tls;
mod walk;

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

impl ConfigErrors {
    fn one(path: &str, message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            path: path.to_string(),
            message,
        }])
    }
}

/// Path used for problems with the document as a whole (syntax errors, an empty file).
pub(crate) const DOCUMENT: &str = "(document)";

/// Parses and validates a configuration held in memory.
pub fn load_str(yaml: &str) -> Result<Loaded, ConfigErrors> {
    if let Err(at) = depth::check(yaml) {
        return Err(ConfigErrors::one(
            DOCUMENT,
            format!(
                "nesting deeper than {} levels at line {} column {} (Envoy configurations need far fewer)",
                depth::MAX_DEPTH,
                at.line,
                at.column
            ),
        ));
    }
    let mut root: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| ConfigErrors::one(DOCUMENT, format!("invalid YAML: {e}")))?;
    // YAML merge keys (`<<: *anchor`) are common in hand-written Envoy files; resolve them
    // before the walk so they do not show up as unknown fields.
    root.apply_merge()
        .map_err(|e| ConfigErrors::one(DOCUMENT, format!("invalid YAML merge: {e}")))?;
    if root.is_null() {
        return Err(ConfigErrors::one(
            DOCUMENT,
            "the configuration is empty".into(),
        ));
    }
    if let Some((path, tag)) = walk::find_tag("", &root) {
        let at = if path.is_empty() { DOCUMENT } else { &path };
        return Err(ConfigErrors::one(
            at,
            format!("YAML tags ({tag}) are not supported"),
        ));
    }
    let mut cx = walk::Cx::default();
    let bootstrap = envoy::bootstrap(&mut cx, &root);
    match bootstrap {
        Some(bootstrap) if cx.errs.is_empty() => Ok(Loaded {
            bootstrap,
            raw: walk::to_json(&root),
        }),
        _ => {
            if cx.errs.is_empty() {
                // Every path that returns None records why; this keeps that promise visible.
                cx.err(DOCUMENT, "the configuration is invalid");
            }
            Err(ConfigErrors(cx.errs))
        }
    }
}

/// Reads and validates a configuration file (`-c`).
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(
            &path.display().to_string(),
            format!("cannot read the configuration file: {e}"),
        )
    })?;
    load_str(&text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn syntax_errors_and_empty_documents_are_reported() {
        let e = load_str("a: [").unwrap_err();
        assert_eq!(e.0[0].path, DOCUMENT);
        assert!(e.0[0].message.starts_with("invalid YAML"));
        assert_eq!(
            load_str("").unwrap_err().0[0].message,
            "the configuration is empty"
        );
        let e = load_str("static_resources: !foo {}").unwrap_err();
        assert_eq!(e.0[0].path, "static_resources");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("admin: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = load_str(&deep).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, DOCUMENT);
        assert_eq!(
            e.0[0].message,
            "nesting deeper than 128 levels at line 1 column 136 (Envoy configurations need far fewer)"
        );
        // Just under the limit the parser runs (and the walk names the field).
        let ok_depth = format!("admin: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(load_str(&ok_depth).unwrap_err().0[0].path, "admin");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_named_as_the_document() {
        // Found by the config fuzz target: the root has an empty path, and every error names
        // where it is.
        for text in ["static_resources-----END\nmore text", "42", "[1, 2]"] {
            let e = load_str(text).unwrap_err();
            assert_eq!(e.0[0].path, "(document)", "{text:?}: {e}");
            assert!(e.0[0].message.starts_with("expected an object"), "{e}");
        }
    }

    #[test]
    fn display_prints_one_error_per_line() {
        let e = load_str("bogus: 1\nadmin: 2\n").unwrap_err();
        let s = e.to_string();
        assert_eq!(s.lines().count(), e.0.len());
        assert!(s.contains("error: bogus: unknown field bogus\n"), "{s}");
        assert!(s.contains("error: admin: expected an object"), "{s}");
    }

    #[test]
    fn json_input_merge_keys_and_raw() {
        let json = r#"{"static_resources": {"listeners": [{"name": "l",
          "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
          "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              "stat_prefix": "s", "route_config": {"virtual_hosts": []},
              "http_filters": [{"name": "envoy.filters.http.router"}]}}]}]}]}}"#;
        let l = load_str(json).unwrap();
        assert_eq!(l.bootstrap.listeners[0].address.port(), 0);
        assert_eq!(l.raw["static_resources"]["listeners"][0]["name"], "l");

        let merged = "
x: &ep {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
";
        // `x` is not a bootstrap field: merge keys resolve, but unknown fields still fail.
        assert!(load_str(merged).is_err());
    }

    #[test]
    fn load_file_names_the_file() {
        let e = load_file(Path::new("/nonexistent/ringway.yaml")).unwrap_err();
        assert_eq!(e.0[0].path, "/nonexistent/ringway.yaml");
    }
}
