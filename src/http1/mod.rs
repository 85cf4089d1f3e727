//! HTTP/1.1 codec: request and response heads, body framing, serialisation. No I/O inside.
//!
//! Everything here takes bytes and returns positions, decisions or bytes, so that every case can be
//! driven byte by byte in unit tests and fuzzed (`fuzz/`). The policy is an internet-facing edge's
//! (RFC 9112 and RFC 9110, strict where request smuggling lives): see `parse.rs` for the list.

pub mod body;
pub mod encode;
pub mod fields;
#[doc(hidden)]
pub mod fuzzing;
pub mod parse;
#[doc(hidden)]
pub mod vectors;

/// A byte range into the buffer a head was parsed from. Heads are parsed in place; nothing is
/// copied until the head is re-serialised into the outgoing buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One header line: name and value spans (value without surrounding whitespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// Read access to a message's headers by lowercase name, used by the router and access log so they
/// need not know how a codec stores headers. Pseudo-names `:method`, `:path`, `:authority` and
/// `:scheme` address the request line and Host.
pub trait HeaderLookup {
    /// The first value of header `name` (lowercase), if present.
    fn get(&self, name: &str) -> Option<&[u8]>;
}

/// `HeaderLookup` over a parsed head: the buffer, its header spans and the request-line parts.
pub struct HeadView<'a> {
    pub buf: &'a [u8],
    pub headers: &'a [HeaderSpan],
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub authority: Option<&'a [u8]>,
    pub scheme: &'a [u8],
}

impl HeaderLookup for HeadView<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => return Some(self.method),
            ":path" => return Some(self.path),
            ":authority" | "host" => return self.authority,
            ":scheme" => return Some(self.scheme),
            _ => {}
        }
        self.headers
            .iter()
            .find(|h| h.name.get(self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.get(self.buf))
    }
}
