//! Fuzz target: the SyncML parser never panics, and what it accepts survives write -> parse (body:
//! `fuzz_smoke::targets::syncml_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::syncml_parse(data);
});
