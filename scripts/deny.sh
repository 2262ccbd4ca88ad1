#!/usr/bin/env bash
# The dependency checks of deny.toml: licenses, bans (duplicate major versions are warnings) and
# sources always; advisories when the RustSec advisory database can be fetched (it is a git
# repository on GitHub: a machine that reaches only the package registries cannot fetch it, and
# this says so instead of failing). cargo-deny is built from crates.io the first time (about
# 3 minutes on 2 cores), then found installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny.sh: installing cargo-deny"
  cargo install --locked cargo-deny
fi
cargo deny --color never check --hide-inclusion-graph licenses bans sources
if cargo deny --color never fetch db >/dev/null 2>&1; then
  cargo deny --color never --offline check --hide-inclusion-graph advisories
else
  echo "deny.sh: advisories NOT checked: the RustSec advisory database could not be fetched" \
       "(run 'cargo deny check advisories' on a machine that reaches GitHub)"
fi
