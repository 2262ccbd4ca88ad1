//! Fuzz target: the server answers the emulated PC reads (discovery, policy, RSTRC with its
//! provisioning document, faults) never panic (body: `fuzz_smoke::targets::enroll_response`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::enroll_response(data);
});
