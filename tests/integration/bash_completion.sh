#!/usr/bin/env bash
# packaging/bash-completion/portcullis against the binary: the commands `portcullis --help`
# lists, each command's options from its --help (and nothing else), files after -c, directories
# after --dir.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"

root=${PORTCULLIS_SOURCE_ROOT:?PORTCULLIS_SOURCE_ROOT is not set (run through meson test)}
completion=$root/packaging/bash-completion/portcullis
P=$PORTCULLIS

# The words completed for the command line given (the last word is the one being completed).
complete_words() {
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _portcullis
             printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@" | sort
}

# Commands.
"$P" --help >"$WORKDIR/usage"
mapfile -t commands < <(sed -n '/^commands:/,/^$/p' "$WORKDIR/usage" |
    sed -n 's/^  \([a-z][a-z-]*\)\( \([a-z][a-z-]*\)\)\?.*/\1 \3/p' | sed 's/ *$//')
(( ${#commands[@]} >= 9 )) || fail "portcullis --help lists ${#commands[@]} commands"
first=$(complete_words portcullis "")
for cmd in "${commands[@]}"; do
    read -ra words <<<"$cmd" # "spool verify": the command, then its subcommand
    grep -qxF "${words[0]}" <<<"$first" || fail "portcullis <TAB> does not offer ${words[0]}"
    if ((${#words[@]} == 2)); then
        complete_words portcullis "${words[0]}" "" | grep -xF "${words[1]}" >/dev/null ||
            fail "portcullis ${words[0]} <TAB> does not offer ${words[1]}"
    fi
    # The options: exactly those of the command's --help (-h is offered as --help alone).
    # shellcheck disable=SC2086
    "$P" $cmd --help >"$WORKDIR/help"
    { grep -oE -- '^ +(-[a-z], )?--[a-z][a-z-]*' "$WORKDIR/help" || true; } |
        tr -d ' ' | tr ',' '\n' | { grep -vx -- -h || true; } | sort -u >"$WORKDIR/want"
    # shellcheck disable=SC2086
    complete_words portcullis $cmd - >"$WORKDIR/got"
    diff -u "$WORKDIR/want" "$WORKDIR/got" >"$WORKDIR/diff" ||
        fail "portcullis $cmd -<TAB> is not what its --help lists: $(cat "$WORKDIR/diff")"
done

# -c: files and folders; --dir: folders only; --log-level: the levels.
mkdir "$WORKDIR/conf.d"
touch "$WORKDIR/conf.yaml"
got=$(complete_words portcullis serve -c "$WORKDIR/con")
expect_eq "portcullis serve -c <TAB>" "$WORKDIR/conf.d
$WORKDIR/conf.yaml" "$got"
got=$(complete_words portcullis check --config "$WORKDIR/conf.y")
expect_eq "portcullis check --config <TAB>" "$WORKDIR/conf.yaml" "$got"
got=$(complete_words portcullis spool dump --dir "$WORKDIR/con")
expect_eq "portcullis spool dump --dir <TAB>" "$WORKDIR/conf.d" "$got"
got=$(complete_words portcullis serve -c x --log-level "")
expect_eq "portcullis serve --log-level <TAB>" "debug
error
info
warn" "$got"
echo "bash completion: ${#commands[@]} commands and their options"
