#!/usr/bin/env sh
# Rebuilds the seed corpus of every fuzz target (fuzz/corpus/<target>/) and the JWT seeds' key set
# (fuzz/keys/jwks.json) from shared/fixtures/real, found above the repository, plus inputs our
# own code makes (docs/fuzzing.md). Usage: fuzz/seed.sh (from anywhere; stable Rust).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec cargo run --quiet -p fuzz-smoke --bin fuzz-seed
