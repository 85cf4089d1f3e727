//! Request routing: a route configuration compiled into virtual-host and route lookups.
//!
//! The connection manager asks one question per request: which virtual host and which route
//! serve this authority, path and header set. The answer follows Envoy's rules so that an Envoy
//! configuration routes the same way here: the virtual host by domain precedence (see
//! `domains.rs`), then the first route of that host whose path and header matchers all hold.
//! `prefix` compares against the whole `:path` including the query (as Envoy does), `path`
//! against the path with query and fragment removed. Matching borrows from the request and the
//! configuration only; nothing is allocated per request.

use crate::config::{
    ForwardAction, HeaderMatchKind, HeaderMatcher, PathMatch, Route, RouteAction, RouteConfig,
    RouteMatch, VirtualHost,
};
use crate::http1::HeaderLookup;
use crate::proxy::domains::DomainIndex;

/// A route configuration compiled for matching: virtual hosts by domain, routes in order.
pub struct Router {
    pub config: RouteConfig,
    /// Built from `config.virtual_hosts[*].domains`; values index `config.virtual_hosts`.
    domains: DomainIndex,
}

/// The outcome of routing one request.
pub struct Matched<'a> {
    pub vhost: &'a VirtualHost,
    pub route: &'a Route,
}

impl Router {
    /// One router per listener of `cfg`, in listener order (what every worker looks up by
    /// listener index).
    pub fn per_listener(cfg: &crate::config::Bootstrap) -> Vec<Router> {
        cfg.listeners
            .iter()
            .map(|l| Router::new(l.hcm.route_config.clone()))
            .collect()
    }

    pub fn new(config: RouteConfig) -> Router {
        let domains = DomainIndex::new(config.virtual_hosts.iter().map(|v| v.domains.as_slice()));
        Router { config, domains }
    }

    /// The virtual host serving `authority` alone (for callers that need it before, or without,
    /// a route match, e.g. to apply virtual-host header mutations to a local reply).
    pub fn virtual_host(&self, authority: &[u8]) -> Option<&VirtualHost> {
        self.config.virtual_hosts.get(self.domains.find(authority)?)
    }

    /// Picks the virtual host by `authority` (Host, port optional) with Envoy's precedence
    /// (exact, then longest `*.suffix`, then longest `prefix.*`, then `*`), then its first route
    /// whose match holds for `path` and `headers`. As in Envoy, `prefix` is compared against the
    /// full path including its query and `path` against the path without query and fragment.
    pub fn route<'a>(
        &'a self,
        authority: &[u8],
        path: &[u8],
        headers: &dyn HeaderLookup,
    ) -> Option<Matched<'a>> {
        let vhost = self.virtual_host(authority)?;
        let route = vhost
            .routes
            .iter()
            .find(|r| route_matches(&r.matcher, path, headers))?;
        Some(Matched { vhost, route })
    }
}

/// Whether `m` holds for a request with this `:path` and these headers.
pub fn route_matches(m: &RouteMatch, path: &[u8], headers: &dyn HeaderLookup) -> bool {
    let path_ok = match &m.path {
        PathMatch::Prefix(prefix) => starts_with(path, prefix.as_bytes(), m.case_sensitive),
        PathMatch::Path(exact) => {
            let bare = strip_query_and_fragment(path);
            if m.case_sensitive {
                bare == exact.as_bytes()
            } else {
                bare.eq_ignore_ascii_case(exact.as_bytes())
            }
        }
    };
    path_ok && m.headers.iter().all(|h| header_matches(h, headers))
}

/// Envoy's `HeaderUtility::matchHeaders` for the matcher kinds we support. A missing header
/// matches only `present_match: false`, and, inverted, only `present_match: true`: an inverted
/// exact or prefix matcher does not match an absent header (Envoy needs
/// `treat_missing_header_as_empty` for that, which we do not support).
pub fn header_matches(m: &HeaderMatcher, headers: &dyn HeaderLookup) -> bool {
    let Some(value) = headers.get(&m.name) else {
        return matches!(m.kind, HeaderMatchKind::Present(present) if present == m.invert);
    };
    let hit = match &m.kind {
        HeaderMatchKind::Exact(v) => value == v.as_bytes(),
        HeaderMatchKind::Prefix(p) => value.starts_with(p.as_bytes()),
        HeaderMatchKind::Present(present) => *present,
    };
    hit != m.invert
}

/// The part of the path a `prefix_rewrite` replaces for this route: its prefix for `prefix`
/// routes, the whole path for `path` routes (Envoy rewrites the entire path there). `None` is
/// reserved for match kinds with no literal prefix (none yet).
pub fn matched_prefix(route: &Route) -> Option<&str> {
    match &route.matcher.path {
        PathMatch::Prefix(p) | PathMatch::Path(p) => Some(p),
    }
}

/// If `route` forwards with a `prefix_rewrite`, appends the rewritten `path` to `out` and returns
/// true; otherwise leaves `out` alone and returns false (the caller forwards `path` unchanged).
pub fn apply_prefix_rewrite(route: &Route, path: &[u8], out: &mut Vec<u8>) -> bool {
    let RouteAction::Forward(ForwardAction {
        prefix_rewrite: Some(replacement),
        ..
    }) = &route.action
    else {
        return false;
    };
    let Some(matched) = matched_prefix(route) else {
        return false;
    };
    rewrite_prefix(path, matched, replacement, out);
    true
}

/// Writes `path` with `matched_prefix` replaced by `replacement` into `out` (Envoy prefix_rewrite).
///
/// Envoy semantics: the first `matched_prefix.len()` bytes of the path are replaced, whatever
/// their case (a case-insensitive route matched them), and the rest, query included, is kept.
/// Appends to `out` so the caller can write straight into an outgoing head buffer.
pub fn rewrite_prefix(path: &[u8], matched_prefix: &str, replacement: &str, out: &mut Vec<u8>) {
    let rest = path.get(matched_prefix.len()..).unwrap_or(&[]);
    out.reserve(replacement.len() + rest.len());
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(rest);
}

fn starts_with(haystack: &[u8], prefix: &[u8], case_sensitive: bool) -> bool {
    match haystack.get(..prefix.len()) {
        Some(head) if case_sensitive => head == prefix,
        Some(head) => head.eq_ignore_ascii_case(prefix),
        None => false,
    }
}

fn strip_query_and_fragment(path: &[u8]) -> &[u8] {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    &path[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DirectResponse, HeaderMutations};
    use std::collections::HashMap;

    struct Headers(HashMap<&'static str, &'static str>);

    impl HeaderLookup for Headers {
        fn get(&self, name: &str) -> Option<&[u8]> {
            self.0.get(name).map(|v| v.as_bytes())
        }
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> Headers {
        Headers(pairs.iter().copied().collect())
    }

    fn forward(name: &str, path: PathMatch, cluster: usize) -> Route {
        Route {
            name: name.to_string(),
            matcher: RouteMatch {
                path,
                case_sensitive: true,
                headers: Vec::new(),
            },
            action: RouteAction::Forward(ForwardAction {
                cluster,
                cluster_name: format!("service{cluster}"),
                timeout: None,
                idle_timeout: None,
                max_stream_duration: None,
                prefix_rewrite: None,
                host_rewrite_literal: None,
                retry_policy: None,
                upgrade_overrides: Vec::new(),
            }),
            headers: HeaderMutations::default(),
        }
    }

    fn prefix(name: &str, p: &str) -> Route {
        forward(name, PathMatch::Prefix(p.to_string()), 0)
    }

    fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
        VirtualHost {
            name: name.to_string(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
            headers: HeaderMutations::default(),
            retry_policy: None,
        }
    }

    fn router(vhosts: Vec<VirtualHost>) -> Router {
        Router::new(RouteConfig {
            name: "local_route".to_string(),
            virtual_hosts: vhosts,
            headers: HeaderMutations::default(),
        })
    }

    fn route_name<'a>(
        r: &'a Router,
        authority: &str,
        path: &str,
        h: &Headers,
    ) -> Option<(&'a str, &'a str)> {
        r.route(authority.as_bytes(), path.as_bytes(), h)
            .map(|m| (m.vhost.name.as_str(), m.route.name.as_str()))
    }

    fn matcher(name: &str, kind: HeaderMatchKind, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: name.to_string(),
            kind,
            invert,
        }
    }

    #[test]
    fn envoy_front_proxy() {
        let r = router(vec![vhost(
            "backend",
            &["*"],
            vec![
                forward("s1", PathMatch::Prefix("/service/1".into()), 0),
                forward("s2", PathMatch::Prefix("/service/2".into()), 1),
            ],
        )]);
        let h = hdrs(&[]);
        let m = r.route(b"localhost:8080", b"/service/1", &h).unwrap();
        assert!(matches!(&m.route.action, RouteAction::Forward(f) if f.cluster_name == "service0"));
        let m = r.route(b"localhost:8080", b"/service/2?x=1", &h).unwrap();
        assert!(matches!(&m.route.action, RouteAction::Forward(f) if f.cluster == 1));
        assert_eq!(
            route_name(&r, "localhost", "/service/3", &h),
            None,
            "no route"
        );
    }

    #[test]
    fn vhost_precedence_through_router() {
        let r = router(vec![
            vhost("any", &["*"], vec![prefix("any", "/")]),
            vhost("pre", &["foo.*"], vec![prefix("pre", "/")]),
            vhost("suf", &["*.foo.com"], vec![prefix("suf", "/")]),
            vhost(
                "exact",
                &["www.foo.com", "www.foo.com:8443"],
                vec![prefix("exact", "/")],
            ),
        ]);
        let h = hdrs(&[]);
        assert_eq!(
            route_name(&r, "WWW.foo.com", "/", &h),
            Some(("exact", "exact"))
        );
        assert_eq!(
            route_name(&r, "www.foo.com:8443", "/", &h),
            Some(("exact", "exact"))
        );
        assert_eq!(
            route_name(&r, "api.foo.com:1", "/", &h),
            Some(("suf", "suf"))
        );
        assert_eq!(route_name(&r, "foo.org", "/", &h), Some(("pre", "pre")));
        assert_eq!(route_name(&r, "[::1]:80", "/", &h), Some(("any", "any")));
        assert_eq!(
            r.virtual_host(b"x.foo.com").map(|v| v.name.as_str()),
            Some("suf")
        );
    }

    #[test]
    fn no_vhost_and_no_route() {
        let r = router(vec![vhost("a", &["a.com"], vec![prefix("api", "/api")])]);
        let h = hdrs(&[]);
        assert_eq!(route_name(&r, "b.com", "/api", &h), None);
        assert_eq!(route_name(&r, "a.com", "/other", &h), None);
        assert_eq!(route_name(&r, "a.com", "/ap", &h), None);
        assert_eq!(route_name(&r, "a.com", "/api/v1", &h), Some(("a", "api")));
        assert!(router(Vec::new()).route(b"a.com", b"/", &h).is_none());
    }

    #[test]
    fn first_matching_route_wins() {
        let r = router(vec![vhost(
            "v",
            &["*"],
            vec![
                prefix("narrow", "/a/b"),
                prefix("wide", "/a"),
                prefix("all", "/"),
            ],
        )]);
        let h = hdrs(&[]);
        assert_eq!(route_name(&r, "h", "/a/b/c", &h).unwrap().1, "narrow");
        assert_eq!(route_name(&r, "h", "/a/x", &h).unwrap().1, "wide");
        assert_eq!(route_name(&r, "h", "/z", &h).unwrap().1, "all");
    }

    #[test]
    fn prefix_case_sensitivity() {
        let mut insensitive = prefix("ci", "/API");
        insensitive.matcher.case_sensitive = false;
        let r = router(vec![vhost(
            "v",
            &["*"],
            vec![prefix("cs", "/Api/v1"), insensitive],
        )]);
        let h = hdrs(&[]);
        assert_eq!(route_name(&r, "h", "/Api/v1", &h).unwrap().1, "cs");
        assert_eq!(
            route_name(&r, "h", "/api/v1", &h).unwrap().1,
            "ci",
            "case-sensitive prefix skipped"
        );
        assert_eq!(route_name(&r, "h", "/aPi", &h).unwrap().1, "ci");
        assert_eq!(route_name(&r, "h", "/ap", &h), None);
    }

    #[test]
    fn path_match_ignores_query_and_fragment() {
        let mut ci = forward("ci", PathMatch::Path("/Health".into()), 0);
        ci.matcher.case_sensitive = false;
        let r = router(vec![vhost(
            "v",
            &["*"],
            vec![forward("exact", PathMatch::Path("/status".into()), 0), ci],
        )]);
        let h = hdrs(&[]);
        assert_eq!(route_name(&r, "h", "/status", &h).unwrap().1, "exact");
        assert_eq!(
            route_name(&r, "h", "/status?verbose=1", &h).unwrap().1,
            "exact"
        );
        assert_eq!(route_name(&r, "h", "/status#top", &h).unwrap().1, "exact");
        assert_eq!(route_name(&r, "h", "/status/", &h), None);
        assert_eq!(route_name(&r, "h", "/Status", &h), None);
        assert_eq!(route_name(&r, "h", "/HEALTH?x", &h).unwrap().1, "ci");
    }

    #[test]
    fn prefix_match_sees_the_query() {
        let r = router(vec![vhost(
            "v",
            &["*"],
            vec![prefix("q", "/search?q="), prefix("p", "/search")],
        )]);
        let h = hdrs(&[]);
        assert_eq!(route_name(&r, "h", "/search?q=rust", &h).unwrap().1, "q");
        assert_eq!(route_name(&r, "h", "/search?page=2", &h).unwrap().1, "p");
    }

    #[test]
    fn header_matchers() {
        let mut canary = prefix("canary", "/");
        canary.matcher.headers = vec![
            matcher("x-canary", HeaderMatchKind::Exact("yes".into()), false),
            matcher("user-agent", HeaderMatchKind::Prefix("curl/".into()), false),
        ];
        let mut not_mobile = prefix("not-mobile", "/");
        not_mobile.matcher.headers = vec![matcher(
            "x-device",
            HeaderMatchKind::Exact("mobile".into()),
            true,
        )];
        let mut anonymous = prefix("anonymous", "/");
        anonymous.matcher.headers = vec![matcher(
            "authorization",
            HeaderMatchKind::Present(false),
            false,
        )];
        let mut authed = prefix("authed", "/");
        authed.matcher.headers = vec![matcher(
            "authorization",
            HeaderMatchKind::Present(true),
            false,
        )];
        let r = router(vec![vhost(
            "v",
            &["*"],
            vec![canary, not_mobile, anonymous, authed],
        )]);

        let name = |pairs: &[(&'static str, &'static str)]| {
            route_name(&r, "h", "/", &hdrs(pairs)).map(|m| m.1)
        };
        let both = [
            ("x-canary", "yes"),
            ("user-agent", "curl/8.5"),
            ("x-device", "mobile"),
        ];
        assert_eq!(name(&both), Some("canary"), "all matchers hold");
        assert_eq!(
            name(&[
                ("x-canary", "yes"),
                ("user-agent", "Mozilla"),
                ("x-device", "mobile")
            ]),
            Some("anonymous"),
            "prefix fails, inverted exact fails, no authorization"
        );
        assert_eq!(
            name(&[("x-device", "desktop")]),
            Some("not-mobile"),
            "inverted exact on a different value"
        );
        assert_eq!(
            name(&[("x-device", "mobile"), ("authorization", "Bearer t")]),
            Some("authed")
        );
        assert_eq!(
            name(&[
                ("x-canary", "YES"),
                ("user-agent", "curl/8"),
                ("x-device", "mobile")
            ]),
            Some("anonymous"),
            "exact is case-sensitive"
        );
    }

    #[test]
    fn header_matcher_on_missing_header_follows_envoy() {
        let h = hdrs(&[]);
        let check =
            |kind: HeaderMatchKind, invert: bool| header_matches(&matcher("x", kind, invert), &h);
        assert!(!check(HeaderMatchKind::Exact("v".into()), false));
        assert!(!check(HeaderMatchKind::Prefix("v".into()), false));
        assert!(
            !check(HeaderMatchKind::Exact("v".into()), true),
            "Envoy: inverted value matcher, header absent"
        );
        assert!(!check(HeaderMatchKind::Prefix("v".into()), true));
        assert!(!check(HeaderMatchKind::Present(true), false));
        assert!(check(HeaderMatchKind::Present(false), false));
        assert!(check(HeaderMatchKind::Present(true), true));
        assert!(!check(HeaderMatchKind::Present(false), true));

        let present = hdrs(&[("x", "v")]);
        let check = |kind: HeaderMatchKind, invert: bool| {
            header_matches(&matcher("x", kind, invert), &present)
        };
        assert!(check(HeaderMatchKind::Present(true), false));
        assert!(!check(HeaderMatchKind::Present(false), false));
        assert!(!check(HeaderMatchKind::Present(true), true));
        assert!(check(HeaderMatchKind::Present(false), true));
        assert!(check(HeaderMatchKind::Exact("w".into()), true));
        assert!(!check(HeaderMatchKind::Exact("v".into()), true));
    }

    #[test]
    fn pseudo_header_matchers_use_lookup() {
        let mut post_only = prefix("post", "/");
        post_only.matcher.headers = vec![matcher(
            ":method",
            HeaderMatchKind::Exact("POST".into()),
            false,
        )];
        let r = router(vec![vhost("v", &["*"], vec![post_only])]);
        assert!(r.route(b"h", b"/", &hdrs(&[(":method", "POST")])).is_some());
        assert!(r.route(b"h", b"/", &hdrs(&[(":method", "GET")])).is_none());
    }

    #[test]
    fn prefix_rewrite_semantics() {
        let mut out = Vec::new();
        rewrite_prefix(b"/service/1/items?id=3", "/service/1", "/", &mut out);
        assert_eq!(out, b"//items?id=3");
        out.clear();
        rewrite_prefix(b"/api/v1?x", "/api/", "/v2/", &mut out);
        assert_eq!(out, b"/v2/v1?x");
        out.clear();
        rewrite_prefix(b"/API/x", "/api", "/internal", &mut out);
        assert_eq!(
            out, b"/internal/x",
            "case-insensitively matched bytes are replaced"
        );
        out.clear();
        rewrite_prefix(b"/a", "/abc", "/z", &mut out);
        assert_eq!(out, b"/z", "never reads past the path");
        let mut appended = b"GET ".to_vec();
        rewrite_prefix(b"/old/p", "/old", "/new", &mut appended);
        assert_eq!(appended, b"GET /new/p");
    }

    #[test]
    fn apply_prefix_rewrite_uses_route_action() {
        let mut route = prefix("r", "/old");
        let mut out = Vec::new();
        assert!(!apply_prefix_rewrite(&route, b"/old/x", &mut out));
        assert!(out.is_empty());
        if let RouteAction::Forward(f) = &mut route.action {
            f.prefix_rewrite = Some("/new".into());
        }
        assert!(apply_prefix_rewrite(&route, b"/old/x?q", &mut out));
        assert_eq!(out, b"/new/x?q");

        let mut exact = forward("e", PathMatch::Path("/login".into()), 0);
        if let RouteAction::Forward(f) = &mut exact.action {
            f.prefix_rewrite = Some("/auth/login".into());
        }
        assert_eq!(matched_prefix(&exact), Some("/login"));
        out.clear();
        assert!(apply_prefix_rewrite(&exact, b"/login?next=/", &mut out));
        assert_eq!(out, b"/auth/login?next=/");

        let direct = Route {
            action: RouteAction::Direct(DirectResponse {
                status: 200,
                body: None,
            }),
            ..prefix("d", "/")
        };
        assert!(!apply_prefix_rewrite(&direct, b"/x", &mut out));
    }
}
