//! Fuzz target `parse_response`: the invariants live in `ringway::http1::fuzzing::response` so they are
//! compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::http1::fuzzing::response(data);
});
