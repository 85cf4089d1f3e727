//! Fuzz target `frame_guard`: the HTTP/2 FrameGuard (split invariance). The invariants live in
//! `ringway::fuzzing::frame_guard` so they are compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::fuzzing::frame_guard(data);
});
