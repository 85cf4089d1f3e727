//! STUB (replaced by the router work): signatures are the contract.

use crate::config::{Route, RouteConfig, VirtualHost};
use crate::http1::HeaderLookup;

/// A route configuration compiled for matching: virtual hosts by domain, routes in order.
pub struct Router {
    pub config: RouteConfig,
}

/// The outcome of routing one request.
pub struct Matched<'a> {
    pub vhost: &'a VirtualHost,
    pub route: &'a Route,
}

impl Router {
    pub fn new(config: RouteConfig) -> Router {
        Router { config }
    }
    /// Picks the virtual host by `authority` (Host, port optional) with Envoy's precedence
    /// (exact, then longest `*.suffix`, then longest `prefix.*`, then `*`), then its first route
    /// whose match holds for `path` (query ignored for `path`/`prefix`) and `headers`.
    pub fn route<'a>(&'a self, _authority: &[u8], _path: &[u8], _headers: &dyn HeaderLookup) -> Option<Matched<'a>> {
        unimplemented!()
    }
}

/// Writes `path` with `matched_prefix` replaced by `replacement` into `out` (Envoy prefix_rewrite).
pub fn rewrite_prefix(_path: &[u8], _matched_prefix: &str, _replacement: &str, _out: &mut Vec<u8>) {
    unimplemented!()
}
