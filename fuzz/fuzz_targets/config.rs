//! Fuzz target `config`: the configuration walk that `--mode validate` runs. The invariants live in
//! `ringway::fuzzing::config` so they are compiled and smoke-tested with the library.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ringway::fuzzing::config(data);
});
