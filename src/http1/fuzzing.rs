//! Fuzz entry points for the codec (called by the targets in `fuzz/`), kept in the library so the
//! invariants they assert are compiled and unit-tested with everything else. Each function must
//! never panic on any input except when one of the codec's invariants is broken.

use super::body::{ChunkedDecoder, ChunkedError};
use super::parse::{parse_request, parse_response, Limits, Method};
use super::HeaderSpan;

/// Small limits so the fuzzer reaches the limit paths with short inputs.
const FUZZ_LIMITS: Limits = Limits {
    max_head_bytes: 2048,
    max_headers: 16,
    max_request_line: 512,
};

fn spans_inside(headers: &[HeaderSpan], head_len: usize) {
    for h in headers {
        assert!(
            h.name.start <= h.name.end && (h.name.end as usize) <= head_len,
            "name span outside head"
        );
        assert!(
            h.value.start <= h.value.end && (h.value.end as usize) <= head_len,
            "value span outside head"
        );
    }
}

/// Request heads: spans stay inside the head, the head parses the same without what follows it,
/// and a strict prefix of a complete head never parses as complete.
pub fn request(data: &[u8]) {
    let mut headers = Vec::new();
    let Ok(Some(head)) = parse_request(data, &mut headers, &FUZZ_LIMITS) else {
        return;
    };
    assert!(head.head_len <= data.len());
    spans_inside(&headers, head.head_len);
    for span in [
        Some(head.method_span),
        Some(head.target),
        head.host,
        head.upgrade,
    ]
    .into_iter()
    .flatten()
    {
        assert!(span.end as usize <= head.head_len, "span outside head");
    }
    let mut again = Vec::new();
    assert_eq!(
        parse_request(&data[..head.head_len], &mut again, &FUZZ_LIMITS),
        Ok(Some(head))
    );
    assert_eq!(again, headers);
    let shorter = parse_request(&data[..head.head_len - 1], &mut again, &FUZZ_LIMITS);
    assert_eq!(
        shorter,
        Ok(None),
        "a strict prefix of a complete head must ask for more"
    );
}

/// Response heads, with the request method picked by the first byte.
pub fn response(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let method = match selector % 4 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Connect,
        _ => Method::Post,
    };
    let mut headers = Vec::new();
    let Ok(Some(head)) = parse_response(data, &mut headers, method, &FUZZ_LIMITS) else {
        return;
    };
    assert!(head.head_len <= data.len() && (100..=599).contains(&head.status));
    spans_inside(&headers, head.head_len);
    let mut again = Vec::new();
    assert_eq!(
        parse_response(&data[..head.head_len], &mut again, method, &FUZZ_LIMITS),
        Ok(Some(head))
    );
}

fn decode(
    input: &[u8],
    step: usize,
    reencode: bool,
) -> (Result<usize, ChunkedError>, Vec<u8>, bool) {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut end = 0;
    while end < input.len() && !d.is_done() {
        end = (end + step).min(input.len());
        match d.feed(&input[pos..end], &mut out, reencode) {
            Ok(n) => pos += n,
            Err(e) => return (Err(e), out, false),
        }
    }
    (Ok(pos), out, d.is_done())
}

/// Chunked bodies: the result does not depend on how the input is split, and a completed stream
/// re-encodes into one that decodes to the same data.
pub fn chunked(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let whole = decode(data, data.len().max(1), false);
    let split = decode(data, usize::from(selector % 7) + 1, false);
    assert_eq!(whole.0, split.0, "result depends on the split");
    if whole.0.is_err() {
        return;
    }
    assert_eq!(whole.1, split.1, "data depends on the split");
    let framed = decode(data, data.len().max(1), true);
    assert_eq!(framed.0, whole.0);
    if whole.2 {
        let (used, plain, done) = decode(&framed.1, framed.1.len().max(1), false);
        assert!(done, "re-encoded stream is incomplete");
        assert_eq!(used, Ok(framed.1.len()));
        assert_eq!(plain, whole.1, "re-encoding changed the data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::vectors::MALFORMED_REQUESTS;

    /// Deterministic xorshift so the smoke run is reproducible.
    fn noise(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    const FUZZ_ROUNDS: usize = 40;

    #[test]
    fn smoke_on_vectors_and_mutations() {
        let seeds: [&[u8]; 4] = [
            b"GET http://a/b HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
            b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n",
            b"\x035;a=\"q\"\r\nhello\r\n0\r\nX: y\r\n\r\n",
            b"\x011\r\na\r\n0\r\n\r\n",
        ];
        let mut corpus: Vec<&[u8]> = MALFORMED_REQUESTS
            .iter()
            .map(|v| v.1)
            .filter(|b| b.len() < 4096)
            .collect();
        corpus.extend_from_slice(&seeds);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for input in corpus {
            let mut buf = input.to_vec();
            for _ in 0..FUZZ_ROUNDS {
                request(&buf);
                response(&buf);
                chunked(&buf);
                let at = (noise(&mut seed) as usize) % buf.len().max(1);
                if let Some(b) = buf.get_mut(at) {
                    *b = (noise(&mut seed) & 0xff) as u8;
                }
            }
        }
    }
}
