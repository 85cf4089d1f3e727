//! A small, fast, per-worker pseudo-random generator (xoshiro256**), not cryptographic.
//!
//! Workers need randomness on the request path (load-balancer choices, x-request-id UUIDs) and must
//! not share state or take locks for it, so each worker owns one `FastRng` seeded at start-up.
//! xoshiro256** is four words of state, a handful of ALU operations per draw, and passes the usual
//! statistical batteries; nothing here needs unpredictability to an attacker (request ids are
//! correlation ids, not secrets).

/// xoshiro256** state. Never all zero (the one state the generator cannot leave).
#[derive(Debug, Clone)]
pub struct FastRng {
    s: [u64; 4],
}

/// splitmix64 step: spreads any seed (including 0 and small consecutive worker ids) over the full
/// state, as the xoshiro authors recommend for seeding.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl FastRng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = splitmix64(&mut sm);
        }
        // splitmix64 is a bijection over successive counters, so four zero outputs in a row cannot
        // happen; the guard keeps the invariant explicit rather than relying on that argument.
        if s == [0; 4] {
            s[0] = 1;
        }
        FastRng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in 0..n (n > 0; returns 0 for n == 0 rather than panicking on the request path).
    ///
    /// Lemire's multiply-shift: the high word of `x * n` is in 0..n; the low word tells when `x`
    /// fell into the short final bucket that would bias the result, and those draws are rejected.
    /// The division computing the threshold only runs in that rare case.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// A random (version 4) UUID in its 36-character text form, written to `out`.
    ///
    /// RFC 9562 layout: 122 random bits, version nibble 4 (byte 6 high nibble), variant bits `10`
    /// (byte 8 top two bits); lowercase hex in 8-4-4-4-12 groups.
    pub fn write_uuid_v4(&mut self, out: &mut Vec<u8>) {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        out.reserve(36);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push(b'-');
            }
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0F)]);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uuid_shape_version_and_variant() {
        let mut rng = FastRng::new(7);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            rng.write_uuid_v4(&mut out);
            assert_eq!(out.len(), 36);
            for (i, c) in out.iter().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    assert_eq!(*c, b'-');
                } else {
                    assert!(c.is_ascii_digit() || (b'a'..=b'f').contains(c), "{c}");
                }
            }
            assert_eq!(out[14], b'4', "version nibble");
            assert!(matches!(out[19], b'8' | b'9' | b'a' | b'b'), "variant bits");
        }
    }

    #[test]
    fn uuid_appends_without_clearing() {
        let mut rng = FastRng::new(1);
        let mut out = b"id=".to_vec();
        rng.write_uuid_v4(&mut out);
        assert_eq!(&out[..3], b"id=");
        assert_eq!(out.len(), 39);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = FastRng::new(42);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[rng.below(3) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn below_stays_in_range_for_awkward_bounds() {
        let mut rng = FastRng::new(3);
        for n in [1u64, 2, 7, u64::MAX / 2 + 1, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        assert_eq!(rng.below(1), 0);
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn seeds_differ_and_zero_works() {
        let draw = |seed| {
            let mut r = FastRng::new(seed);
            [r.next_u64(), r.next_u64(), r.next_u64()]
        };
        assert_ne!(draw(0), draw(1));
        assert_ne!(draw(1), draw(2));
        assert_eq!(draw(5), draw(5));
        let z = draw(0);
        assert!(z.iter().any(|&x| x != 0));
        assert_ne!(z[0], z[1]);
    }

    #[test]
    fn bits_are_balanced() {
        // A stuck or mis-rotated state word shows up as a biased bit.
        let mut rng = FastRng::new(0);
        let mut ones = [0u32; 64];
        for _ in 0..10_000 {
            let x = rng.next_u64();
            for (b, o) in ones.iter_mut().enumerate() {
                *o += ((x >> b) & 1) as u32;
            }
        }
        for o in ones {
            assert!((4_600..=5_400).contains(&o), "{o}");
        }
    }
}
