//! Frame accounting below `h2`: the HTTP/2 abuse `h2` itself does not stop.
//!
//! `h2` hides control frames from its user, so a peer can flood PINGs or SETTINGS, open and
//! reset streams as fast as it can write (Rapid Reset, CVE-2023-44487), or send endless empty
//! frames, and the proxy would only ever see the CPU bill. [`FrameGuard`] reads the 9-byte frame
//! headers of the client's byte stream as it passes to `h2` (payloads are skipped, never copied)
//! and trips when the connection crosses one of Envoy's flood rules. The caller then sends
//! GOAWAY `ENHANCE_YOUR_CALM` and closes.
//!
//! The rules, per connection:
//! - premature resets: once at least [`RESET_MIN_STREAMS`] streams were opened, more than half
//!   of them reset by the client (Envoy's `premature_reset_total_stream_count` rule);
//! - control-frame flood: more than [`MAX_CONTROL_FRAMES_PER_SEC`] PING or SETTINGS frames
//!   (ACKs excluded) within one second;
//! - empty-frame flood: more than [`MAX_CONSECUTIVE_EMPTY`] consecutive frames with an empty
//!   payload that end nothing (Envoy's `max_consecutive_inbound_frames_with_empty_payload`);
//! - CONTINUATION flood: more than [`MAX_CONTINUATIONS`] CONTINUATION frames in one header block.

use std::time::{Duration, Instant};

pub const RESET_MIN_STREAMS: u64 = 500;
pub const MAX_CONTROL_FRAMES_PER_SEC: u32 = 1_000;
pub const MAX_CONSECUTIVE_EMPTY: u32 = 100;
/// Enough CONTINUATION frames for any header block within [`MAX_HEADER_LIST_SIZE`] at the
/// default 16 KiB frame size, with a quarter for imperfect packing and at least 5: the limit
/// the h2 crate derives for itself from the same setting. Equal limits make this rule the one
/// that fires: the guard sees a frame's header before h2 sees the frame, and hides the read
/// that trips it, so h2 never counts past its own limit first (with a looser rule here, a flood
/// split over several reads was cut off by h2, uncounted).
///
/// [`MAX_HEADER_LIST_SIZE`]: super::MAX_HEADER_LIST_SIZE
pub const MAX_CONTINUATIONS: u32 = {
    let frames = super::MAX_HEADER_LIST_SIZE / DEFAULT_FRAME_SIZE;
    let frames = if frames == 0 { 1 } else { frames };
    let limit = frames + (frames >> 2);
    if limit < 5 {
        5
    } else {
        limit
    }
};

/// SETTINGS_MAX_FRAME_SIZE's initial value (RFC 9113 §6.5.2); Ringway does not raise it.
const DEFAULT_FRAME_SIZE: u32 = 16_384;

const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// Why a connection was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    PrematureResets,
    ControlFlood,
    EmptyFrames,
    ContinuationFlood,
}

impl Abuse {
    /// The counter a tripped rule increments (Envoy's names where Envoy has the defence).
    pub fn stat(self) -> crate::stats::HttpStat {
        use crate::stats::HttpStat;
        match self {
            Abuse::PrematureResets => HttpStat::DownstreamRqTooManyPrematureResets,
            Abuse::ControlFlood => HttpStat::Http2OutboundControlFlood,
            Abuse::EmptyFrames => HttpStat::Http2InboundEmptyFramesFlood,
            Abuse::ContinuationFlood => HttpStat::Http2InboundContinuationFlood,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Abuse::PrematureResets => "too many streams reset by the client",
            Abuse::ControlFlood => "PING/SETTINGS flood",
            Abuse::EmptyFrames => "too many empty frames",
            Abuse::ContinuationFlood => "CONTINUATION flood",
        }
    }
}

/// Incremental frame-header parser and the counters the rules need.
#[derive(Debug)]
pub struct FrameGuard {
    /// Bytes of the connection preface still to skip.
    preface_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: u64,
    highest_stream: u32,
    streams_opened: u64,
    streams_reset: u64,
    control_in_window: u32,
    window_start: Option<Instant>,
    consecutive_empty: u32,
    continuations: u32,
    tripped: Option<Abuse>,
}

impl FrameGuard {
    /// `preface`: whether the stream starts with the 24-byte client preface (server side).
    pub fn new(preface: bool) -> FrameGuard {
        FrameGuard {
            preface_left: if preface { 24 } else { 0 },
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
            highest_stream: 0,
            streams_opened: 0,
            streams_reset: 0,
            control_in_window: 0,
            window_start: None,
            consecutive_empty: 0,
            continuations: 0,
            tripped: None,
        }
    }

    pub fn tripped(&self) -> Option<Abuse> {
        self.tripped
    }

    /// Accounts for bytes the client sent, in order. Returns the abuse once one is seen.
    pub fn observe(&mut self, mut bytes: &[u8], now: Instant) -> Option<Abuse> {
        while !bytes.is_empty() && self.tripped.is_none() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == FRAME_HEADER {
                self.header_len = 0;
                let h = self.header;
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.payload_left = u64::from(len);
                self.tripped = self.frame(h[3], h[4], len, stream, now);
            }
        }
        self.tripped
    }

    fn frame(&mut self, kind: u8, flags: u8, len: u32, stream: u32, now: Instant) -> Option<Abuse> {
        // Empty frames that carry nothing and end nothing.
        let empty = len == 0
            && match kind {
                DATA => flags & FLAG_END_STREAM == 0,
                HEADERS | CONTINUATION => flags & (FLAG_END_HEADERS | FLAG_END_STREAM) == 0,
                _ => false,
            };
        if empty {
            self.consecutive_empty += 1;
            if self.consecutive_empty > MAX_CONSECUTIVE_EMPTY {
                return Some(Abuse::EmptyFrames);
            }
        } else {
            self.consecutive_empty = 0;
        }
        match kind {
            HEADERS => {
                if stream > self.highest_stream {
                    self.highest_stream = stream;
                    self.streams_opened += 1;
                }
                self.continuations = 0;
            }
            CONTINUATION => {
                self.continuations += 1;
                if self.continuations > MAX_CONTINUATIONS {
                    return Some(Abuse::ContinuationFlood);
                }
            }
            RST_STREAM => {
                self.streams_reset += 1;
                if self.streams_opened >= RESET_MIN_STREAMS
                    && self.streams_reset * 2 > self.streams_opened
                {
                    return Some(Abuse::PrematureResets);
                }
            }
            PING | SETTINGS if flags & FLAG_ACK == 0 => {
                let start = *self.window_start.get_or_insert(now);
                if now.duration_since(start) >= Duration::from_secs(1) {
                    self.window_start = Some(now);
                    self.control_in_window = 0;
                }
                self.control_in_window += 1;
                if self.control_in_window > MAX_CONTROL_FRAMES_PER_SEC {
                    return Some(Abuse::ControlFlood);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `bytes` one byte at a time: frame headers split anywhere must parse the same.
    fn feed_bytewise(g: &mut FrameGuard, bytes: &[u8], now: Instant) -> Option<Abuse> {
        let mut out = None;
        for b in bytes {
            out = g.observe(std::slice::from_ref(b), now);
            if out.is_some() {
                break;
            }
        }
        out
    }

    #[test]
    fn rapid_reset_trips_after_half_of_500_streams() {
        let now = Instant::now();
        let mut g = FrameGuard::new(true);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[]));
        assert_eq!(g.observe(&bytes, now), None);
        let mut tripped_at = None;
        for i in 0..600u32 {
            let id = 2 * i + 1;
            let mut b = frame(
                HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                id,
                &[0x82, 0x84],
            );
            b.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
            if g.observe(&b, now).is_some() {
                tripped_at = Some(i + 1);
                break;
            }
        }
        assert_eq!(tripped_at, Some(500));
        assert_eq!(g.tripped(), Some(Abuse::PrematureResets));
    }

    #[test]
    fn ordinary_traffic_never_trips() {
        let now = Instant::now();
        let mut g = FrameGuard::new(false);
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            let mut b = frame(HEADERS, FLAG_END_HEADERS, id, &[0x82, 0x84, 0x86]);
            b.extend(frame(DATA, 0, id, &[7; 100]));
            b.extend(frame(DATA, FLAG_END_STREAM, id, &[]));
            b.extend(frame(PING, FLAG_ACK, 0, &[0; 8]));
            assert_eq!(feed_bytewise(&mut g, &b, now), None);
        }
        // A few cancelled streams are normal browser behaviour.
        for id in [1u32, 3, 5] {
            assert_eq!(
                g.observe(&frame(RST_STREAM, 0, id, &[0, 0, 0, 8]), now),
                None
            );
        }
    }

    #[test]
    fn ping_flood_trips_within_a_second_but_not_spread_out() {
        let start = Instant::now();
        let mut g = FrameGuard::new(false);
        let ping = frame(PING, 0, 0, &[1; 8]);
        for _ in 0..MAX_CONTROL_FRAMES_PER_SEC {
            assert_eq!(g.observe(&ping, start), None);
        }
        assert_eq!(g.observe(&ping, start), Some(Abuse::ControlFlood));

        let mut g = FrameGuard::new(false);
        for s in 0..5u64 {
            let now = start + Duration::from_millis(1001 * s);
            for _ in 0..MAX_CONTROL_FRAMES_PER_SEC / 2 {
                assert_eq!(g.observe(&ping, now), None);
            }
        }
    }

    #[test]
    fn continuation_and_empty_frame_floods_trip() {
        let now = Instant::now();
        let mut g = FrameGuard::new(false);
        let mut b = frame(HEADERS, 0, 1, &[0x82]);
        for _ in 0..=MAX_CONTINUATIONS {
            b.extend(frame(CONTINUATION, 0, 1, &[0x84]));
        }
        assert_eq!(
            feed_bytewise(&mut g, &b, now),
            Some(Abuse::ContinuationFlood)
        );

        let mut g = FrameGuard::new(false);
        let mut b = frame(HEADERS, FLAG_END_HEADERS, 1, &[0x82]);
        for _ in 0..=MAX_CONSECUTIVE_EMPTY {
            b.extend(frame(DATA, 0, 1, &[]));
        }
        assert_eq!(g.observe(&b, now), Some(Abuse::EmptyFrames));
    }

    #[test]
    fn large_payloads_are_skipped_not_parsed() {
        let now = Instant::now();
        let mut g = FrameGuard::new(false);
        // A DATA payload full of bytes that would look like PING headers if parsed.
        let fake_ping = frame(PING, 0, 0, &[0; 8]);
        let payload: Vec<u8> = fake_ping
            .iter()
            .cycle()
            .take(16_000 * 17)
            .copied()
            .collect();
        let b = frame(DATA, 0, 1, &payload[..16_000]);
        for _ in 0..200 {
            assert_eq!(g.observe(&b, now), None);
        }
    }
}
