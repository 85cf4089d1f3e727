//! STUB (replaced by the lb work): a small fast per-worker PRNG (not cryptographic).

pub struct FastRng {}

impl FastRng {
    pub fn new(_seed: u64) -> Self {
        unimplemented!()
    }
    pub fn next_u64(&mut self) -> u64 {
        unimplemented!()
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, _n: u64) -> u64 {
        unimplemented!()
    }
    /// A random (version 4) UUID in its 36-character text form, written to `out`.
    pub fn write_uuid_v4(&mut self, _out: &mut Vec<u8>) {
        unimplemented!()
    }
}
