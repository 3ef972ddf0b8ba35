#!/usr/bin/env bash
# The spool over time with the real process: a torn write (the newest segment cut in the middle
# of its last record, as a crash during a write leaves it) is cut and reported at start and the
# jobs before it are served; segments whose jobs are all settled are deleted once older than
# spool.retention, never one with a job still queued, and the space shows in /healthz and in
# `portcullis spool verify`. A second `serve` on the same spool is refused while one runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
need curl python3 sha256sum

SPOOL="$WORKDIR/spool"
TOKEN=$("$PORTCULLIS" token new | sed -n 's/^token: *//p')
cat >"$WORKDIR/config.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], shards: 1}
admin: {listen: "127.0.0.1:0"}
spool: {dir: $SPOOL, durability: fsync, retention: 1s}
routes:
  jobs: {path: /webhooks/jobs, verify: {scheme: none}}
tokens:
  consumer: {sha256: "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)", scopes: ["jobs:*"]}
EOF

lease_ids() {
    api POST /v1/lease '{"route":"jobs","max":100}'
    py '" ".join(x["id"] for x in j["jobs"])'
}
segments() { find "$SPOOL/shard-0" -name '*.seg' | sort; }

# --- torn write ---
start_server "$WORKDIR/config.yaml"
ids=()
for n in 1 2 3; do
    printf '{"job":%d,"pad":"%0200d"}' "$n" 0 >"$WORKDIR/body-$n"
    post /webhooks/jobs "$WORKDIR/body-$n"
    expect_queued "job $n"
    ids+=("$JOB_ID")
done
stop_server
seg=$(segments | tail -n 1)
size=$(stat -c %s "$seg")
truncate -s $((size - 100)) "$seg" # the third record loses its last 100 bytes
start_server "$WORKDIR/config.yaml"
wait_for_log '"msg":"spool: cut torn tail"' 1
grep -F '"msg":"spool: cut torn tail"' "$SERVER_LOG" | grep -F "\"segment\":\"$seg\"" >/dev/null ||
    fail "the torn tail line does not name $seg"
expect_eq "jobs served after the cut" "${ids[0]} ${ids[1]}" "$(lease_ids)"
post /webhooks/jobs "$WORKDIR/body-3"
expect_queued "a job after the cut"
after_cut=$JOB_ID
expect_eq "the new job is served" "$after_cut" "$(lease_ids)"
"$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify.out" ||
    fail "spool verify after the cut: $(cat "$WORKDIR/verify.out")"

# --- one serving process per spool ---
rc=0
timeout 20 "$PORTCULLIS" serve -c "$WORKDIR/config.yaml" 2>"$WORKDIR/second.log" || rc=$?
expect_eq "a second serve on the same spool exits 1" 1 "$rc"
grep -qF "is in use by another portcullis (pid $SERVER_PID)" "$WORKDIR/second.log" ||
    fail "the second serve does not name the first: $(cat "$WORKDIR/second.log")"
# Nor can another spool's server take the running one's control-plane address.
sed -e "s|dir: $SPOOL|dir: $WORKDIR/other-spool|" -e "/^admin:/s|\"127.0.0.1:0\"|\"127.0.0.1:$ADMIN_PORT\"|" \
    "$WORKDIR/config.yaml" >"$WORKDIR/other.yaml"
rc=0
timeout 20 "$PORTCULLIS" serve -c "$WORKDIR/other.yaml" 2>"$WORKDIR/other.log" || rc=$?
expect_eq "a server on a taken admin address exits 1" 1 "$rc"
grep -qF "admin.listen: cannot listen on 127.0.0.1:$ADMIN_PORT: Address already in use" \
    "$WORKDIR/other.log" || fail "the taken admin address is not reported: $(cat "$WORKDIR/other.log")"

# --- retention: settled and old enough goes, never a newest segment or a queued job ---
api POST /v1/ack "{\"ids\":[\"${ids[0]}\",\"${ids[1]}\",\"$after_cut\"]}"
expect_eq "all acked" 3 "$(py 'len(j["settled"])')"
post /webhooks/jobs "$WORKDIR/body-1"
expect_queued "a job left queued"
queued=$JOB_ID
# The torn segment holds only settled jobs and is no shard's newest: it goes once it is older
# than a second (retention), at the next round (a quarter of retention apart).
sleep 1.6
[[ ! -e $seg ]] || fail "segment $seg (all settled, past retention) was not deleted"
grep -qF '"msg":"spool: segment retired"' "$SERVER_LOG" || fail "no retirement logged"
stop_server
second=$(segments | tail -n 1)
start_server "$WORKDIR/config.yaml" # a new segment: the second is no longer the newest
sleep 1.6
[[ -e $second ]] || fail "segment $second was deleted with a job still queued in it"
expect_eq "the queued job survives retention" "$queued" "$(lease_ids)"
api GET /healthz
bytes_before=$(py 'j["spool"]["bytes"]')
api POST "/v1/jobs/$queued/ack"
sleep 1.6
[[ ! -e $second ]] || fail "segment $second (settled, past retention) was not deleted"
api GET /healthz
bytes_after=$(py 'j["spool"]["bytes"]')
((bytes_after < bytes_before)) || fail "spool bytes did not shrink: $bytes_before -> $bytes_after"
[[ $(py 'j["spool"]["free_bytes"] > 0') == True ]] || fail "no free bytes in /healthz"
expect_eq "only the newest segment is left" 1 "$(segments | wc -l)"
stop_server
"$PORTCULLIS" spool verify --dir "$SPOOL" >"$WORKDIR/verify.out" ||
    fail "spool verify after retention: $(cat "$WORKDIR/verify.out")"
grep -q "free" "$WORKDIR/verify.out" || fail "spool verify does not report free space"
# The lock goes with the process, however it ends.
start_server "$WORKDIR/config.yaml"
kill9_server
start_server "$WORKDIR/config.yaml"
stop_server
echo "ok: torn tail cut and served around; retention deleted settled segments only; one server per spool"
