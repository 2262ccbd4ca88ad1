//! The bounded fuzz run CI executes (docs/fuzzing.md): one test per target replays its
//! regressions and seed corpus, then fuzzes it for `REDEPLOY_FUZZ_SECS` (default 3 s; `0` runs
//! only the committed inputs), and fails with the input, as a file and as base64, on a panic or
//! an input slower than one second. `regressions` holds the crashes found, as tests of their own.

mod regressions;

use std::path::Path;

use fuzz_smoke::run::{self, Settings};
use fuzz_smoke::targets;

/// Fuzzes the target called `name` and prints what the run did.
fn fuzz(name: &str) {
    let target = targets::by_name(name).expect("a known target");
    let settings = Settings::from_env(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes"))
        .unwrap_or_else(|e| panic!("{e}"));
    match run::run(target, &settings) {
        Ok(report) => {
            assert!(
                report.seeds > 0,
                "fuzz/corpus/{name} is empty: run fuzz/seed.sh"
            );
            println!("{report} [seed {}]", settings.seed);
        }
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn syncml_parse() {
    fuzz("syncml_parse");
}

#[test]
fn enroll_parse() {
    fuzz("enroll_parse");
}

#[test]
fn enroll_response() {
    fuzz("enroll_response");
}

#[test]
fn csr() {
    fuzz("csr");
}

#[test]
fn pkcs7_renewal() {
    fuzz("pkcs7_renewal");
}

#[test]
fn jwt() {
    fuzz("jwt");
}

/// Every target has a test above and a corpus.
#[test]
fn every_target_is_fuzzed() {
    let source = include_str!("main.rs");
    for target in targets::TARGETS {
        assert!(
            source.contains(&format!("fuzz(\"{}\")", target.name)),
            "{} has no test",
            target.name
        );
    }
}
