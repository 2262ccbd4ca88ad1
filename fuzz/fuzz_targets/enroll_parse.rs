//! Fuzz target: the enrollment SOAP requests (discovery, policy, RST and the CSR or PKCS#7 in it)
//! never panic the parser (body: `fuzz_smoke::targets::enroll_parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::enroll_parse(data);
});
