//! The first GOAWAY of Envoy's graceful drain, written into the server's outgoing bytes.
//!
//! Envoy drains an HTTP/2 connection in two steps: a "shutdown notice" (GOAWAY with the last
//! stream id 2^31-1 and NO_ERROR, RFC 9113 §6.8), then, `drain_timeout` later, the final GOAWAY
//! with the real last stream id; streams that race the notice are still served during that
//! grace. `h2` only offers its own two-step shutdown, whose grace is one PING round trip. So the
//! notice is ours: the connection loop asks for it, and the I/O adapter writes these 17 bytes
//! at the next frame boundary of what `h2` sends (never inside one of its frames); after
//! `drain_timeout` the loop starts `h2`'s shutdown, which sends the final GOAWAY.
//!
//! Finding frame boundaries needs only the 9-byte frame headers: [`OutboundFrames`] follows the
//! outgoing stream header by header and skips payloads by their length.

use std::cell::Cell;
use std::rc::Rc;

/// GOAWAY on stream 0, last stream id 2^31-1, NO_ERROR, no debug data.
pub const SHUTDOWN_NOTICE: [u8; 17] = [
    0, 0, 8,   // length
    0x7, // type GOAWAY
    0,   // flags
    0, 0, 0, 0, // stream 0
    0x7f, 0xff, 0xff, 0xff, // last stream id
    0, 0, 0, 0, // NO_ERROR
];

/// Where the outgoing byte stream is relative to its frames.
#[derive(Debug, Default)]
pub struct OutboundFrames {
    header: [u8; 9],
    /// Bytes of the next frame's header seen so far.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
}

impl OutboundFrames {
    /// Between two frames: a frame of ours can go here.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// Follows `bytes` as they are written.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                self.payload_left = (usize::from(self.header[0]) << 16)
                    | (usize::from(self.header[1]) << 8)
                    | usize::from(self.header[2]);
            }
        }
    }
}

/// The notice's progress, shared by the connection loop (which asks for it) and the I/O
/// adapter (which writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notice {
    #[default]
    NotWanted,
    /// Asked for; this many of its bytes are written.
    Writing(usize),
    Sent,
}

pub type NoticeHandle = Rc<Cell<Notice>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, ty: u8) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            ty,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend(std::iter::repeat_n(0xab, len));
        f
    }

    #[test]
    fn boundaries_are_found_however_the_writes_split_the_frames() {
        let stream: Vec<u8> = [frame(6, 4), frame(0, 4), frame(20_000, 0), frame(3, 1)].concat();
        let ends = [15, 24, 24 + 9 + 20_000, stream.len()];
        for step in [1, 2, 7, 9, 10, 4096, stream.len()] {
            let mut out = OutboundFrames::default();
            let mut at = 0;
            let mut seen = Vec::new();
            for chunk in stream.chunks(step) {
                for (i, b) in chunk.iter().enumerate() {
                    out.observe(std::slice::from_ref(b));
                    let _ = i;
                    at += 1;
                    if out.at_boundary() {
                        seen.push(at);
                    }
                }
            }
            assert_eq!(seen, ends, "byte by byte within chunks of {step}");
            let mut out = OutboundFrames::default();
            let mut at = 0;
            let mut whole = Vec::new();
            for chunk in stream.chunks(step) {
                out.observe(chunk);
                at += chunk.len();
                if out.at_boundary() {
                    whole.push(at);
                }
            }
            assert!(
                whole.iter().all(|e| ends.contains(e)),
                "chunks of {step}: {whole:?}"
            );
            assert!(out.at_boundary());
        }
    }

    #[test]
    fn the_notice_is_a_well_formed_goaway() {
        let mut out = OutboundFrames::default();
        out.observe(&SHUTDOWN_NOTICE[..16]);
        assert!(!out.at_boundary());
        out.observe(&SHUTDOWN_NOTICE[16..]);
        assert!(out.at_boundary());
        assert_eq!(SHUTDOWN_NOTICE[3], 0x7);
        assert_eq!(
            u32::from_be_bytes([0x7f, 0xff, 0xff, 0xff]),
            (1u32 << 31) - 1
        );
    }
}
