//! Fuzz target `eds`: the EDS DiscoveryResponse file parser. The invariants live in
//! `ringway::fuzzing::eds` so they are compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::fuzzing::eds(data);
});
