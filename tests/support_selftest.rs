//! Tests of the test scaffolding itself, run without Ringway: the test upstream driven by curl and
//! by the raw client, nginx start/stop, the config builder and the output parsers. If these fail,
//! the proxy tests' verdicts cannot be trusted.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use support::*;

#[test]
fn upstream_default_path_returns_id() {
    let u = TestUpstream::start_with_id("alpha");
    let r = http_get(u.port, "/anything");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "alpha\n");
    assert_eq!(r.header("x-upstream-id"), Some("alpha"));
    assert_eq!(u.requests(), 1);
    assert_eq!(u.log()[0].path, "/anything");
}
