//! Fuzz target: a renewal PKCS#7 is opened and its signer and CSR read without a panic (body:
//! `fuzz_smoke::targets::pkcs7_renewal`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::pkcs7_renewal(data);
});
