#!/usr/bin/env bash
# Compile the project's P4 sources with p4c-bm2-ss, exactly as ../shared/p4build/*/COMMAND shows,
# into the layout scripts/import-p4build.sh writes (so both routes give the same tree):
#
#   p4src/flowtable.p4  -> p4src/build/       flowtable.json flowtable.p4info.txtpb
#   tests/p4/NAME.p4    -> tests/p4/build/NAME/   NAME.json NAME.p4info.txtpb
#   each with COMMAND, diagnostics.txt (all the compiler printed) and SOURCE.sha256.
#
# Usage: scripts/compile-p4.sh [SOURCE.p4 ...]   (default: all of them)
# For contributors with p4c installed; the project's own machines have none and import instead.
set -uo pipefail
cd "$(dirname "$0")/.."
P4C=${P4C:-p4c-bm2-ss}

if ! command -v "$P4C" >/dev/null 2>&1; then
    echo "compile-p4: $P4C is not installed (p4c's BMv2 back end, version 1.2.5.16 is what" >&2
    echo "compile-p4: ../shared/p4build/ was made with). Without it, bring compiled outputs in" >&2
    echo "compile-p4: with scripts/import-p4build.sh." >&2
    exit 2
fi

sources=("$@")
[ ${#sources[@]} -gt 0 ] || sources=(p4src/flowtable.p4 tests/p4/*.p4)

status=0
for src in "${sources[@]}"; do
    [ -f "$src" ] || { echo "MISSING  $src: no such source"; status=1; continue; }
    name=$(basename "$src" .p4)
    if [ "$src" = p4src/flowtable.p4 ]; then dest=p4src/build; else dest=tests/p4/build/$name; fi
    command=("$P4C" --arch v1model --std p4-16 --p4runtime-files "$name.p4info.txtpb"
             -o "$name.json" "$src")
    # Exactly COMMAND: from the top of the tree, outputs named relative to it, then moved.
    diagnostics=$(mktemp)
    if "${command[@]}" >"$diagnostics" 2>&1; then
        mkdir -p "$dest"
        mv "$name.json" "$name.p4info.txtpb" "$dest/"
        mv "$diagnostics" "$dest/diagnostics.txt"
        echo "${command[*]}" > "$dest/COMMAND"
        (cd "$(dirname "$src")" && sha256sum "$(basename "$src")") > "$dest/SOURCE.sha256"
        echo "COMPILED $src -> $dest"
        [ -s "$dest/diagnostics.txt" ] && sed 's/^/    /' "$dest/diagnostics.txt"
    else
        echo "FAILED   $src:"; sed 's/^/    /' "$diagnostics"
        rm -f "$diagnostics" "$name.json" "$name.p4info.txtpb"
        status=1
    fi
done
exit $status
