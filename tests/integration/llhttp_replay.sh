#!/usr/bin/env bash
# Replays llhttp's request test cases (the shared corpus) against a fresh server: no crash, no
# desync, every malformed case refused with a 4xx and a close, and every job the server
# accepted stored with the body llhttp reads. The rules are in llhttp_replay.py.
# With --tls (the llhttp_replay_tls test), every case goes over TLS (server.tls, a test CA made
# here): the same rules, the bytes inside the TLS session.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"

need python3
tls=0
[[ ${1:-} != --tls ]] || tls=1
corpus="${PORTCULLIS_SHARED:-}/corpora/llhttp-requests.jsonl"
[[ -r $corpus ]] || skip "the llhttp corpus is not at $corpus (set PORTCULLIS_SHARED)"
replay="$here/llhttp_replay.py"

if ((tls)); then
    need_tls_tools
    tls_make_ca
    tls_make_cert replay "DNS:replay.test"
    python3 "$replay" config --spool "$WORKDIR/spool" --tls-cert "$TLS_DIR/replay.pem" \
        --tls-key "$TLS_DIR/replay.key" >"$WORKDIR/config.yaml"
    start_tls_server "$WORKDIR/config.yaml"
    target=(--port "$TLS_PORT" --tls-ca "$TLS_CA" --tls-name replay.test)
else
    python3 "$replay" config --spool "$WORKDIR/spool" >"$WORKDIR/config.yaml"
    start_server "$WORKDIR/config.yaml"
    target=(--port "$PORT")
fi

rc=0
python3 "$replay" run "${target[@]}" --pid "$SERVER_PID" --expect-jobs "$WORKDIR/jobs.json" ||
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
if ((tls)); then
    stopped=$(grep -F '"msg":"stopped"' "$SERVER_LOG")
    [[ $stopped =~ \"tls_handshakes\":([0-9]+) ]] && ((BASH_REMATCH[1] > 0)) ||
        fail "the replay went over TLS, yet the server counted no TLS handshake: $stopped"
    echo "llhttp replay over TLS passed"
else
    echo "llhttp replay passed"
fi
