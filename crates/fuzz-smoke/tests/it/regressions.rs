//! Inputs the fuzzer once failed on (also in `fuzz/regressions/<target>/`, which every fuzz run
//! replays first); each must now be refused or accepted without a panic.

use fuzz_smoke::targets;

/// The bytes of `fuzz/regressions/<target>/<name>`.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_smoke::corpus::fuzz_dir()
        .join("regressions")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JWT whose `exp` is beyond i64: `check_times` added the leeway with overflow (fixed in
/// `server::federated`, tested there too). Unsigned, so it is refused.
#[test]
fn jwt_exp_beyond_i64() {
    assert!(targets::jwt(&regression("jwt", "exp-overflow.jwt")).is_err());
}
