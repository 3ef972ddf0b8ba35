#!/usr/bin/env bash
# The manual pages: portcullis.yaml(5) is what the loader's key table generates (scripts/man-pages
# --check), both pages render without a groff warning, `portcullis --help` and portcullis(8) list
# the same commands, and every option a command's --help lists is in the page and the other way
# round.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need groff diff sed

root=${PORTCULLIS_SOURCE_ROOT:?PORTCULLIS_SOURCE_ROOT is not set (run through meson test)}
P=$PORTCULLIS
page8=$root/docs/man/portcullis.8
page5=$root/docs/man/portcullis.yaml.5

# 1. The generated page is up to date with the table the loader checks keys against.
"$root/scripts/man-pages" --check "$P" >"$WORKDIR/diff" 2>&1 ||
    fail "$(cat "$WORKDIR/diff")"
# Every key of the table is in the page, by its path.
"$P" config-keys >"$WORKDIR/keys"
while read -r key; do
    name=${key#<secret>.}
    grep -qF -- ".B $(sed 's/-/\\-/g' <<<"$name")" "$page5" || fail "portcullis.yaml.5 does not list $key"
done < <(grep -v '^ ' "$WORKDIR/keys")

# 2. Both pages render without warnings (all of groff's warnings on).
for page in "$page8" "$page5"; do
    groff -ww -man -z "$page" >"$WORKDIR/lint" 2>&1 || fail "groff failed on $page: $(cat "$WORKDIR/lint")"
    [[ ! -s $WORKDIR/lint ]] || fail "groff warns on $page: $(cat "$WORKDIR/lint")"
done
if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$page8" >/dev/null 2>"$WORKDIR/lint" || fail "man -l $page8: $(cat "$WORKDIR/lint")"
    [[ ! -s $WORKDIR/lint ]] || fail "man -l $page8 warns: $(cat "$WORKDIR/lint")"
fi

# 3. portcullis --help and portcullis(8): the same commands and the same options.
"$P" --help >"$WORKDIR/usage"
# "  serve -c PATH ..." / "  spool verify --dir DIR": the command, and its subcommand if any.
mapfile -t commands < <(sed -n '/^commands:/,/^$/p' "$WORKDIR/usage" |
    sed -n 's/^  \([a-z][a-z-]*\)\( \([a-z][a-z-]*\)\)\?.*/\1 \3/p' | sed 's/ *$//')
(( ${#commands[@]} >= 9 )) || fail "portcullis --help lists ${#commands[@]} commands: $(cat "$WORKDIR/usage")"
# The page's text with its minus signs as typed: \- is -.
sed 's/\\-/-/g; s/\\f[BIRP]//g' "$page8" >"$WORKDIR/page"
help_options=()
for cmd in "${commands[@]}"; do
    grep -qE "^\.B[I]? \"?$cmd( |\"|$)" "$WORKDIR/page" ||
        fail "portcullis(8) has no entry for the command '$cmd' that --help lists"
    # shellcheck disable=SC2086
    "$P" $cmd --help >"$WORKDIR/help" 2>&1 || fail "portcullis $cmd --help exits $?"
    while read -r opt; do
        grep -qE -- "(^|[^a-z-])$opt([^a-z-]|$)" "$WORKDIR/page" ||
            fail "portcullis $cmd --help lists $opt, portcullis(8) does not"
        help_options+=("$opt")
    done < <(grep -E -- '^ +-' "$WORKDIR/help" | grep -oE -- '(^|[ ,])--?[a-z][a-z-]*' |
        sed 's/^[ ,]*//')
done
# The top-level --help and --version are options too.
help_options+=(--help -h --version)
# Every option the page names is one some command takes (but those of the other programs it
# quotes: nginx -t, journalctl -u and -o).
while read -r opt; do
    printf '%s\n' "${help_options[@]}" | grep -xF -- "$opt" >/dev/null ||
        fail "portcullis(8) names $opt, which no command's --help lists"
done < <(grep -v '^\.\\"' "$WORKDIR/page" | grep -oE -- '(^|[ ([])--?[a-z][a-z-]*' | sed 's/^[ ([]//' |
    grep -vxE -- '-t|-u|-o' | sort -u)
# And every command the page describes is one --help lists.
while read -r cmd; do
    printf '%s\n' "${commands[@]}" | grep -xF -- "$cmd" >/dev/null ||
        fail "portcullis(8) describes '$cmd', which portcullis --help does not list"
done < <(sed -n '/^\.SH COMMANDS/,/^\.SH /p' "$WORKDIR/page" | grep -A1 '^\.TP' |
    sed -n 's/^\.BI\? "\?\([a-z][a-z-]*\( [a-z][a-z-]*\)\?\).*/\1/p' |
    sed -E 's/ (c|dir)$//' | sort -u)

echo "man pages: ${#commands[@]} commands, ${#help_options[@]} options checked against --help"
