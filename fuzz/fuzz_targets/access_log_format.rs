//! Fuzz target `access_log_format`: access-log format strings (parse, then render). The invariants live in
//! `ringway::fuzzing::access_log_format` so they are compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::fuzzing::access_log_format(data);
});
