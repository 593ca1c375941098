#!/usr/bin/env bash
# Copy compiler outputs from ../shared/p4build/ into the project, but only for sources whose
# recorded SOURCE hash equals the current file: p4c is not installable here, so the P4 sources
# are compiled elsewhere and published there (see its README.md).
#
#   p4src/flowtable.p4   <- p4build/p4src__flowtable.p4/   -> p4src/build/
#   tests/p4/NAME.p4     <- p4build/tests__p4__NAME.p4/    -> tests/p4/build/NAME/
#
# Usage: scripts/import-p4build.sh [SOURCE.p4 ...]   (default: all of them)
# Exit status: 0 when every named source now has matching outputs, 1 otherwise.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
P4BUILD=${P4BUILD:-../shared/p4build}

sources=("$@")
if [ ${#sources[@]} -eq 0 ]; then
    sources=(p4src/flowtable.p4 tests/p4/*.p4)
fi

status=0
for src in "${sources[@]}"; do
    [ -f "$src" ] || { echo "MISSING  $src: no such source"; status=1; continue; }
    sha=$(sha256sum "$src" | cut -d' ' -f1)
    folder="$P4BUILD/${src//\//__}"
    if [ "$src" = p4src/flowtable.p4 ]; then
        dest=p4src/build
    else
        name=$(basename "$src" .p4)
        dest=tests/p4/build/$name
    fi
    if [ ! -f "$folder/SOURCE" ]; then
        echo "AWAITING $src: awaiting compilation of $sha (no $folder/SOURCE)"
        status=1; continue
    fi
    compiled=$(grep -oE '[0-9a-f]{64}' "$folder/SOURCE" | head -n1)
    if [ "$compiled" != "$sha" ]; then
        echo "STALE    $src: $folder holds the outputs of ${compiled:-<no hash>}, the source is $sha"
        status=1; continue
    fi
    jsons=("$folder"/*.json)
    if [ ${#jsons[@]} -eq 0 ]; then
        echo "FAILED   $src: the compiler produced no JSON for $sha; $folder/diagnostics.txt says:"
        sed 's/^/    /' "$folder/diagnostics.txt" 2>/dev/null
        status=1; continue
    fi
    mkdir -p "$dest"
    for f in "$folder"/*.json "$folder"/*.txtpb "$folder/diagnostics.txt" "$folder/COMMAND"; do
        [ -f "$f" ] && cp "$f" "$dest/"
    done
    (cd "$(dirname "$src")" && sha256sum "$(basename "$src")") > "$dest/SOURCE.sha256"
    echo "IMPORTED $src -> $dest ($sha)"
    if [ -s "$folder/diagnostics.txt" ]; then
        echo "    compiler diagnostics:"; sed 's/^/    /' "$folder/diagnostics.txt"
    fi
done
exit $status
