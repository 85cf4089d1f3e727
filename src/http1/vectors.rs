//! Malformed and ambiguous requests with the status an edge must answer, shared by the codec's unit
//! tests (fed byte by byte) and the integration tests (sent to the running proxy over TCP), so both
//! layers are held to one list. Each entry is a complete request as a client would send it;
//! chunked-body entries carry a well-formed head and a malformed body (expected 400).
//!
//! The statuses assume the default `Limits` (8 KiB request line, 60 KiB head, 100 fields).

/// Concatenates `prefix`, `count` copies of `unit` and `suffix` into an array at compile time, so
/// the oversized vectors need no allocation and no giant literals. `N` must be the exact length.
const fn build<const N: usize>(prefix: &[u8], unit: &[u8], count: usize, suffix: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    let mut k = 0;
    while k < prefix.len() {
        out[i] = prefix[k];
        i += 1;
        k += 1;
    }
    let mut c = 0;
    while c < count {
        k = 0;
        while k < unit.len() {
            out[i] = unit[k];
            i += 1;
            k += 1;
        }
        c += 1;
    }
    k = 0;
    while k < suffix.len() {
        out[i] = suffix[k];
        i += 1;
        k += 1;
    }
    assert!(i == N, "build: N does not match the parts");
    out
}

const LONG_LINE_PREFIX: &[u8] = b"GET /";
const LONG_LINE_SUFFIX: &[u8] = b" HTTP/1.1\r\nHost: a\r\n\r\n";
const LONG_LINE_COUNT: usize = 9000;
/// A 9000-byte path: over the 8 KiB request-line limit.
const LONG_LINE: [u8; LONG_LINE_PREFIX.len() + LONG_LINE_COUNT + LONG_LINE_SUFFIX.len()] =
    build(LONG_LINE_PREFIX, b"a", LONG_LINE_COUNT, LONG_LINE_SUFFIX);

const MANY_PREFIX: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n";
const MANY_UNIT: &[u8] = b"X-A: b\r\n";
const MANY_COUNT: usize = 120;
/// 121 fields: over the 100-field limit.
const MANY_HEADERS: [u8; MANY_PREFIX.len() + MANY_UNIT.len() * MANY_COUNT + 2] =
    build(MANY_PREFIX, MANY_UNIT, MANY_COUNT, b"\r\n");

const BIG_PREFIX: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ";
const BIG_COUNT: usize = 70 * 1024;
/// One 70 KiB value: over the 60 KiB head limit.
static BIG_HEAD: [u8; BIG_PREFIX.len() + BIG_COUNT + 4] =
    build(BIG_PREFIX, b"b", BIG_COUNT, b"\r\n\r\n");

/// `(name, request bytes, expected status)`.
pub const MALFORMED_REQUESTS: &[(&str, &[u8], u16)] = &[
    // Content-Length / Transfer-Encoding conflicts (CL.TE and TE.CL smuggling).
    ("cl_then_te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_then_cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("te_gzip_chunked_list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_twice_list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_param", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x\r\n\r\n0\r\n\r\n", 400),
    ("te_xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("te_gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te_empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400),
    ("te_two_lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_on_http10", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_vertical_tab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("te_space_before_colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_quoted", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400),
    // Content-Length syntax.
    ("cl_duplicate_equal", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("cl_duplicate_different", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl_list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("cl_plus_sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl_negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl_inner_space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n0123456789", 400),
    ("cl_hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n0123456789abcdef", 400),
    ("cl_empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
    ("cl_overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    // Line endings and field syntax.
    ("bare_lf_request_line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare_lf_header", b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    ("bare_lf_end", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("bare_cr_header", b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400),
    ("nul_in_value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("bad_header_name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400),
    // Host.
    ("missing_host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("double_host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("host_space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host_slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host_at", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    ("host_backslash", b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400),
    ("host_bad_port", b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
    ("host_empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("absolute_form_host_mismatch", b"GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n", 400),
    ("absolute_form_userinfo", b"GET http://u@a/x HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    // Request line.
    ("asterisk_with_get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400),
    ("relative_target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment_in_target", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("space_in_target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("double_space_request_line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http2_version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    ("http09", b"GET /\r\n\r\n", 400),
    ("http12_version", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    ("lowercase_version", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    // Connection nominating framing headers.
    ("connection_content_length", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n\r\n", 400),
    ("connection_transfer_encoding", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Transfer-Encoding\r\n\r\n", 400),
    ("connection_host", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", 400),
    // Limits.
    ("request_line_too_long", &LONG_LINE, 414),
    ("too_many_headers", &MANY_HEADERS, 431),
    ("head_too_large", &BIG_HEAD, 431),
    // Malformed chunked bodies behind a valid head.
    ("chunk_size_empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_0x", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_negative", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_bare_lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    ("chunk_ext_bare_lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n", 400),
    ("chunk_ext_bare_cr", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rhello\r\n0\r\n\r\n", 400),
    ("chunk_data_no_crlf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 400),
    ("chunk_data_lf_only", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400),
    ("chunk_trailer_content_length", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 400),
    ("chunk_trailer_obs_fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("chunk_trailer_bare_lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\n\r\n", 400),
    ("chunk_final_bare_lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", 400),
];
