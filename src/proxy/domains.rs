//! Virtual-host selection by `:authority`/Host, with Envoy's domain precedence.
//!
//! A route configuration's virtual hosts each list domain patterns; this module compiles them once
//! into an index and answers "which virtual host serves this authority" without allocating. Envoy's
//! order is: an exact domain, then the longest `*<suffix>` wildcard, then the longest `<prefix>*`
//! wildcard, then `*`. Host names compare case-insensitively (patterns are stored lowercase). A
//! wildcard must stand for at least one character, so `*.foo.com` matches `a.foo.com` and
//! `a.b.foo.com` but not `foo.com` or `.foo.com`.
//!
//! Ports: a pattern written with a port (`foo.com:8080`, `*.foo.com:8080`) only matches an
//! authority carrying that port. An authority with a port also matches port-less patterns, as if
//! Envoy's `strip_any_host_port` were on: within each precedence tier the full authority is tried
//! first, then the authority with its port removed. Doing this per tier (rather than running the
//! whole search twice) keeps "exact beats wildcard": `foo.com:8080` picks an exact `foo.com` over
//! a `foo.*` that happens to match the full text.

use std::collections::HashMap;

/// Authorities up to this length are lowercased on the stack for the exact-domain hash lookup;
/// longer ones (never legitimate: DNS names are at most 253 bytes) fall back to a scan.
const STACK_LOWERCASE: usize = 256;

/// Compiled domain patterns of one route configuration; values are virtual-host indices.
#[derive(Debug, Clone, Default)]
pub struct DomainIndex {
    /// Exact domains (lowercase, with the port when the pattern had one).
    exact: HashMap<String, usize>,
    /// `*<suffix>` patterns stored without the `*`, longest first (stable: config order on ties).
    suffixes: Vec<(String, usize)>,
    /// `<prefix>*` patterns stored without the `*`, longest first (stable: config order on ties).
    prefixes: Vec<(String, usize)>,
    /// The first virtual host listing `*`.
    any: Option<usize>,
}

impl DomainIndex {
    /// Compiles `domains[i]`, the pattern list of virtual host `i`. When two virtual hosts list the
    /// same pattern the first keeps it (Envoy rejects such configurations outright).
    pub fn new<'a>(domains: impl IntoIterator<Item = &'a [String]>) -> DomainIndex {
        let mut index = DomainIndex::default();
        for (vhost, patterns) in domains.into_iter().enumerate() {
            for pattern in patterns {
                let pattern = pattern.to_ascii_lowercase();
                if pattern == "*" {
                    index.any.get_or_insert(vhost);
                } else if let Some(suffix) = pattern.strip_prefix('*') {
                    index.suffixes.push((suffix.to_owned(), vhost));
                } else if let Some(prefix) = pattern.strip_suffix('*') {
                    index.prefixes.push((prefix.to_owned(), vhost));
                } else {
                    index.exact.entry(pattern).or_insert(vhost);
                }
            }
        }
        index
            .suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        index
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        index
    }

    /// The virtual host serving `authority` (Host header or `:authority`, port optional).
    pub fn find(&self, authority: &[u8]) -> Option<usize> {
        let host = strip_port(authority);
        let tier = |lookup: &dyn Fn(&[u8]) -> Option<usize>| {
            lookup(authority).or_else(|| host.and_then(lookup))
        };
        tier(&|name| self.find_exact(name))
            .or_else(|| tier(&|name| self.find_suffix(name)))
            .or_else(|| tier(&|name| self.find_prefix(name)))
            .or(self.any)
    }

    fn find_exact(&self, name: &[u8]) -> Option<usize> {
        if self.exact.is_empty() {
            return None;
        }
        if name.len() <= STACK_LOWERCASE {
            let mut buf = [0u8; STACK_LOWERCASE];
            let lower = buf.get_mut(..name.len())?;
            lower.copy_from_slice(name);
            lower.make_ascii_lowercase();
            // Keys are UTF-8 strings; an authority that is not UTF-8 cannot equal any of them.
            let key = std::str::from_utf8(lower).ok()?;
            return self.exact.get(key).copied();
        }
        self.exact
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, &v)| v)
    }

    fn find_suffix(&self, name: &[u8]) -> Option<usize> {
        self.suffixes
            .iter()
            .find(|(s, _)| {
                name.len() > s.len()
                    && name[name.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            })
            .map(|&(_, v)| v)
    }

    fn find_prefix(&self, name: &[u8]) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(p, _)| {
                name.len() > p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
            .map(|&(_, v)| v)
    }
}

/// `authority` without its `:port`, or `None` when it has no port. IPv6 literals keep their
/// brackets (`[::1]:8080` → `[::1]`); a bare IPv6 address (several colons, no brackets) is not
/// mistaken for `host:port`.
pub fn strip_port(authority: &[u8]) -> Option<&[u8]> {
    let colon = authority.iter().rposition(|&b| b == b':')?;
    let (host, port) = (&authority[..colon], &authority[colon + 1..]);
    if port.is_empty() || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let bracketed = host.first() == Some(&b'[') && host.last() == Some(&b']');
    if bracketed || !host.contains(&b':') {
        Some(host)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        let owned: Vec<Vec<String>> = vhosts
            .iter()
            .map(|d| d.iter().map(|s| s.to_string()).collect())
            .collect();
        DomainIndex::new(owned.iter().map(Vec::as_slice))
    }

    #[test]
    fn precedence_exact_suffix_prefix_any() {
        let idx = index(&[
            &["*"],
            &["foo.*"],
            &["*.foo.com"],
            &["www.foo.com"],
            &["*.com"],
        ]);
        assert_eq!(idx.find(b"www.foo.com"), Some(3), "exact first");
        assert_eq!(
            idx.find(b"api.foo.com"),
            Some(2),
            "longest suffix before shorter"
        );
        assert_eq!(idx.find(b"a.b.foo.com"), Some(2));
        assert_eq!(idx.find(b"bar.com"), Some(4));
        assert_eq!(idx.find(b"foo.org"), Some(1), "prefix after suffixes");
        assert_eq!(idx.find(b"foo.com"), Some(4), "suffix beats prefix");
        assert_eq!(idx.find(b"example.net"), Some(0), "catch-all last");
    }

    #[test]
    fn wildcard_needs_at_least_one_character() {
        let idx = index(&[&["*.foo.com"], &["bar.*"]]);
        assert_eq!(idx.find(b"foo.com"), None);
        assert_eq!(idx.find(b".foo.com"), None);
        assert_eq!(idx.find(b"x.foo.com"), Some(0));
        assert_eq!(idx.find(b"bar."), None);
        assert_eq!(idx.find(b"bar.x"), Some(1));
    }

    #[test]
    fn non_dot_suffix_wildcard() {
        let idx = index(&[&["*-bar.foo.com"], &["*.foo.com"]]);
        assert_eq!(idx.find(b"a-bar.foo.com"), Some(0));
        assert_eq!(idx.find(b"abar.foo.com"), Some(1));
    }

    #[test]
    fn longest_prefix_wins() {
        let idx = index(&[&["api.*"], &["api.v2.*"]]);
        assert_eq!(idx.find(b"api.v2.example"), Some(1));
        assert_eq!(idx.find(b"api.v1.example"), Some(0));
    }

    #[test]
    fn case_insensitive() {
        let idx = index(&[&["WWW.Example.com"], &["*.example.org"], &["api.*"]]);
        assert_eq!(idx.find(b"www.EXAMPLE.com"), Some(0));
        assert_eq!(idx.find(b"A.EXAMPLE.ORG"), Some(1));
        assert_eq!(idx.find(b"API.x"), Some(2));
    }

    #[test]
    fn ports() {
        let idx = index(&[
            &["foo.com:8080"],
            &["foo.com"],
            &["*.bar.com:9000"],
            &["*.bar.com"],
            &["*"],
        ]);
        assert_eq!(idx.find(b"foo.com:8080"), Some(0), "pattern with port");
        assert_eq!(
            idx.find(b"foo.com:9090"),
            Some(1),
            "port ignored for port-less pattern"
        );
        assert_eq!(
            idx.find(b"foo.com"),
            Some(1),
            "pattern with port needs the port"
        );
        assert_eq!(idx.find(b"a.bar.com:9000"), Some(2));
        assert_eq!(idx.find(b"a.bar.com:1"), Some(3));
        assert_eq!(idx.find(b"a.bar.com"), Some(3));
        let only_port = index(&[&["foo.com:8080"]]);
        assert_eq!(only_port.find(b"foo.com"), None);
        assert_eq!(only_port.find(b"foo.com:80"), None);
    }

    #[test]
    fn exact_without_port_beats_prefix_matching_full_authority() {
        let idx = index(&[&["foo.*"], &["foo.com"]]);
        assert_eq!(idx.find(b"foo.com:8080"), Some(1));
    }

    #[test]
    fn ipv6_literals() {
        let idx = index(&[&["[::1]"], &["[::1]:8080"], &["*"]]);
        assert_eq!(idx.find(b"[::1]:8080"), Some(1));
        assert_eq!(idx.find(b"[::1]:9"), Some(0));
        assert_eq!(idx.find(b"[::1]"), Some(0));
        assert_eq!(idx.find(b"[::2]"), Some(2));
        assert_eq!(strip_port(b"[::1]:8080"), Some(&b"[::1]"[..]));
        assert_eq!(strip_port(b"[::1]"), None);
        assert_eq!(strip_port(b"::1"), None);
        assert_eq!(strip_port(b"foo:"), None);
        assert_eq!(strip_port(b"foo:bar"), None);
        assert_eq!(strip_port(b"foo:80"), Some(&b"foo"[..]));
    }

    #[test]
    fn first_vhost_keeps_duplicate_pattern_and_no_match() {
        let idx = index(&[&["a.com", "*"], &["a.com", "*"]]);
        assert_eq!(idx.find(b"a.com"), Some(0));
        assert_eq!(idx.find(b"b.com"), Some(0));
        let none = index(&[&["a.com"]]);
        assert_eq!(none.find(b"b.com"), None);
        assert_eq!(none.find(b""), None);
    }

    #[test]
    fn long_and_non_utf8_authorities() {
        let long = format!("{}.example.com", "a".repeat(300));
        let idx = index(&[&[long.as_str()], &["*"]]);
        assert_eq!(idx.find(long.to_ascii_uppercase().as_bytes()), Some(0));
        assert_eq!(idx.find(b"\xff\xfe.example.com"), Some(1));
    }
}
