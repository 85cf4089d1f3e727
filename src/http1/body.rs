//! STUB (replaced by the http1 work): signatures are the contract.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    Malformed(&'static str),
    TooLarge(&'static str),
}

/// Strict chunked decoder (own code, not httparse's `parse_chunk_size`).
#[derive(Debug, Default)]
pub struct ChunkedDecoder {}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {}
    }
    /// Consumes a prefix of `input`; appends to `out` either the re-encoded chunked stream
    /// (`reencode`: size lines we wrote, data, validated trailers, final CRLF) or the plain data.
    /// Returns how many bytes of `input` were consumed.
    pub fn feed(
        &mut self,
        _input: &[u8],
        _out: &mut Vec<u8>,
        _reencode: bool,
    ) -> Result<usize, ChunkedError> {
        unimplemented!()
    }
    /// The last chunk and trailers have been consumed.
    pub fn is_done(&self) -> bool {
        unimplemented!()
    }
}
