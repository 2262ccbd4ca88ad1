#!/usr/bin/env sh
# Copy the real captures (and our own SyncML test messages) into the fuzz corpora.
# Usage: fuzz/seed.sh  (from anywhere; finds shared/fixtures/real above the repository or beside it)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fixtures=""
dir=$root
while [ "$dir" != "/" ]; do
    if [ -d "$dir/shared/fixtures/real" ]; then fixtures="$dir/shared/fixtures/real"; break; fi
    dir=$(dirname "$dir")
done
[ -n "$fixtures" ] || { echo "shared/fixtures/real not found above $root" >&2; exit 1; }

mkdir -p "$here/corpus/syncml_parse" "$here/corpus/enroll_parse"
for f in "$fixtures"/fleet-win10-21h1/*-syncml-*.xml "$fixtures"/fleet-win10-21h1-readme/*-syncml-*.xml \
         "$fixtures"/mattrax/basic-1.xml "$root"/crates/syncml/testdata/*.xml; do
    [ -f "$f" ] && cp "$f" "$here/corpus/syncml_parse/$(basename "$(dirname "$f")")-$(basename "$f")"
done
for f in "$fixtures"/fleet-win10-21h1/0[3-8]-*.xml "$fixtures"/mattrax/discovery-1.xml "$fixtures"/pytune/*.template.xml; do
    [ -f "$f" ] && cp "$f" "$here/corpus/enroll_parse/$(basename "$(dirname "$f")")-$(basename "$f")"
done
echo "seeded: $(ls "$here/corpus/syncml_parse" | wc -l) syncml_parse, $(ls "$here/corpus/enroll_parse" | wc -l) enroll_parse"
