#!/usr/bin/env bash
# Replays llhttp's request test cases (the shared corpus) against a fresh server: no crash, no
# desync, every malformed case refused with a 4xx and a close, and every job the server
# accepted stored with the body llhttp reads. The rules are in llhttp_replay.py.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"

need python3
corpus="${PORTCULLIS_SHARED:-}/corpora/llhttp-requests.jsonl"
[[ -r $corpus ]] || skip "the llhttp corpus is not at $corpus (set PORTCULLIS_SHARED)"
replay="$here/llhttp_replay.py"

python3 "$replay" config --spool "$WORKDIR/spool" >"$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"

rc=0
python3 "$replay" run --port "$PORT" --pid "$SERVER_PID" --expect-jobs "$WORKDIR/jobs.json" ||
    rc=$?
if [[ $rc != 0 ]]; then
    # A crash shows in the log; the replay already said which cases disagree.
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server died during the replay"
    fail "the llhttp replay found disagreements (listed above)"
fi
stop_server

spool_dump "$WORKDIR/spool" "$WORKDIR/dump.jsonl"
python3 "$replay" check-spool --expect-jobs "$WORKDIR/jobs.json" <"$WORKDIR/dump.jsonl" ||
    fail "jobs in the spool differ from what llhttp reads (listed above)"
"$PORTCULLIS" spool verify --dir "$WORKDIR/spool" >/dev/null ||
    fail "spool verify reports damage after the replay"
echo "llhttp replay passed"
