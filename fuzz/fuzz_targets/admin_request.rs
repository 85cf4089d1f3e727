//! Fuzz target `admin_request`: the admin listener's request reader. The invariants live in
//! `ringway::fuzzing::admin_request` so they are compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::fuzzing::admin_request(data);
});
