#!/usr/bin/env bash
# Rewrites citations of the design and protocol notes that used to live outside the repository
# (`protocol.md`, `DESIGN.md`, `../shared/DESIGN.md`) to the copies in `docs/`, so that every
# citation names a file that exists. A citation that named a design topic gets its section number
# (`DESIGN.md "Contract"` -> `docs/design.md §7`). Protocol citations keep their numbers:
# `docs/protocol.md` has the same sections and numbered facts.
#
#   scripts/fix-citations.sh            every tracked .rs, .md and .sh file
#   scripts/fix-citations.sh PATH...    only these files, or the tracked files under these folders
#
# Safe to run again: a rewritten citation is not matched a second time. The test
# `crates/redeploy/tests/it/docs.rs` fails on any citation left over.
set -euo pipefail
cd "$(dirname "$0")/.."

# The docs themselves, this script and the test that checks citations mention the old names on
# purpose.
skip='^(docs/protocol\.md|docs/design\.md|scripts/fix-citations\.sh|crates/redeploy/tests/it/docs\.rs)$'

mapfile -t files < <(git ls-files -- "${@:-.}" | grep -E '\.(rs|md|sh)$' | grep -Ev "$skip" || true)
[ "${#files[@]}" -gt 0 ] || exit 0

# A comment line may continue a quoted topic: "The\n//! Autopilot Reset action lifecycle".
perl -0777 -pi -e '
  my $c = qr{\s+(?://[/!]\s*)?};
  s{(?:\.\./)*shared/DESIGN\.md}{docs/design.md}g;
  s{(?:\.\./)*shared/protocol\.md}{docs/protocol.md}g;
  s{(?<![\w/.-])DESIGN\.md "Contract"}{docs/design.md §7}g;
  s{(?<![\w/.-])DESIGN\.md contract}{docs/design.md §7}g;
  s{contract in DESIGN\.md}{contract in docs/design.md §7}g;
  s{contract \(DESIGN\.md\)}{contract (docs/design.md §7)}g;
  s{(?<![\w/.-])DESIGN\.md: "the value a provisioning}{docs/design.md §7: "the value a provisioning}g;
  s{(?<![\w/.-])DESIGN\.md "Preflight"}{docs/design.md §5}g;
  s{(?<![\w/.-])DESIGN\.md "The flow of one check-in"}{docs/design.md §2}g;
  s{(?<![\w/.-])DESIGN\.md "(The${c}Autopilot${c}Reset${c}action${c}lifecycle")}{docs/design.md §4 "$1}g;
  s{blindly \(DESIGN\.md\)}{blindly (docs/design.md §4)}g;
  s{blindly, DESIGN\.md}{blindly, docs/design.md §4}g;
  s{(?<![\w/.-])DESIGN\.md}{docs/design.md}g;
  s{(?<![\w/.-])protocol\.md}{docs/protocol.md}g;
' "${files[@]}"
