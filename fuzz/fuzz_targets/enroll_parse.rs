//! Fuzz target: the enrollment SOAP parser never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = enroll::parse_message(data);
});
