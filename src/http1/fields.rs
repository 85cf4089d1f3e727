//! Field-value grammar shared by the head parser and the chunked decoder: tokens, OWS trimming,
//! comma lists, strict Content-Length, Transfer-Encoding classification and Host validation.
//!
//! These are the places where two HTTP implementations can disagree about where a message ends
//! (request smuggling), so each helper implements the RFC 9110/9112/3986 grammar exactly and
//! rejects everything else instead of guessing what the sender meant.

/// RFC 9110 §5.6.2 `tchar`.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// `1*tchar`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte allowed inside a field value (RFC 9110 §5.5: VCHAR, obs-text, SP and HTAB). Every other
/// control byte (NUL, CR, LF, DEL, ...) is rejected: intermediaries disagree on how to treat them.
#[inline]
pub fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed; empty elements are skipped
/// as the list grammar allows (`a, , b`).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Strict `Content-Length`: `1*DIGIT`, no sign, no inner spaces, no hex, no list, fits in u64.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// What a `Transfer-Encoding` value means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// Exactly `chunked` (any case).
    Chunked,
    /// A single well-formed coding we do not implement (`gzip`, `xchunked`, ...): 501 on requests.
    Unknown,
    /// Anything else: lists (`gzip, chunked`, `chunked, chunked`), parameters (`chunked;x`), empty.
    Malformed,
}

/// Classifies a trimmed `Transfer-Encoding` value. Lists are refused outright: the only coding a
/// proxy must understand is `chunked`, and a list is where implementations differ on which coding
/// is "final".
pub fn classify_transfer_encoding(value: &[u8]) -> TransferCoding {
    if value.eq_ignore_ascii_case(b"chunked") {
        TransferCoding::Chunked
    } else if is_token(value) {
        TransferCoding::Unknown
    } else {
        TransferCoding::Malformed
    }
}

/// RFC 3986 `unreserved / sub-delims` (the `reg-name` alphabet without `%`).
#[inline]
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// `reg-name` (which also covers IPv4 dotted quads), non-empty, percent-escapes well-formed.
fn is_reg_name(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            match s.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if is_reg_name_byte(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `[IPv6]` contents: hex digits, colons and dots (embedded IPv4), at least one colon. IPvFuture
/// and zone identifiers are refused: nothing legitimate sends them to an edge.
fn is_ipv6_literal(s: &[u8]) -> bool {
    s.len() >= 2
        && s.contains(&b':')
        && s.iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// A port: 1 to 5 digits, at most 65535. An empty port (`host:`) is refused (strict).
fn is_port(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.iter().all(u8::is_ascii_digit)
        && parse_content_length(s).is_some_and(|p| p <= 65535)
}

/// Validates a Host value or a URI authority (without userinfo): `reg-name / IPv4 / "[" IPv6 "]"`
/// with an optional `:port`. Empty hosts are refused even though RFC 9112 allows `Host:` for
/// targets without authority: an edge routes by host and has nothing to route an empty one to.
pub fn is_valid_host(s: &[u8]) -> bool {
    if let Some(rest) = s.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, after) = (&rest[..close], &rest[close + 1..]);
        if !is_ipv6_literal(literal) {
            return false;
        }
        return match after {
            [] => true,
            [b':', port @ ..] => is_port(port),
            _ => false,
        };
    }
    match s.iter().position(|&b| b == b':') {
        Some(colon) => is_reg_name(&s[..colon]) && is_port(&s[colon + 1..]),
        None => is_reg_name(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_trim() {
        assert!(is_token(b"chunked"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a;b"));
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let v: Vec<&[u8]> = list_elements(b" close ,, Upgrade,").collect();
        assert_eq!(v, vec![&b"close"[..], &b"Upgrade"[..]]);
    }

    #[test]
    fn content_length_is_strict() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"+5", None),
            (b"-5", None),
            (b"5 5", None),
            (b"0x10", None),
            (b"5,5", None),
            (b"1e3", None),
        ];
        for (input, want) in table {
            assert_eq!(
                parse_content_length(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn transfer_coding_classes() {
        use TransferCoding::*;
        let table: &[(&[u8], TransferCoding)] = &[
            (b"chunked", Chunked),
            (b"CHUNKED", Chunked),
            (b"gzip", Unknown),
            (b"xchunked", Unknown),
            (b"gzip, chunked", Malformed),
            (b"chunked, chunked", Malformed),
            (b"chunked;x", Malformed),
            (b"", Malformed),
            (b"\"chunked\"", Malformed),
        ];
        for (input, want) in table {
            assert_eq!(
                classify_transfer_encoding(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn hosts() {
        let good: &[&[u8]] = &[
            b"example.com",
            b"example.com:8080",
            b"127.0.0.1",
            b"127.0.0.1:65535",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"[::ffff:1.2.3.4]",
            b"a%2Db",
            b"xn--bcher-kva.example",
        ];
        for h in good {
            assert!(is_valid_host(h), "{:?}", String::from_utf8_lossy(h));
        }
        let bad: &[&[u8]] = &[
            b"",
            b"a b",
            b"a/b",
            b"user@host",
            b"a\\b",
            b"host:",
            b"host:65536",
            b"host:123456",
            b"host:8a",
            b":80",
            b"[::1",
            b"[::1]x",
            b"[zz]",
            b"[]",
            b"a%2",
            b"a%zz",
            b"host:80:80",
            b"h\x80st",
        ];
        for h in bad {
            assert!(!is_valid_host(h), "{:?}", String::from_utf8_lossy(h));
        }
    }
}
