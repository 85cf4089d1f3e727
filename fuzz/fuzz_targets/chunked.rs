//! Fuzz target `chunked`: the invariants live in `ringway::http1::fuzzing::chunked` so they are
//! compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::http1::fuzzing::chunked(data);
});
