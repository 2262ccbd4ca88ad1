//! Fuzz target: a federated JWT's header, key lookup, signature and claims are checked without a
//! panic (body: `fuzz_smoke::targets::jwt`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_smoke::targets::jwt(data);
});
