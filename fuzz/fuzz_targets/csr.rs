//! Fuzz target: a PKCS#10 request is verified, and signed when valid, without a panic (body:
//! `fuzz_smoke::targets::csr`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::csr(data);
});
