//! A small strict chunked-transfer decoder and encoder shared by the test upstream and the raw
//! client. It is deliberately separate from the proxy's codec: a test that decoded with the code
//! under test could not catch that code's mistakes.

use std::io::{self, BufRead, Read, Write};

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one CRLF-terminated line (without the CRLF); a bare LF is an error.
fn read_crlf_line<R: BufRead>(r: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(limit as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "eof in chunked body",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("chunked line not terminated by CRLF (or too long)"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

/// Decodes a chunked body from `r`, handing the data to `on_data` piece by piece (never more than
/// 64 KiB at a time, so a 10 MiB body streams). Returns the number of body bytes. Trailers are
/// read and discarded.
pub fn read_chunked<R: BufRead>(
    r: &mut R,
    mut on_data: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let line = read_crlf_line(r, 1024)?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or(&[]);
        if size_part.is_empty() || size_part.len() > 16 {
            return Err(bad("bad chunk size"));
        }
        let mut size = 0u64;
        for &c in size_part {
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| bad("non-hex chunk size"))?;
            size = size * 16 + u64::from(d);
        }
        if size == 0 {
            // Trailer section: lines until an empty one.
            loop {
                if read_crlf_line(r, 8192)?.is_empty() {
                    return Ok(total);
                }
            }
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..want])?;
            on_data(&buf[..want])?;
            left -= want as u64;
        }
        total += size;
        if !read_crlf_line(r, 2)?.is_empty() {
            return Err(bad("chunk data not followed by CRLF"));
        }
    }
}

/// Writes one chunk (nothing for empty data: an empty chunk would end the body).
pub fn write_chunk<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")
}

/// Writes the last chunk with no trailers.
pub fn write_last_chunk<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")
}

/// Encodes `data` as a complete chunked body in chunks of `chunk` bytes.
pub fn encode(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / chunk.max(1) * 12 + 8);
    for piece in data.chunks(chunk.max(1)) {
        let _ = write_chunk(&mut out, piece);
    }
    let _ = write_last_chunk(&mut out);
    out
}
