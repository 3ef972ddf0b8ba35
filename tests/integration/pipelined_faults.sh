#!/usr/bin/env bash
# Pipelined requests are answered in order under kill -9 and disk full: each answer is the one
# of its own request. Clients on raw sockets (pipelined_faults.py) pipeline batches of webhooks
# whose bodies name their connection and position, and the answers are checked against
# `portcullis spool dump`: per connection, the k-th answer's job holds the k-th request's body.
#
# 1. kill -9: 8 connections pipeline batches of 8 (at most 16 unanswered each) on two shards
#    until the server is killed with SIGKILL mid-load. Every answer read is a 202 whose job is
#    on disk holding that request's body; unanswered requests may be on disk or not, but no job
#    or body is stored twice, and each connection's stored requests are its first ones. The
#    spool verifies (a torn tail is the only damage a kill may leave), and a new server on it
#    starts, serves, and keeps every job.
# 2. disk full: the spool on a 4 MiB tmpfs with about 300 KiB free; 4 connections pipeline
#    batches of 8 webhooks of 12 KB until they are answered 503. Each answer is a 202 (its job
#    holds that request's body) or a 503 with Retry-After (no job holds that request's body), in
#    request order, one per request on connections that stay open. Once the space is back, a
#    new batch on each connection is answered 202 in full.
#
# After each check, the checker is run on this run's answers permuted (two 202s swapped, a 202
# and a 503 swapped, one answer lost) and on its spool with an answered job removed or stored
# twice: each must fail, so the checks are shown to bite on real data every time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need python3
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
clients="$here/pipelined_faults.py"

# write_hooks_config FILE SPOOL SHARDS: one unsigned route, durability fsync, port 0 only.
write_hooks_config() {
    cat >"$1" <<EOF
server: {listen: ["127.0.0.1:0"], shards: $3}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $2, durability: fsync}
routes:
  hooks: {path: /webhooks/hooks, verify: {scheme: none}}
EOF
}

# verify_spool DIR WHAT [torn-ok]: `spool verify` exits 0; with torn-ok it may also exit 1 if
# all it reports is torn tails (what a kill landing inside a write leaves). Sets TORN=1 then.
verify_spool() {
    local rc=0 out="$WORKDIR/verify-$2.txt"
    "$PORTCULLIS" spool verify --dir "$1" >"$out" 2>&1 || rc=$?
    TORN=0
    if [[ $rc == 1 && ${3:-} == torn-ok ]] &&
        grep -qE '^total:.* 0 corrupt regions .* [1-9][0-9]* torn tails? .* 0 bad headers, 0 unreadable, 0 duplicate' "$out"; then
        TORN=1
        echo "$2: spool verify: a torn tail, nothing else"
        return 0
    fi
    [[ $rc == 0 ]] || fail "$2: spool verify exited $rc: $(cat "$out")"
    echo "$2: spool verify: ok ($(grep '^total:' "$out"))"
}

# ---- 1. kill -9 mid-pipeline ---------------------------------------------------------------

SPOOL="$WORKDIR/spool"
write_hooks_config "$WORKDIR/kill.yaml" "$SPOOL" 2
start_server "$WORKDIR/kill.yaml"
echo "kill: server $SERVER_PID on port $PORT (bash reports its kill -9 as 'Killed')"
timeout 120 python3 "$clients" kill --port "$PORT" --pid "$SERVER_PID" --conns 8 --batch 8 \
    --kill-after 400 --out "$WORKDIR/kill.json" || fail "kill: the clients failed (see above)"
kill9_server
expect_eq "kill: server status after SIGKILL" 137 "$SERVER_STATUS"

verify_spool "$SPOOL" after-kill torn-ok
rc=0
"$PORTCULLIS" spool dump --dir "$SPOOL" >"$WORKDIR/dump-kill.jsonl" 2>"$WORKDIR/dump-kill.err" || rc=$?
[[ $rc == 0 || ($rc == 1 && $TORN == 1) ]] ||
    fail "kill: spool dump exited $rc: $(cat "$WORKDIR/dump-kill.err")"
python3 "$clients" check --results "$WORKDIR/kill.json" --dump "$WORKDIR/dump-kill.jsonl" ||
    fail "kill: the answers and the spool disagree (see above)"

# A new server on the same spool starts, serves, and keeps every job.
start_server "$WORKDIR/kill.yaml"
printf '{"run":"restart"}' >"$WORKDIR/restart.json"
post /webhooks/hooks "$WORKDIR/restart.json" -H "Content-Type: application/json"
expect_queued "kill: a request to the restarted server"
restart_id=$JOB_ID
stop_server
verify_spool "$SPOOL" after-restart
spool_dump "$SPOOL" "$WORKDIR/dump-restart.jsonl"
check_job "$WORKDIR/dump-restart.jsonl" "$restart_id" hooks "$WORKDIR/restart.json"
python3 "$clients" check --results "$WORKDIR/kill.json" --dump "$WORKDIR/dump-restart.jsonl" \
    --foreign 1 >/dev/null || fail "kill: after the restart, the answers and the spool disagree"
expect_eq "kill: jobs after the restart (those after the kill, and one more)" \
    $(($(count_lines "$WORKDIR/dump-kill.jsonl") + 1)) "$(count_lines "$WORKDIR/dump-restart.jsonl")"
echo "kill: the restarted server kept every job and queued one more"

# ---- 2. disk full mid-pipeline -------------------------------------------------------------

# As disk_full.sh: a 4 MiB tmpfs, which needs root.
[[ $(id -u) -eq 0 ]] || skip "the kill -9 scenario passed; the disk-full one needs root to mount a tmpfs"
fs="$WORKDIR/fs"
mkdir -p "$fs"
mount -t tmpfs -o size=4m tmpfs "$fs" 2>/dev/null ||
    skip "the kill -9 scenario passed; the disk-full one cannot mount a tmpfs here"
at_exit "umount -l '$fs' 2>/dev/null || true"

write_hooks_config "$WORKDIR/full.yaml" "$fs/spool" 1
start_server "$WORKDIR/full.yaml"
# About 300 KiB free: two dozen of the 12 KB webhooks fit, the first round of 4 x 8 does not.
fallocate -l $(($(stat -f -c '%a*%S' "$fs") - 300 * 1024)) "$fs/filler" 2>/dev/null ||
    dd if=/dev/zero of="$fs/filler" bs=1k count=$(($(stat -f -c '%a*%S/1024' "$fs") - 300)) status=none
timeout 120 python3 "$clients" disk-full --port "$PORT" --filler "$fs/filler" --conns 4 \
    --batch 8 --pad 12000 --out "$WORKDIR/full.json" || fail "disk full: the clients failed (see above)"
wait_for_log "write failed" 1
stop_server
verify_spool "$fs/spool" disk-full
spool_dump "$fs/spool" "$WORKDIR/dump-full.jsonl"
python3 "$clients" check --results "$WORKDIR/full.json" --dump "$WORKDIR/dump-full.jsonl" ||
    fail "disk full: the answers and the spool disagree (see above)"

echo "pipelined_faults: ok"
