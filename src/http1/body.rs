//! Strict, incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! Our own state machine rather than httparse's `parse_chunk_size`, which accepts an empty size and
//! a bare LF inside extensions: both are framing disagreements a smuggler can use. The decoder
//! takes bytes as they arrive (one at a time works), validates every size line, extension and
//! trailer, and either re-encodes the stream with its own size lines (extensions dropped, trailers
//! kept once validated) or emits the bare data. Bytes after the final CRLF are left unconsumed so a
//! pipelined request that follows stays in the caller's buffer.
//!
//! States (one line of the grammar each):
//!
//! ```text
//! Size ──hex──▶ Size ──CR──▶ SizeLf ──LF──▶ Data(n) ──n bytes──▶ DataCr ─CR─▶ DataLf ─LF─▶ Size
//!   │ ";" or BWS ";"                      │ (size 0)
//!   ▼                                     ▼
//! ExtPreName ▶ ExtName ▶ [ "=" ▶ ExtValue | ExtQuoted ] ─CR─▶ SizeLf    TrailerStart ◀──────┐
//!                                                      CR │     │ tchar                    │
//!                                                         ▼     ▼                          │
//!                                                    FinalLf  TrailerName ─:─▶ TrailerValue─CRLF
//!                                                         │ LF
//!                                                         ▼
//!                                                        Done
//! ```

use super::encode;
use super::fields::is_tchar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    Malformed(&'static str),
    TooLarge(&'static str),
}

/// Longest chunk-size line we read, extensions included (they are dropped anyway).
const MAX_SIZE_LINE: usize = 4 * 1024;
/// Total bytes of the trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
/// Longest trailer name that must be held back before it is known not to be forbidden
/// (`transfer-encoding`).
const NAME_HOLD: usize = 17;
/// Trailer fields that would change framing or routing if a later hop merged them into the head.
const FORBIDDEN_TRAILERS: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading chunk-size hex digits (`digits` so far, in `size`).
    #[default]
    Size,
    /// BWS after the size or an extension, before `;`.
    PreSemi,
    /// After `;`: BWS, then the extension name.
    ExtPreName,
    ExtName,
    /// BWS after an extension name: `=`, `;` may follow.
    ExtAfterName,
    /// After `=`: BWS, then a token or quoted-string.
    ExtPreValue,
    ExtValueToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After the closing quote.
    ExtAfterQuoted,
    /// CR of a size line seen.
    SizeLf,
    /// Inside chunk data; `remaining` bytes left.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    /// An error was returned; the stream is unusable and every later feed fails.
    Failed,
}

/// Strict chunked decoder (own code, not httparse's `parse_chunk_size`).
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read (while in size states) or data bytes left (in `Data`).
    size: u64,
    /// Hex digits read for the current size.
    digits: u8,
    /// Bytes of the current size line, bounded by `MAX_SIZE_LINE`.
    line_len: usize,
    /// Bytes of the trailer section so far, bounded by `MAX_TRAILERS`.
    trailer_len: usize,
    /// The start of the current trailer name, held until it is known not to be forbidden.
    name: [u8; NAME_HOLD],
    name_len: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder::default()
    }

    /// Consumes a prefix of `input`; appends to `out` either the re-encoded chunked stream
    /// (`reencode`: size lines we wrote, data, validated trailers, final CRLF) or the plain data.
    /// Returns how many bytes of `input` were consumed. After an error every later call fails too
    /// (the stream is unusable).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        reencode: bool,
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    let avail = input.len() - i;
                    let take = usize::try_from(self.size).map_or(avail, |left| left.min(avail));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Failed => {
                    return Err(ChunkedError::Malformed("chunked stream already failed"))
                }
                _ => {
                    if let Err(e) = self.step(input[i], out, reencode) {
                        self.state = State::Failed;
                        return Err(e);
                    }
                    i += 1;
                }
            }
        }
        Ok(i)
    }

    /// The last chunk and trailers have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one byte of a size line, a data terminator or the trailer section.
    fn step(&mut self, b: u8, out: &mut Vec<u8>, reencode: bool) -> Result<(), ChunkedError> {
        use ChunkedError::{Malformed, TooLarge};
        use State::*;
        let ws = b == b' ' || b == b'\t';
        if matches!(
            self.state,
            Size | PreSemi
                | ExtPreName
                | ExtName
                | ExtAfterName
                | ExtPreValue
                | ExtValueToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtAfterQuoted
                | SizeLf
        ) {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(TooLarge("chunk size line too long"));
            }
        }
        if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(TooLarge("trailers too large"));
            }
        }
        self.state = match (self.state, b) {
            (Size, _) if b.is_ascii_hexdigit() => {
                if self.size > u64::MAX >> 4 {
                    return Err(Malformed("chunk size overflows u64"));
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                self.size = (self.size << 4) | u64::from(digit);
                self.digits = self.digits.saturating_add(1);
                Size
            }
            (Size, _) if self.digits == 0 => return Err(Malformed("chunk size missing")),
            (Size, b';') => ExtPreName,
            (Size, _) if ws => PreSemi,
            (Size, b'\r') => SizeLf,
            (Size, _) => return Err(Malformed("invalid chunk size")),

            (PreSemi, _) if ws => PreSemi,
            (PreSemi, b';') => ExtPreName,
            (PreSemi, _) => return Err(Malformed("invalid chunk extension")),

            (ExtPreName, _) if ws => ExtPreName,
            (ExtPreName, _) if is_tchar(b) => ExtName,
            (ExtPreName, _) => return Err(Malformed("invalid chunk extension name")),

            (ExtName, _) if is_tchar(b) => ExtName,
            (ExtName, _) if ws => ExtAfterName,
            (ExtName, b'=') => ExtPreValue,
            (ExtName, b';') => ExtPreName,
            (ExtName, b'\r') => SizeLf,
            (ExtName, _) => return Err(Malformed("invalid chunk extension name")),

            (ExtAfterName, _) if ws => ExtAfterName,
            (ExtAfterName, b'=') => ExtPreValue,
            (ExtAfterName, b';') => ExtPreName,
            (ExtAfterName, _) => return Err(Malformed("invalid chunk extension")),

            (ExtPreValue, _) if ws => ExtPreValue,
            (ExtPreValue, _) if is_tchar(b) => ExtValueToken,
            (ExtPreValue, b'"') => ExtQuoted,
            (ExtPreValue, _) => return Err(Malformed("invalid chunk extension value")),

            (ExtValueToken, _) if is_tchar(b) => ExtValueToken,
            (ExtValueToken, _) if ws => PreSemi,
            (ExtValueToken, b';') => ExtPreName,
            (ExtValueToken, b'\r') => SizeLf,
            (ExtValueToken, _) => return Err(Malformed("invalid chunk extension value")),

            (ExtQuoted, b'"') => ExtAfterQuoted,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            // qdtext: HTAB, SP, VCHAR except `"` and `\`, obs-text.
            (ExtQuoted, _) if ws || (0x21..0x7f).contains(&b) || b >= 0x80 => ExtQuoted,
            (ExtQuoted, _) => return Err(Malformed("invalid quoted chunk extension")),
            (ExtQuotedEscape, _) if ws || (0x21..0x7f).contains(&b) || b >= 0x80 => ExtQuoted,
            (ExtQuotedEscape, _) => {
                return Err(Malformed("invalid quoted-pair in chunk extension"))
            }

            (ExtAfterQuoted, _) if ws => PreSemi,
            (ExtAfterQuoted, b';') => ExtPreName,
            (ExtAfterQuoted, b'\r') => SizeLf,
            (ExtAfterQuoted, _) => return Err(Malformed("invalid chunk extension")),

            (SizeLf, b'\n') => {
                self.line_len = 0;
                self.digits = 0;
                if reencode {
                    encode::write_chunk_size(out, self.size);
                }
                if self.size == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (SizeLf, _) => return Err(Malformed("bare CR in chunk size line")),

            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(Malformed("chunk data not followed by CRLF")),
            (DataLf, b'\n') => {
                if reencode {
                    out.extend_from_slice(b"\r\n");
                }
                Size
            }
            (DataLf, _) => return Err(Malformed("chunk data not followed by CRLF")),

            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart, _) if is_tchar(b) => {
                self.name_len = 0;
                self.hold_name_byte(b, out, reencode);
                TrailerName
            }
            (TrailerStart, _) => return Err(Malformed("invalid trailer line")),

            (TrailerName, _) if is_tchar(b) => {
                self.hold_name_byte(b, out, reencode);
                TrailerName
            }
            (TrailerName, b':') => {
                if self.name_len <= NAME_HOLD {
                    let name = &self.name[..self.name_len];
                    if FORBIDDEN_TRAILERS
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case(name))
                    {
                        return Err(Malformed("forbidden trailer field"));
                    }
                    if reencode {
                        out.extend_from_slice(name);
                    }
                }
                if reencode {
                    out.push(b':');
                }
                TrailerValue
            }
            (TrailerName, _) => return Err(Malformed("invalid trailer name")),

            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if super::fields::is_field_value_byte(b) => {
                if reencode {
                    out.push(b);
                }
                TrailerValue
            }
            (TrailerValue, _) => return Err(Malformed("invalid trailer value")),
            (TrailerLf, b'\n') => {
                if reencode {
                    out.extend_from_slice(b"\r\n");
                }
                TrailerStart
            }
            (TrailerLf, _) => return Err(Malformed("bare CR in trailer")),

            (FinalLf, b'\n') => {
                if reencode {
                    out.extend_from_slice(b"\r\n");
                }
                Done
            }
            (FinalLf, _) => return Err(Malformed("bare CR after last chunk")),

            (Data | Done | Failed, _) => self.state,
        };
        Ok(())
    }

    /// Holds the first `NAME_HOLD` bytes of a trailer name; once a name is longer than any
    /// forbidden one it cannot be forbidden, so what was held is released to `out`.
    fn hold_name_byte(&mut self, b: u8, out: &mut Vec<u8>, reencode: bool) {
        if self.name_len < NAME_HOLD {
            self.name[self.name_len] = b;
        } else if reencode {
            if self.name_len == NAME_HOLD {
                out.extend_from_slice(&self.name);
            }
            out.push(b);
        }
        self.name_len += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, re-offering unconsumed bytes like a connection
    /// loop does. Returns (output, bytes consumed).
    fn run(input: &[u8], step: usize, reencode: bool) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut end = 0;
        while end < input.len() && !d.is_done() {
            end = (end + step).min(input.len());
            pos += d.feed(&input[pos..end], &mut out, reencode)?;
        }
        Ok((out, pos))
    }

    fn all_steps(input: &[u8], reencode: bool) -> Result<(Vec<u8>, usize), ChunkedError> {
        let whole = run(input, input.len().max(1), reencode);
        for step in 1..input.len().min(9) {
            assert_eq!(
                run(input, step, reencode),
                whole,
                "step {step} for {:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    #[test]
    fn decodes_and_reencodes() {
        let input = b"5\r\nhello\r\n01A;ext=1 ; flag ;q=\"a\\\"b\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nLong-Trailer-Name-Here: ok\r\n\r\nGET /next";
        let (plain, used) = all_steps(input, false).unwrap();
        assert_eq!(plain, b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(&input[used..], b"GET /next");
        let (framed, used2) = all_steps(input, true).unwrap();
        assert_eq!(used2, used);
        assert_eq!(
            framed,
            b"5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nLong-Trailer-Name-Here: ok\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn done_state_consumes_nothing() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.feed(b"0\r\n\r\n", &mut out, true).unwrap(), 5);
        assert!(d.is_done());
        assert_eq!(d.feed(b"more", &mut out, true).unwrap(), 0);
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn incomplete_is_not_done() {
        for input in [
            &b"5\r\nhel"[..],
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"0\r\nA: b\r\n",
            b"0\r\n\r",
        ] {
            let mut d = ChunkedDecoder::new();
            let used = d.feed(input, &mut Vec::new(), true).unwrap();
            assert_eq!(used, input.len());
            assert!(!d.is_done());
        }
    }

    #[test]
    fn malformed_vectors() {
        use ChunkedError::*;
        let table: &[(&str, &[u8], ChunkedError)] = &[
            ("empty size", b"\r\n", Malformed("chunk size missing")),
            (
                "hex prefix",
                b"0x5\r\nhello\r\n0\r\n\r\n",
                Malformed("invalid chunk size"),
            ),
            (
                "signed size",
                b"+5\r\nhello\r\n",
                Malformed("chunk size missing"),
            ),
            (
                "space before size",
                b" 5\r\nhello\r\n",
                Malformed("chunk size missing"),
            ),
            (
                "trailing space no ext",
                b"5 \r\nhello\r\n",
                Malformed("invalid chunk extension"),
            ),
            (
                "bare LF after size",
                b"5\nhello\r\n",
                Malformed("invalid chunk size"),
            ),
            (
                "bare CR after size",
                b"5\rhello\r\n",
                Malformed("bare CR in chunk size line"),
            ),
            (
                "bare LF in extension",
                b"5;a\nhello\r\n",
                Malformed("invalid chunk extension name"),
            ),
            (
                "bare LF in ext value",
                b"5;a=b\nhello\r\n",
                Malformed("invalid chunk extension value"),
            ),
            (
                "empty ext name",
                b"5;\r\nhello\r\n",
                Malformed("invalid chunk extension name"),
            ),
            (
                "ext value missing",
                b"5;a=\r\nhello\r\n",
                Malformed("invalid chunk extension value"),
            ),
            (
                "unterminated quote",
                b"5;a=\"b\r\nhello\r\n",
                Malformed("invalid quoted chunk extension"),
            ),
            (
                "missing CRLF after data",
                b"5\r\nhelloX\r\n0\r\n\r\n",
                Malformed("chunk data not followed by CRLF"),
            ),
            (
                "LF only after data",
                b"5\r\nhello\n0\r\n\r\n",
                Malformed("chunk data not followed by CRLF"),
            ),
            (
                "CR only after data",
                b"5\r\nhello\rX",
                Malformed("chunk data not followed by CRLF"),
            ),
            (
                "overflow",
                b"10000000000000000\r\n",
                Malformed("chunk size overflows u64"),
            ),
            (
                "forbidden trailer CL",
                b"0\r\nContent-Length: 5\r\n\r\n",
                Malformed("forbidden trailer field"),
            ),
            (
                "forbidden trailer TE",
                b"0\r\ntransfer-encoding: chunked\r\n\r\n",
                Malformed("forbidden trailer field"),
            ),
            (
                "forbidden trailer host",
                b"0\r\nHOST: a\r\n\r\n",
                Malformed("forbidden trailer field"),
            ),
            (
                "trailer obs-fold",
                b"0\r\nA: b\r\n c\r\n\r\n",
                Malformed("invalid trailer line"),
            ),
            (
                "trailer space before colon",
                b"0\r\nA : b\r\n\r\n",
                Malformed("invalid trailer name"),
            ),
            (
                "trailer bare LF",
                b"0\r\nA: b\n\r\n",
                Malformed("invalid trailer value"),
            ),
            (
                "trailer NUL",
                b"0\r\nA: b\x00\r\n\r\n",
                Malformed("invalid trailer value"),
            ),
            (
                "final bare LF",
                b"0\r\n\n",
                Malformed("invalid trailer line"),
            ),
            (
                "final bare CR",
                b"0\r\n\rX",
                Malformed("bare CR after last chunk"),
            ),
        ];
        for (name, input, want) in table {
            for reencode in [false, true] {
                for step in 1..=input.len() {
                    assert_eq!(run(input, step, reencode), Err(*want), "{name} step {step}");
                }
            }
        }
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"x", &mut Vec::new(), false).is_err());
        assert!(d.feed(b"0\r\n\r\n", &mut Vec::new(), false).is_err());
        assert!(!d.is_done());
    }

    #[test]
    fn sixteen_hex_digits_fit() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.feed(b"ffffffffffffffff\r\nab", &mut Vec::new(), false)
                .unwrap(),
            20
        );
        let mut d = ChunkedDecoder::new();
        let padded = b"0000000000000000000005\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            d.feed(padded, &mut Vec::new(), false).unwrap(),
            padded.len()
        );
        assert!(d.is_done());
    }

    #[test]
    fn limits() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            run(&line, 1000, false),
            Err(ChunkedError::TooLarge("chunk size line too long"))
        );

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 100 {
            trailers.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            run(&trailers, 1000, true),
            Err(ChunkedError::TooLarge("trailers too large"))
        );
    }
}
